//! The accept loop over real sockets on port 0, with the real router: slow,
//! stalled, lying and greedy clients, as raw bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use inferd_core::ManagerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::{serve, ConnectionLimits};
use crate::tests::{manager, temp_repo};
use crate::{router, AppState, Compat, WsLimits};

const BODY_LIMIT: usize = 1 << 20;

/// A server with no models and a 1 MiB body limit.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

fn state() -> AppState {
    let m = manager(&temp_repo("serve"), ManagerConfig::default());
    AppState::new(m, Compat::Kserve, BODY_LIMIT)
}

async fn start(limits: ConnectionLimits) -> Running {
    start_with(state(), limits).await
}

async fn start_with(state: AppState, limits: ConnectionLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, router(state), limits, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

fn quick(ms: u64) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(ms),
        body_read_timeout: Duration::from_millis(ms),
        ..ConnectionLimits::default()
    }
}

/// Reads until the server closes (or `within` passes); returns what came and
/// whether the connection was closed.
async fn read_all(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// Reads one answer with a `content-length` off a kept-alive connection.
async fn read_answer(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")?
                        .parse()
                        .ok()
                })
                .unwrap_or(0usize);
            if body.len() >= length {
                return text;
            }
        }
    }
}

fn status_of(answer: &str) -> u16 {
    answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

const GET_LIVE: &[u8] = b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n";

/// A client whose socket takes in at most a few KiB, so that an answer it
/// does not read soon fills the server's side.
async fn slow_reader(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Under a cap of one connection, a new client is served: `holder` gave its
/// place back.
async fn assert_the_only_place_is_free(addr: SocketAddr, holder: &str) {
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(GET_LIVE).await.unwrap();
    let answer = read_answer(&mut next).await;
    assert_eq!(
        status_of(&answer),
        200,
        "{holder} still holds the only connection: {answer}"
    );
}

#[tokio::test]
async fn a_half_sent_head_is_cut_off_after_the_header_timeout() {
    let server = start(quick(300)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, closed) = read_all(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(closed, "a stalled head keeps its connection");
    assert!(
        (Duration::from_millis(250)..Duration::from_secs(2)).contains(&took),
        "closed after {took:?}, not the 300 ms header timeout"
    );
    // A client that connects and sends nothing is cut off the same way.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(read_all(&mut silent, Duration::from_secs(5)).await.1);
}

#[tokio::test]
async fn an_idle_connection_outlives_the_header_timeout_and_closes_after_keep_alive() {
    let server = start(ConnectionLimits {
        keep_alive_timeout: Duration::from_millis(1200),
        ..quick(300)
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(GET_LIVE).await.unwrap();
    assert_eq!(status_of(&read_answer(&mut s).await), 200);
    // Idle for longer than the header timeout: still open, and it serves again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.write_all(GET_LIVE).await.unwrap();
    assert_eq!(status_of(&read_answer(&mut s).await), 200);
    let idle_from = Instant::now();
    let (_, closed) = read_all(&mut s, Duration::from_secs(5)).await;
    let idle = idle_from.elapsed();
    assert!(closed, "an idle connection is kept forever");
    assert!(
        (Duration::from_millis(1000)..Duration::from_secs(3)).contains(&idle),
        "closed after {idle:?} idle, not the 1200 ms keep-alive timeout"
    );
}

#[tokio::test]
async fn a_stalled_body_gets_408_naming_the_timeout() {
    let server = start(quick(300)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"inputs\": [",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "the connection stays open after a stalled body");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status_of(&answer), 408, "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let message = v["error"].as_str().unwrap();
    assert!(message.contains("body read timeout"), "{message}");
    assert!(message.contains("300 ms"), "{message}");
}

#[tokio::test]
async fn a_slow_but_steady_body_is_read_to_the_end() {
    let server = start(quick(300)).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let body = br#"{"inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1]}]}"#;
    let head = format!(
        "POST /v2/models/nosuch/infer HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // Eight chunks 150 ms apart: 1.2 s in all, each well within the timeout.
    for chunk in body.chunks(body.len().div_ceil(8)) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.write_all(chunk).await.unwrap();
    }
    let answer = read_answer(&mut s).await;
    assert_eq!(status_of(&answer), 404, "{answer}");
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_at_once_in_each_face() {
    let server = start(ConnectionLimits::default()).await;
    for (path, message_at) in [
        ("/v2/models/m/infer", "/error"),
        ("/v1/chat/completions", "/error/message"),
        ("/generate", "/error"),
        ("/inference/infer", "/error/message"),
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 83886080\r\n\r\n{{\"inputs\""
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let answer = read_answer(&mut s).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path}: the 413 waited for the body"
        );
        assert_eq!(status_of(&answer), 413, "{path}: {answer}");
        let v: serde_json::Value =
            serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        let message = v.pointer(message_at).and_then(|m| m.as_str());
        assert!(
            message.is_some_and(|m| m.contains(&format!("limit of {BODY_LIMIT} bytes"))),
            "{path}: {v}"
        );
    }
}

#[tokio::test]
async fn past_the_connection_cap_a_client_gets_503_and_a_close() {
    let server = start(ConnectionLimits {
        max_connections: 2,
        ..ConnectionLimits::default()
    })
    .await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third.write_all(GET_LIVE).await.unwrap();
    let (answer, closed) = read_all(&mut third, Duration::from_secs(5)).await;
    assert!(closed, "a refused connection is left open");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\ntoo many connections"), "{answer}");
    // A place frees when a connection closes.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(GET_LIVE).await.unwrap();
        let (answer, _) = read_all(&mut s, Duration::from_millis(500)).await;
        if status_of(&answer) == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed connection's place never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_clients_do_not_delay_a_normal_request() {
    let server = start(ConnectionLimits::default()).await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let partial = format!("POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nX-Slow-{i}: ");
        s.write_all(partial.as_bytes()).await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(GET_LIVE).await.unwrap();
    let answer = read_answer(&mut s).await;
    let took = started.elapsed();
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} beside 200 slow clients"
    );
    // They are all still held (not yet timed out) while it answered.
    for s in &mut slow {
        s.write_all(b"x").await.unwrap();
    }
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let server = start(ConnectionLimits::default()).await;
    let big = format!(
        "GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 << 10)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /v2/health/live HTTP/1.1\r\nHost: t\r\n{many}\r\n");
    for request in [big, many] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let _ = s.write_all(request.as_bytes()).await;
        let (answer, closed) = read_all(&mut s, Duration::from_secs(5)).await;
        assert!(closed);
        assert_eq!(status_of(&answer), 431, "{answer}");
    }
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_returns() {
    let mut server = start(ConnectionLimits::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let idle = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /v2/models/nosuch/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.task.is_finished(),
        "returned with a request in flight"
    );
    s.write_all(b"}").await.unwrap();
    let (answer, closed) = read_all(&mut s, Duration::from_secs(5)).await;
    // The whole body arrived and was judged: `{}` has no inputs.
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("inputs"), "{answer}");
    assert!(closed, "a draining server keeps the connection open");
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("serve did not return once its connections closed")
        .unwrap();
    drop(idle);
}

/// A gzip stream that inflates to `blocks` MiB of zeros in about `blocks` KiB:
/// one compressed MiB, repeated (each copy starts a new deflate block).
fn gzip_bomb(blocks: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, Crc, FlushCompress};
    let zeros = vec![0u8; 1 << 20];
    let mut deflate = Compress::new(Compression::best(), false);
    let mut one = Vec::with_capacity(4 << 10);
    deflate
        .compress_vec(&zeros, &mut one, FlushCompress::Sync)
        .unwrap();
    let mut end = Vec::with_capacity(64);
    deflate
        .compress_vec(&[], &mut end, FlushCompress::Finish)
        .unwrap();
    let mut crc = Crc::new();
    for _ in 0..blocks {
        crc.update(&zeros);
    }
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    for _ in 0..blocks {
        out.extend_from_slice(&one);
    }
    out.extend_from_slice(&end);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

/// Peak resident memory of this process, from /proc (Linux only).
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    Some(
        kb.trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?
            * 1024,
    )
}

#[tokio::test]
async fn a_gzip_bomb_gets_413_without_being_inflated() {
    let bomb = gzip_bomb(1024);
    assert!(bomb.len() < 2 << 20, "the bomb is {} bytes", bomb.len());
    let app = router(state());
    let req = Request::post("/v2/models/m/infer")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Body::from(bomb))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("limit of"), "{v}");
    if let Some(peak) = peak_rss_bytes() {
        assert!(
            peak < 1 << 30,
            "peak RSS {peak} bytes: the bomb was inflated"
        );
    }
}

/// A masked client frame (the zero mask leaves the payload as is).
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

#[tokio::test]
async fn websockets_upgrade_and_oversized_frames_close_them() {
    let mut state = state();
    state.ws = WsLimits {
        max_message_bytes: 4096,
        max_frame_bytes: 1024,
        idle_timeout: Duration::from_millis(300),
    };
    let server = start_with(state, ConnectionLimits::default()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(
        b"GET /inference/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&ws_frame(1, b"not json")).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.contains("\"error\""), "{reply}");
    // A frame past 1 KiB ends the session with close code 1009 (message too
    // big) instead of being buffered.
    s.write_all(&ws_frame(1, &[b' '; 2000])).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .is_ok();
    assert!(closed, "an oversized frame was accepted");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        !text.contains("\"type\""),
        "an oversized frame was answered: {text}"
    );
    assert_eq!(rest.first(), Some(&0x88), "no close frame: {rest:?}");
    assert_eq!(
        rest.get(2..4),
        Some(&[0x03, 0xF1][..]),
        "not 1009: {rest:?}"
    );
    assert!(text.contains("too big"), "{text}");
    // Another session that goes quiet is closed after the idle timeout (1000).
    let mut quiet = TcpStream::connect(server.addr).await.unwrap();
    quiet
        .write_all(
            b"GET /inference/ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut idle = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), quiet.read_to_end(&mut idle))
        .await
        .is_ok();
    assert!(closed, "an idle session stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(String::from_utf8_lossy(&idle).contains("idle"), "{idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_gives_its_connection_and_budget_back() {
    let root = temp_repo("never-reads");
    crate::tests::write_model(
        &root,
        "identity",
        "backend = 'builtin'\nkind = 'identity'\nmax_batch_size = 0\n[[input]]\nname = 'INPUT0'\n\
         datatype = 'ANY'\n[[output]]\nname = 'OUTPUT0'\ndatatype = 'ANY'\n",
    );
    let m = manager(&root, ManagerConfig::default());
    m.load_all().await;
    let limits = ConnectionLimits {
        keep_alive_timeout: Duration::from_millis(500),
        max_connections: 1,
        ..ConnectionLimits::default()
    };
    let server = start_with(AppState::new(m.clone(), Compat::Kserve, 32 << 20), limits).await;
    // An answer of 16 MiB, far more than the socket buffers hold (Linux lets a
    // send buffer grow to 4 MiB).
    let text = "x".repeat(16 << 20);
    let body = serde_json::json!({"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "BYTES", "data": [text]}]})
        .to_string();
    let mut greedy = slow_reader(server.addr).await;
    greedy
        .write_all(
            format!(
                "POST /v2/models/identity/infer HTTP/1.1\r\nHost: t\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(m.inflight().used(), 0, "the unread answer holds the budget");
    assert_the_only_place_is_free(server.addr, "the unread answer").await;
    drop(greedy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_its_client_stops_reading_is_cut_off_after_the_send_timeout() {
    use axum::routing::get;
    let endless = || async { Body::from_stream(Endless(bytes::Bytes::from(vec![b'x'; 64 << 10]))) };
    let app = axum::Router::new()
        .route("/endless", get(endless))
        .route("/v2/health/live", get(|| async { "live" }));
    let limits = ConnectionLimits {
        send_timeout: Duration::from_millis(300),
        max_connections: 1,
        ..ConnectionLimits::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    let mut stalled = slow_reader(addr).await;
    stalled
        .write_all(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_the_only_place_is_free(addr, "the unread stream").await;
    drop(stalled);
}

/// 64 KiB frames without end.
struct Endless(bytes::Bytes);

impl futures_core::Stream for Endless {
    type Item = Result<bytes::Bytes, std::io::Error>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(Some(Ok(self.0.clone())))
    }
}
