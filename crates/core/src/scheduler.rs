//! The per-model-version queue and its workers.
//!
//! Concurrency design: one `Scheduler` per loaded model version owns a bounded
//! queue (`QueueState` behind a mutex and a condvar) and `instances` worker
//! threads. The async side only pushes jobs and awaits a oneshot reply, so compute
//! never runs on the runtime's threads. Workers take batches with
//! `QueueState::take_batch`; all queue logic lives in `QueueState`, a plain struct
//! the unit tests drive without threads. Jobs whose deadline passed are answered
//! with a timeout and jobs whose client went away are dropped before a batch forms.
//!
//! A model whose runs take microseconds costs more to hand to a
//! worker (a futex wake and two context switches) than to run. When such a
//! run finds the queue empty, a slot free and no batch worth waiting for, it
//! runs on the caller's thread instead (`Scheduler::submit` answers `Ran`).
//! Only models that say they compute and never block (`runs_inline`) qualify,
//! and only while their measured cost per input element predicts a run under
//! `inline_limit`; the first runs, which measure it, go through the workers.
//! Under load a batching model's requests still queue and run as batches: a
//! run has a fixed cost (iris on tract: ~30 µs whatever its rows), so one batch
//! of ten beats ten runs inline, and a batch worth waiting for is not skipped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::backend::LoadedModel;
use crate::error::{panic_message, CoreError, CoreResult};
use crate::stats::VersionStats;
use crate::tensor::Tensor;

/// The answer a job waits for.
pub type Reply = CoreResult<Vec<Tensor>>;

/// One request waiting to run.
pub struct Job {
    pub inputs: Vec<Tensor>,
    /// Rows along dimension 0 (1 for models that do not batch).
    pub rows: usize,
    pub enqueued: Instant,
    pub deadline: Instant,
    /// The request's own timeout, for the error message.
    pub timeout: Duration,
    pub reply: oneshot::Sender<Reply>,
}

impl Job {
    /// Jobs can share a batch when every input has the same datatype and the
    /// same shape past dimension 0.
    fn joins(&self, other: &Job) -> bool {
        self.inputs.len() == other.inputs.len()
            && self.inputs.iter().zip(&other.inputs).all(|(a, b)| {
                a.datatype() == b.datatype()
                    && a.shape().get(1..) == b.shape().get(1..)
                    && !a.shape().is_empty()
            })
    }
}

/// The queue's logic, without threads.
pub struct QueueState {
    model: String,
    jobs: VecDeque<Job>,
    max_queue: usize,
    /// 0: no batching, one job per run.
    max_batch: usize,
    max_delay: Duration,
    /// Rows of the last batch taken.
    demand: usize,
    closed: bool,
    /// Runs under way, on workers or inline, and how many may be at once.
    running: usize,
    slots: usize,
    /// A worker found jobs but no free slot (an inline run held it).
    starved: bool,
}

/// What a worker should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Run these many jobs from the front of the queue.
    Run(usize),
    /// Wait this long for more jobs to fill the batch.
    WaitFor(Duration),
    /// Nothing queued: wait for a push.
    Idle,
    /// Closed and drained: the worker exits.
    Exit,
}

impl QueueState {
    pub fn new(model: &str, max_queue: usize, max_batch: usize, max_delay: Duration) -> Self {
        QueueState {
            model: model.to_string(),
            jobs: VecDeque::new(),
            max_queue,
            max_batch,
            max_delay,
            demand: 0,
            closed: false,
            running: 0,
            slots: usize::MAX,
            starved: false,
        }
    }

    /// At most `slots` runs at once (the model's instances); unlimited by default.
    pub fn with_slots(mut self, slots: usize) -> Self {
        self.slots = slots.max(1);
        self
    }

    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Queues a job, or answers at once why not (full: overload; closed: the model
    /// is being unloaded).
    pub fn push(&mut self, job: Job) -> CoreResult<()> {
        if self.closed {
            return Err(CoreError::ModelUnavailable {
                model: self.model.clone(),
                reason: "it is being unloaded".into(),
            });
        }
        if self.jobs.len() >= self.max_queue {
            return Err(CoreError::QueueFull {
                model: self.model.clone(),
                max: self.max_queue,
            });
        }
        self.jobs.push_back(job);
        Ok(())
    }

    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Answers expired jobs with a timeout and drops those nobody waits for.
    pub fn prune(&mut self, now: Instant) {
        let model = &self.model;
        self.jobs.retain_mut(|job| {
            if job.reply.is_closed() {
                return false;
            }
            if job.deadline <= now {
                let (tx, _) = oneshot::channel();
                let reply = std::mem::replace(&mut job.reply, tx);
                let _ = reply.send(Err(CoreError::DeadlineExceeded {
                    model: model.clone(),
                    deadline: job.timeout,
                }));
                return false;
            }
            true
        });
    }

    /// Decides what a worker does now. A batch is the front job plus the jobs
    /// right behind it that join it, up to `max_batch` rows. The worker waits
    /// (at most until the front job has waited `max_delay`) only while the batch
    /// holds fewer rows than the last one ran: the last batch is the estimate of
    /// how many requests are in flight. Waiting for a full `max_batch` instead
    /// would cost every request the whole delay whenever fewer clients than
    /// `max_batch` are sending, which is the common case.
    pub fn next(&mut self, now: Instant) -> Next {
        self.prune(now);
        let Some(front) = self.jobs.front() else {
            return if self.closed { Next::Exit } else { Next::Idle };
        };
        if self.running >= self.slots {
            self.starved = true;
            return Next::Idle;
        }
        if self.max_batch == 0 {
            return Next::Run(1);
        }
        let mut rows = front.rows;
        let mut count = 1;
        for job in self.jobs.iter().skip(1) {
            if !front.joins(job) || rows + job.rows > self.max_batch {
                break;
            }
            rows += job.rows;
            count += 1;
        }
        let blocked = count < self.jobs.len();
        let waited = now.saturating_duration_since(front.enqueued);
        let target = self.demand.clamp(1, self.max_batch);
        if rows < target && !blocked && !self.closed && waited < self.max_delay {
            return Next::WaitFor(self.max_delay - waited);
        }
        Next::Run(count)
    }

    pub fn take(&mut self, count: usize) -> Vec<Job> {
        let jobs: Vec<Job> = self.jobs.drain(..count).collect();
        self.demand = jobs.iter().map(|j| j.rows).sum();
        self.running += 1;
        jobs
    }

    /// Claims a slot for a job of `rows` to run on the caller's thread: only
    /// when nothing is queued ahead of it, a slot is free, and a worker would
    /// run it at once rather than wait for a batch to fill.
    pub fn claim_inline(&mut self, rows: usize) -> bool {
        let batch_now = self.max_batch == 0 || rows >= self.demand.clamp(1, self.max_batch);
        if self.closed || !self.jobs.is_empty() || self.running >= self.slots || !batch_now {
            return false;
        }
        self.running += 1;
        self.demand = rows;
        true
    }

    /// A run ended. Whether a worker that found no free slot must be woken.
    pub fn finished(&mut self) -> bool {
        self.running = self.running.saturating_sub(1);
        std::mem::take(&mut self.starved) && !self.jobs.is_empty()
    }
}

/// What one input element costs a run, measured (a moving average), to
/// predict whether a request's run would take microseconds.
struct RunCost {
    /// Nanoseconds per element as f64 bits; `UNKNOWN` before the first run.
    ns_per_element: AtomicU64,
}

impl RunCost {
    const UNKNOWN: u64 = u64::MAX;

    fn new() -> RunCost {
        RunCost {
            ns_per_element: AtomicU64::new(Self::UNKNOWN),
        }
    }

    fn observe(&self, took: Duration, elements: usize) {
        let sample = took.as_nanos() as f64 / elements.max(1) as f64;
        let old = self.ns_per_element.load(Relaxed);
        let new = match old {
            Self::UNKNOWN => sample,
            bits => {
                let old = f64::from_bits(bits);
                old + (sample - old) / 8.0
            }
        };
        self.ns_per_element.store(new.to_bits(), Relaxed);
    }

    fn predicts_under(&self, elements: usize, limit: Duration) -> bool {
        match self.ns_per_element.load(Relaxed) {
            Self::UNKNOWN => false,
            bits => f64::from_bits(bits) * elements.max(1) as f64 <= limit.as_nanos() as f64,
        }
    }
}

fn elements(inputs: &[Tensor]) -> usize {
    inputs
        .iter()
        .map(|t| t.shape().iter().product::<usize>())
        .sum()
}

/// What `Scheduler::submit` did with a job.
pub enum Submitted {
    /// It ran on the caller's thread; here is its answer.
    Ran(Reply),
    /// It is queued for a worker; the answer comes through this.
    Queued(oneshot::Receiver<Reply>),
}

struct Shared {
    queue: Mutex<QueueState>,
    wake: Condvar,
    cost: RunCost,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A run over `elements` input elements took `took`: its cost is learnt,
    /// its slot freed, and a worker that found no free slot woken.
    fn run_ended(&self, took: Duration, elements: usize) {
        self.cost.observe(took, elements);
        if self.lock().finished() {
            self.wake.notify_all();
        }
    }
}

/// A cheap handle to one model version's queue and workers.
pub struct Scheduler {
    shared: Arc<Shared>,
    max_batch: usize,
    workers: Vec<JoinHandle<()>>,
    /// Set only for a model that `runs_inline`, with a limit above zero.
    inline: Option<Inline>,
}

/// What an inline run needs beside the queue.
struct Inline {
    name: String,
    model: Arc<dyn LoadedModel>,
    stats: Arc<VersionStats>,
    limit: Duration,
}

/// How a scheduler is set up (from the model's config).
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub max_queue: usize,
    pub max_batch: usize,
    pub max_delay: Duration,
    pub instances: usize,
    /// Runs predicted to take at most this long may run on the caller's
    /// thread (zero: never); see the module's doc.
    pub inline_limit: Duration,
}

impl Scheduler {
    pub fn start(
        name: &str,
        model: Arc<dyn LoadedModel>,
        config: SchedulerConfig,
        stats: Arc<VersionStats>,
    ) -> Scheduler {
        let shared = Arc::new(Shared {
            queue: Mutex::new(
                QueueState::new(name, config.max_queue, config.max_batch, config.max_delay)
                    .with_slots(config.instances),
            ),
            wake: Condvar::new(),
            cost: RunCost::new(),
        });
        let inline = (model.runs_inline() && !config.inline_limit.is_zero()).then(|| Inline {
            name: name.to_string(),
            model: model.clone(),
            stats: stats.clone(),
            limit: config.inline_limit,
        });
        let workers = (0..config.instances.max(1))
            .map(|i| {
                let shared = shared.clone();
                let model = model.clone();
                let stats = stats.clone();
                let label = name.to_string();
                std::thread::Builder::new()
                    .name(format!("inferd-{name}-{i}"))
                    .spawn(move || worker_task(&label, &shared, &*model, &stats))
                    .expect("spawning a worker thread")
            })
            .collect();
        Scheduler {
            shared,
            max_batch: config.max_batch,
            workers,
            inline,
        }
    }

    /// Whether jobs are joined along dimension 0.
    pub fn batches(&self) -> bool {
        self.max_batch > 0
    }

    /// The most rows one batch (and so one request) may hold.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Runs a job on this thread when it is cheap and nothing waits ahead of
    /// it, else queues it for a worker.
    pub fn submit(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> CoreResult<Submitted> {
        if let Some(inline) = &self.inline {
            let count = elements(&inputs);
            if self.shared.cost.predicts_under(count, inline.limit)
                && self.shared.lock().claim_inline(rows)
            {
                return Ok(Submitted::Ran(self.run_inline(inline, inputs, rows, count)));
            }
        }
        self.enqueue(inputs, rows, deadline, timeout)
            .map(Submitted::Queued)
    }

    fn run_inline(&self, inline: &Inline, inputs: Vec<Tensor>, rows: usize, count: usize) -> Reply {
        let started = Instant::now();
        let result = run_caught(&*inline.model, inputs).map_err(|reason| CoreError::Backend {
            model: inline.name.clone(),
            reason,
        });
        let took = started.elapsed();
        inline.stats.record_batch(1, rows, Duration::ZERO, took);
        self.shared.run_ended(took, count);
        result
    }

    fn enqueue(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Instant,
        timeout: Duration,
    ) -> CoreResult<oneshot::Receiver<Reply>> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            enqueued: Instant::now(),
            deadline,
            timeout,
            reply: tx,
        };
        self.shared.lock().push(job)?;
        self.shared.wake.notify_one();
        Ok(rx)
    }

    pub fn queue_len(&self) -> usize {
        self.shared.lock().len()
    }

    /// Refuses new jobs; workers finish what is queued, then exit.
    pub fn close(&self) {
        self.shared.lock().close();
        self.shared.wake.notify_all();
    }

    /// Closes and waits for the workers (used at shutdown, off the runtime).
    pub fn join(mut self) {
        self.close();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.close();
    }
}

fn worker_task(name: &str, shared: &Shared, model: &dyn LoadedModel, stats: &VersionStats) {
    loop {
        let jobs = {
            let mut queue = shared.lock();
            loop {
                match queue.next(Instant::now()) {
                    Next::Run(n) => break queue.take(n),
                    Next::Exit => return,
                    Next::Idle => {
                        queue = shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner())
                    }
                    Next::WaitFor(d) => {
                        queue = shared
                            .wake
                            .wait_timeout(queue, d)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                }
            }
        };
        let count = jobs.iter().map(|j| elements(&j.inputs)).sum();
        run_batch(name, model, stats, jobs, |took| {
            shared.run_ended(took, count)
        });
    }
}

/// Runs a batch and answers its jobs. `ran` hears how long the model ran as
/// soon as it is done, before any job is answered: a caller that submits again
/// on its answer finds the slot free.
fn run_batch(
    name: &str,
    model: &dyn LoadedModel,
    stats: &VersionStats,
    mut jobs: Vec<Job>,
    ran: impl FnOnce(Duration),
) {
    let started = Instant::now();
    let queued: Duration = jobs.iter().map(|j| started - j.enqueued).sum();
    let rows: Vec<usize> = jobs.iter().map(|j| j.rows).collect();
    let inputs = if jobs.len() == 1 {
        std::mem::take(&mut jobs[0].inputs)
    } else {
        (0..jobs[0].inputs.len())
            .map(|i| Tensor::concat(&jobs.iter().map(|j| &j.inputs[i]).collect::<Vec<_>>()))
            .collect()
    };
    let result = run_caught(model, inputs).map_err(|reason| CoreError::Backend {
        model: name.to_string(),
        reason,
    });
    let took = started.elapsed();
    stats.record_batch(jobs.len() as u64, rows.iter().sum(), queued, took);
    ran(took);
    match result {
        Ok(outputs) if jobs.len() == 1 => {
            let _ = jobs.pop().expect("one job").reply.send(Ok(outputs));
        }
        Ok(outputs) => match split_outputs(outputs, &rows) {
            Ok(per_job) => {
                for (job, outs) in jobs.into_iter().zip(per_job) {
                    let _ = job.reply.send(Ok(outs));
                }
            }
            Err(e) => answer_all(jobs, e, name),
        },
        Err(e) => answer_all(jobs, e, name),
    }
}

/// Runs the model with a panic kept inside this batch: its requests fail and
/// the worker goes on serving, instead of the thread dying with the model
/// still reported ready.
fn run_caught(model: &dyn LoadedModel, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.run(inputs))) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(panic) => Err(format!("it panicked: {}", panic_message(&*panic))),
    }
}

fn split_outputs(outputs: Vec<Tensor>, rows: &[usize]) -> CoreResult<Vec<Vec<Tensor>>> {
    let mut per_job: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for out in outputs {
        for (slot, piece) in per_job.iter_mut().zip(out.split(rows)?) {
            slot.push(piece);
        }
    }
    Ok(per_job)
}

fn answer_all(jobs: Vec<Job>, err: CoreError, name: &str) {
    let err = match err {
        CoreError::Backend { reason, .. } => CoreError::Backend {
            model: name.to_string(),
            reason,
        },
        other => other,
    };
    for job in jobs {
        let _ = job.reply.send(Err(err.clone()));
    }
}

#[cfg(test)]
mod tests;
