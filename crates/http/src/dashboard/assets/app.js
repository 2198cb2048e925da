// inferd dashboard: plain JavaScript, no framework, no build step.
//
// The charts are inline SVG polylines drawn by hand (drawChart below) rather than a
// charting library: that is a few KB, adds no dependency to vendor or keep patched,
// and works under the page's strict CSP (script-src/style-src 'self': no eval, no
// injected inline styles), so the page also works air-gapped.
//
// Data: GET /dashboard/state once (with 5 minutes of history), then the SSE stream
// GET /dashboard/events, read with fetch() rather than EventSource so the API key
// travels in the Authorization header and never in a URL. Server strings (model
// names, reasons) are only ever set with textContent.
'use strict';

const KEY = 'inferd.apiKey'; // sessionStorage only: never localStorage, never the URL
const WINDOW_S = 300; // the charts show the last 5 minutes
const STALL_MS = 5000; // no event for this long (the server sends one a second): reconnect
const MAX_BACKOFF_MS = 10000;

const app = {
  key: sessionStorage.getItem(KEY),
  role: null,
  history: [],
  ctrl: null, // aborts the current session's requests on sign-out / sign-in
  rows: new Map(), // "name/version" -> row parts, so rows (and focused buttons) survive updates
  busy: new Set(), // models with an action in progress
};

// --- DOM helpers ---------------------------------------------------------------------

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  e.append(...kids);
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// Sets a cell's text (only when it changed) and its raw value for scripts and tests.
function put(cell, text, value) {
  if (cell.textContent !== text) cell.textContent = text;
  cell.dataset.value = value === null || value === undefined ? '' : String(value);
}

// --- formatting for people -----------------------------------------------------------

const DASH = '—';
const fmt = (digits) => new Intl.NumberFormat(undefined, { maximumFractionDigits: digits });
const [f0, f1, f2] = [fmt(0), fmt(1), fmt(2)];
const fpct = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });
const none = (v) => v === null || v === undefined;

const count = (v) => (none(v) ? DASH : f0.format(v));
const pct = (v) => (none(v) ? DASH : fpct.format(v));
function rate(v) {
  if (none(v)) return DASH;
  return (v === 0 ? f0 : v < 10 ? f2 : v < 100 ? f1 : f0).format(v);
}
function ms(v) {
  if (none(v)) return DASH;
  if (v >= 1000) return `${f2.format(v / 1000)} s`;
  return `${(v >= 100 ? f0 : v >= 10 ? f1 : f2).format(v)} ms`;
}
function secs(v) {
  if (none(v)) return DASH;
  if (v < 1) return ms(v * 1000);
  if (v < 60) return `${f1.format(v)} s`;
  const m = Math.floor(v / 60);
  if (m < 60) return `${m} min ${Math.floor(v % 60)} s`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d ${h % 24} h`;
}
function bytes(v) {
  if (none(v)) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${(i === 0 ? f0 : v < 10 ? f2 : f1).format(v)} ${units[i]}`;
}
const label = (key) => key.charAt(0).toUpperCase() + key.slice(1).replace(/_/g, ' ');

// --- talking to the server -----------------------------------------------------------

class AuthNeeded extends Error {}

function headers(extra = {}) {
  return app.key ? { ...extra, Authorization: `Bearer ${app.key}` } : extra;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { cache: 'no-store', ...opts, headers: headers(opts.headers) });
  if (res.status === 401) throw new AuthNeeded();
  return res;
}

// The server's reason: its JSON body's `error` or `detail`, else the text.
async function errorText(res) {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    const msg = body.error ?? body.detail;
    if (msg) return typeof msg === 'string' ? msg : JSON.stringify(msg);
  } catch { /* not JSON */ }
  return text.trim() || `${res.status} ${res.statusText}`;
}

const sleep = (delay, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, delay);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

async function refresh(signal) {
  const res = await api('/dashboard/state', { signal });
  if (!res.ok) throw new Error(await errorText(res));
  const s = await res.json();
  app.history = s.history || [];
  render(s);
}

// Reads the text/event-stream body: events end at a blank line; `data:` lines join.
async function follow(signal, onEvent) {
  const res = await api('/dashboard/events', { signal, headers: { Accept: 'text/event-stream' } });
  if (!res.ok || !res.body) throw new Error(await errorText(res));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let timer;
  const watch = () => { clearTimeout(timer); timer = setTimeout(() => reader.cancel(), STALL_MS); };
  watch();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf))) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        watch();
        onEvent(parseEvent(block));
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) continue; // keep-alive comments
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return { event, data: data.join('\n') };
}

function onEvent({ event, data }) {
  if (!data) return;
  const body = JSON.parse(data);
  if (event === 'error') { showAlert(body.error || data); return; }
  if (event !== 'state') return;
  setLive('live', 'Live');
  const last = app.history[app.history.length - 1];
  if (body.sample && (!last || body.sample.t > last.t)) app.history.push(body.sample);
  render(body);
}

// One session: the snapshot, then the stream; again after a backoff when either fails.
async function run(signal) {
  let backoff = 1000;
  while (!signal.aborted) {
    try {
      await refresh(signal);
      await follow(signal, (e) => { backoff = 1000; onEvent(e); });
      if (!signal.aborted) setLive('down', 'Disconnected: the stream ended');
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof AuthNeeded) { askForKey(); return; }
      setLive('down', `Disconnected: ${e.message}`);
    }
    if (signal.aborted) return;
    await sleep(backoff, signal);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    if (!signal.aborted) setLive('connecting', 'Reconnecting…');
  }
}

function start() {
  if (app.ctrl) app.ctrl.abort();
  app.ctrl = new AbortController();
  setLive('connecting', 'Connecting…');
  run(app.ctrl.signal);
}

// --- auth ----------------------------------------------------------------------------

function askForKey(message = app.key ? 'That key was not accepted: enter another.' : '') {
  if (app.ctrl) app.ctrl.abort();
  app.key = null;
  app.role = null;
  sessionStorage.removeItem(KEY);
  $('#main').hidden = true;
  $('#who').hidden = true;
  $('#models tbody').replaceChildren(); // nothing of the last session stays in the page
  app.rows.clear();
  app.history = [];
  $('#signin-error').textContent = message;
  $('#signin').hidden = false;
  setLive('down', 'Signed out');
  $('#key').focus();
}

$('#signin').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const key = $('#key').value.trim();
  if (!key) return;
  $('#key').value = '';
  app.key = key;
  sessionStorage.setItem(KEY, key);
  $('#signin').hidden = true;
  start();
});

$('#signout').addEventListener('click', () => askForKey(''));

// --- rendering -----------------------------------------------------------------------

function setLive(kind, text) {
  const live = $('#live');
  live.dataset.live = kind;
  if (live.textContent !== text) live.textContent = text;
}

function showAlert(text) {
  const box = $('#alert');
  box.replaceChildren();
  if (!text) return;
  const dismiss = el('button', { type: 'button', text: 'Dismiss', class: 'link' });
  dismiss.addEventListener('click', () => box.replaceChildren());
  box.append(el('span', { text }), ' ', dismiss);
}

function render(s) {
  app.role = s.role;
  const cut = (app.history.length ? app.history[app.history.length - 1].t : s.time) - WINDOW_S;
  while (app.history.length && app.history[0].t < cut) app.history.shift();

  $('#signin').hidden = true;
  $('#main').hidden = false;
  $('#who').hidden = false;
  $('#signout').hidden = !s.auth;
  put($('#role'), s.auth ? `Signed in as ${s.role}` : `Open server (no key needed): ${s.role}`, s.role);
  put($('#uptime'), `Up ${secs(s.uptime_s)}`, s.uptime_s);

  renderModels(s.models || []);
  renderCharts(app.history, app.history.length ? app.history[app.history.length - 1].t : s.time);
  renderCache(s.cache || {});
  renderInflight(s.inflight || {});
  facts($('#jobs'), Object.entries(s.jobs || {}).map(([k, v]) => [label(k), count(v), k, v]));
  facts($('#services'), Object.entries(s.services || {}).map(([k, v]) => [label(k), count(v), k, v]));
  renderGeneration(s.generation || []);
}

const MODEL_FIELDS = [
  ['version', (m) => count(m.version)],
  ['state', null], // see updateState
  ['backend', (m) => m.backend ?? DASH],
  ['memory_bytes', (m) => bytes(m.memory_bytes)],
  ['load_time_s', (m) => secs(m.load_time_s)],
  ['requests_total', (m) => count(m.requests_total)],
  ['rps', (m) => rate(m.rps)],
  ['p50_ms', (m) => ms(m.p50_ms)],
  ['p99_ms', (m) => ms(m.p99_ms)],
  ['errors_total', (m) => count(m.errors_total)],
  ['queue_depth', (m) => count(m.queue_depth)],
  ['in_flight', (m) => count(m.in_flight)],
];

function makeRow(m) {
  const tr = el('tr', { 'data-model': m.name, 'data-version': m.version ?? '' });
  const cells = { name: el('th', { scope: 'row', 'data-field': 'name', text: m.name }) };
  tr.append(cells.name);
  for (const [field] of MODEL_FIELDS) {
    cells[field] = el('td', { 'data-field': field, class: field === 'state' || field === 'backend' ? null : 'num' });
    tr.append(cells[field]);
  }
  const state = {
    badge: el('span', { class: 'badge' }),
    reason: el('span', { class: 'reason', 'data-field': 'reason' }),
    progress: el('progress', { hidden: true, 'aria-label': `Loading ${m.name}` }),
  };
  cells.state.append(state.badge, state.reason, state.progress);
  const actions = el('td', { class: 'actions' });
  tr.append(actions);
  return { tr, cells, state, actions, buttons: null };
}

function renderModels(models) {
  const tbody = $('#models tbody');
  const admin = app.role === 'admin';
  $('#actions-head').hidden = !admin;
  const seen = new Set();
  models.forEach((m, i) => {
    const id = `${m.name}/${m.version ?? ''}`;
    seen.add(id);
    let row = app.rows.get(id);
    if (!row) { row = makeRow(m); app.rows.set(id, row); }
    row.m = m;
    if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
    for (const [field, show] of MODEL_FIELDS) if (show) put(row.cells[field], show(m), m[field]);
    updateState(row, m);
    updateActions(row, m, admin);
  });
  for (const [id, row] of app.rows) if (!seen.has(id)) { row.tr.remove(); app.rows.delete(id); }
  let empty = tbody.querySelector('tr.empty');
  if (models.length === 0 && !empty) {
    empty = el('tr', { class: 'empty' }, el('td', { colspan: 14, text: 'No models in the repository.' }));
    tbody.append(empty);
  } else if (models.length && empty) empty.remove();
}

function updateState(row, m) {
  put(row.state.badge, m.state, m.state);
  row.cells.state.dataset.value = m.state;
  let reason = m.reason || '';
  if (m.loading && !reason) {
    reason = `loading for ${secs(m.loading.elapsed_s)}, ${bytes(m.loading.bytes)} of files`;
  }
  put(row.state.reason, reason, reason);
  const p = row.state.progress;
  const last = m.loading && m.loading.last_load_time_s;
  p.hidden = !last;
  if (last) { p.max = last; p.value = Math.min(m.loading.elapsed_s, last); }
}

function updateActions(row, m, admin) {
  if (!admin) {
    if (row.buttons) { row.actions.replaceChildren(); row.buttons = null; }
    row.actions.hidden = true;
    return;
  }
  row.actions.hidden = false;
  if (!row.buttons) {
    row.buttons = { toggle: el('button', { type: 'button' }), preload: el('button', { type: 'button', text: 'Preload' }) };
    row.buttons.toggle.addEventListener('click', () => act(m.name, row.buttons.toggle.dataset.action));
    row.buttons.preload.addEventListener('click', () => act(m.name, 'preload'));
    row.actions.append(row.buttons.toggle, ' ', row.buttons.preload);
  }
  const { toggle, preload } = row.buttons;
  const action = m.state === 'READY' ? 'unload' : 'load';
  const text = action === 'unload' ? 'Unload' : 'Load';
  if (toggle.textContent !== text) toggle.textContent = text;
  toggle.dataset.action = action;
  toggle.setAttribute('aria-label', `${text} ${m.name}`);
  preload.setAttribute('aria-label', `Preload ${m.name}`);
  const busy = app.busy.has(m.name);
  toggle.disabled = busy || m.state === 'LOADING';
  preload.disabled = busy;
  row.tr.setAttribute('aria-busy', busy ? 'true' : 'false');
}

// The routes a client would call: the dashboard can do nothing its key may not.
function request(name, kind) {
  if (kind === 'preload') {
    const body = JSON.stringify({ models: [name] });
    return ['/inference/models/preload', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body }];
  }
  return [`/v2/repository/models/${encodeURIComponent(name)}/${kind}`, { method: 'POST' }];
}

async function act(name, kind) {
  const verb = label(kind);
  const signal = app.ctrl.signal;
  const setBusy = (busy) => {
    if (busy) app.busy.add(name); else app.busy.delete(name);
    for (const row of app.rows.values()) if (row.m.name === name) updateActions(row, row.m, app.role === 'admin');
  };
  setBusy(true);
  showAlert('');
  $('#notice').textContent = `${verb} ${name}…`;
  try {
    const [path, opts] = request(name, kind);
    const res = await api(path, { ...opts, signal });
    if (res.ok) $('#notice').textContent = `${verb}ed ${name}.`;
    else throw new Error(await errorText(res));
  } catch (e) {
    $('#notice').textContent = '';
    if (e instanceof AuthNeeded) { setBusy(false); askForKey(); return; }
    if (e.name !== 'AbortError') showAlert(`${verb} ${name} failed: ${e.message}`);
  }
  setBusy(false);
  if (!signal.aborted) await refresh(signal).catch(() => {});
}

// A <dl> of [term, shown text, key, raw value, optional extra node] rows.
function facts(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([term, text, key, value, extra]) => {
    const dd = el('dd', { 'data-field': key, 'data-value': value ?? '', text });
    if (extra) dd.append(extra);
    return [el('dt', { text: term }), dd];
  }));
}

function gauge(name, used, limit) {
  if (none(limit) || !limit) return null;
  return el('meter', { min: 0, max: limit, value: Math.min(used || 0, limit), high: limit * 0.9, 'aria-label': name });
}

function renderCache(c) {
  const mem = none(c.memory_limit_bytes)
    ? `${bytes(c.memory_used_bytes)} (no limit)`
    : `${bytes(c.memory_used_bytes)} of ${bytes(c.memory_limit_bytes)}`;
  const loaded = none(c.max_models) ? count(c.models_loaded) : `${count(c.models_loaded)} of ${count(c.max_models)}`;
  facts($('#cache'), [
    ['Hit rate', none(c.hit_rate) ? `${DASH} (no request yet)` : pct(c.hit_rate), 'hit_rate', c.hit_rate],
    ['Hits / misses', `${count(c.hits)} / ${count(c.misses)}`, 'hits', c.hits],
    ['Memory', mem, 'memory_used_bytes', c.memory_used_bytes, gauge('Cache memory used', c.memory_used_bytes, c.memory_limit_bytes)],
    ['Models loaded', loaded, 'models_loaded', c.models_loaded],
    ['Evictions', count(c.evictions), 'evictions', c.evictions],
    ['Loads', count(c.loads), 'loads', c.loads],
    ['Load failures', count(c.load_failures), 'load_failures', c.load_failures],
  ]);
}

function renderInflight(f) {
  const text = none(f.bytes_limit) ? bytes(f.bytes) : `${bytes(f.bytes)} of ${bytes(f.bytes_limit)}`;
  facts($('#inflight'), [
    ['Requests', count(f.requests), 'requests', f.requests],
    ['Request bytes', text, 'bytes', f.bytes, gauge('Request bytes in flight', f.bytes, f.bytes_limit)],
  ]);
}

function renderGeneration(gens) {
  const rows = gens.map((g) => {
    const tr = el('tr', { 'data-generation': g.model });
    tr.append(el('th', { scope: 'row', 'data-field': 'model', text: g.model }));
    const cell = (field, text) => el('td', { class: 'num', 'data-field': field, 'data-value': g[field] ?? '', text });
    const slots = el('td', { 'data-field': 'slots_in_use', 'data-value': g.slots_in_use, text: `${count(g.slots_in_use)} of ${count(g.slots)} ` });
    const meter = gauge(`${g.model} slots in use`, g.slots_in_use, g.slots);
    if (meter) slots.append(meter);
    tr.append(cell('version', count(g.version)), cell('tokens_total', count(g.tokens_total)),
      cell('tokens_per_s', rate(g.tokens_per_s)), cell('ttft_p50_ms', ms(g.ttft_p50_ms)),
      cell('ttft_p99_ms', ms(g.ttft_p99_ms)), slots, cell('waiting', count(g.waiting)));
    return tr;
  });
  if (!rows.length) rows.push(el('tr', { class: 'empty' }, el('td', { colspan: 8, text: 'No text-generation model loaded.' })));
  $('#generation tbody').replaceChildren(...rows);
}

// --- charts --------------------------------------------------------------------------

const CHARTS = [
  { id: 'throughput', title: 'Throughput', fmt: rate, unit: '/s', series: [['rps', 'requests/s'], ['errors_per_s', 'errors/s']] },
  { id: 'latency', title: 'Latency', fmt: ms, unit: '', series: [['p50_ms', 'p50'], ['p99_ms', 'p99']] },
  { id: 'tokens', title: 'Generation', fmt: rate, unit: '/s', series: [['tokens_per_s', 'tokens/s']] },
];

// The smallest of 1, 2, 2.5, 5 × 10^n that is at least v.
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((k) => k * p).find((x) => x >= v * 0.9999);
}

function renderCharts(history, now) {
  $('#charts').replaceChildren(...CHARTS.map((c) => drawChart(c, history, now)));
}

function drawChart(c, history, now) {
  const [W, H, L, R, T, B] = [400, 170, 58, 8, 10, 22];
  const pw = W - L - R;
  const ph = H - T - B;
  const t0 = now - WINDOW_S;
  const stats = c.series.map(([key]) => {
    const vals = history.map((p) => p[key]).filter((v) => !none(v));
    return { vals, min: vals.length ? Math.min(...vals) : null, max: vals.length ? Math.max(...vals) : null };
  });
  const top = niceCeil(Math.max(0, ...stats.map((s) => s.max ?? 0)));
  const x = (t) => (L + ((t - t0) / WINDOW_S) * pw).toFixed(1);
  const y = (v) => (T + ph - (v / top) * ph).toFixed(1);

  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'data-chart': c.id });
  const summary = c.series.map(([, name], i) => `${name} now ${c.fmt(lastOf(history, c.series[i][0]))}${c.unit}, max ${c.fmt(stats[i].max)}${c.unit}`);
  g.setAttribute('aria-label', `${c.title} over the last 5 minutes: ${summary.join('; ')}`);
  for (const v of [0, top / 2, top]) {
    g.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    g.append(svg('text', { class: 'tick', x: L - 6, y: Number(y(v)) + 4, 'text-anchor': 'end' }, `${c.fmt(v)}${c.unit}`));
  }
  g.append(svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: T + ph }));
  [[t0, '−5 min', 'start'], [t0 + WINDOW_S / 2, '−2.5 min', 'middle'], [now, 'now', 'end']].forEach(([t, text, anchor]) => {
    g.append(svg('text', { class: 'tick', x: x(t), y: H - 6, 'text-anchor': anchor }, text));
  });
  c.series.forEach(([key], i) => {
    let seg = [];
    const flush = () => {
      if (seg.length === 1) g.append(svg('circle', { class: `dot s${i}`, cx: seg[0][0], cy: seg[0][1], r: 2, 'data-series': key }));
      else if (seg.length) g.append(svg('polyline', { class: `line s${i}`, 'data-series': key, points: seg.map((p) => p.join(',')).join(' ') }));
      seg = [];
    };
    for (const p of history) {
      if (p.t < t0) continue;
      if (none(p[key])) flush();
      else seg.push([x(p.t), y(p[key])]);
    }
    flush();
  });
  if (!history.length) g.append(svg('text', { class: 'empty', x: L + pw / 2, y: T + ph / 2, 'text-anchor': 'middle' }, 'No data yet'));

  const legend = el('ul', { class: 'legend' }, ...c.series.map(([key, name], i) => el('li', { 'data-series': key },
    el('span', { class: `swatch s${i}`, 'aria-hidden': 'true' }),
    el('strong', { text: name }),
    ` now ${c.fmt(lastOf(history, key))} · min ${c.fmt(stats[i].min)} · max ${c.fmt(stats[i].max)}`)));
  return el('figure', { class: 'chart' }, el('figcaption', { text: c.title }), g, legend);
}

function lastOf(history, key) {
  for (let i = history.length - 1; i >= 0; i -= 1) if (!none(history[i][key])) return history[i][key];
  return null;
}

start();
