//! The HTTP/1 accept loop (in place of `axum::serve`), which bounds what one
//! client can take: a request head must arrive within the header timeout, an
//! idle keep-alive connection closes after the keep-alive timeout, a stalled
//! request body fails after the body timeout, a client that stops taking its
//! answer's bytes is dropped after the send timeout, heads are capped in bytes
//! and header count, and past the connection cap a client gets a plain 503.
//!
//! Concurrency: one task per connection runs hyper's connection future beside
//! a watchdog. The watchdog reads the connection's `Activity` (what it is
//! waiting for, and since when), which the socket wrapper and the request
//! service update, and drops the connection when the timeout of that phase
//! passes. hyper's own `header_read_timeout` is left off: it also runs while a
//! keep-alive connection waits for its next request, so it would make the
//! keep-alive timeout meaningless.
//!
//! The watchdog is never woken by a phase change (that cost three extra polls
//! of the connection per request): it wakes at the earliest deadline it knows
//! of, and at least every `tick` (the shortest timeout). A phase that starts
//! later ends no sooner than now + its timeout ≥ the watchdog's next wake, so
//! no deadline is missed, and each is still kept to the instant.

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::body::Guarded;

/// How long and how much one client may hold of the server. Each field is an
/// `inferd serve` flag; `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after its first byte (or
    /// after the connection opened, for the first request).
    pub header_read_timeout: Duration,
    /// Longest wait for the next chunk of a request body a handler is reading.
    pub body_read_timeout: Duration,
    /// Longest a connection may wait for its next request.
    pub keep_alive_timeout: Duration,
    /// Longest the client may leave an answer's bytes unread (the socket
    /// refusing more) before the connection is dropped.
    pub send_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; over it 431.
    pub max_header_bytes: usize,
    /// Most headers in one request; over it 431.
    pub max_headers: usize,
    /// Most connections open at once, WebSockets included; the next one is
    /// answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(30),
            max_header_bytes: 64 << 10,
            max_headers: 128,
            max_connections: 4096,
        }
    }
}

impl ConnectionLimits {
    /// The longest the watchdog sleeps without looking: the shortest timeout
    /// (kept above zero, so a zero timeout cannot make it spin).
    fn tick(&self) -> Duration {
        self.header_read_timeout
            .min(self.keep_alive_timeout)
            .min(self.send_timeout)
            .max(Duration::from_millis(1))
    }
}

/// What a connection past the cap reads before it is closed.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 20\r\nconnection: close\r\n\r\ntoo many connections";

/// Refused connections kept open a moment so that the client reads the 503
/// before the close; past this many, they are closed at once.
const LINGERING_REFUSALS: usize = 128;
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// hyper's default read buffer; raised only for heads larger than it.
const HYPER_READ_BUFFER: usize = 8192 + 4096 * 100;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting,
/// lets every open connection finish the request it is answering, and returns
/// once they have all closed. Upgraded connections (WebSockets) are not waited
/// for.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let lingering = Arc::new(Semaphore::new(LINGERING_REFUSALS));
    // Every connection task holds a receiver: once all are dropped, all are done.
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = connection(stream, permit, app.clone(), limits, stopping.clone());
                tokio::spawn(conn);
            }
            Err(_) => refuse(stream, &lingering),
        }
    }
    drop(listener);
    drop(stopping);
    let _ = stop.send(true);
    stop.closed().await;
}

/// A failed accept that concerns one client is skipped; any other (out of
/// file descriptors, say) waits a moment instead of spinning.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!("cannot accept a connection: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answers a connection past the cap with a plain 503 and closes it.
fn refuse(stream: TcpStream, lingering: &Arc<Semaphore>) {
    // A fresh socket's send buffer is empty: this cannot block or write short.
    if stream.try_write(REFUSAL).is_err() {
        return;
    }
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let mut stream = stream;
        // Closing with the client's request unread would reset the connection,
        // which may discard the answer before the client has read it.
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<_, io::Error>(())
        })
        .await;
    });
}

/// Serves one connection until it closes, times out or the server drains.
async fn connection(
    stream: TcpStream,
    permit: OwnedSemaphorePermit,
    app: Router,
    limits: ConnectionLimits,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        _permit: permit,
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |req: hyper::Request<Incoming>| {
            let busy = activity.request_started();
            let timeout = limits.body_read_timeout;
            let req = req.map(|body| Body::new(TimedBody::new(body, timeout)));
            let mut app = app.clone();
            async move {
                let res = app.call(req).await?;
                Ok::<_, Infallible>(res.map(|body| Guarded::new(body, busy)))
            }
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None)
        .max_headers(limits.max_headers)
        .max_header_size(limits.max_header_bytes);
    if limits.max_header_bytes > HYPER_READ_BUFFER {
        http.max_buf_size(limits.max_header_bytes + 8192);
    }
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    let tick = limits.tick();
    let watchdog = tokio::time::sleep(tick);
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            () = watchdog.as_mut() => {
                let now = Instant::now();
                let deadline = activity.deadline(&limits);
                if deadline.is_some_and(|d| d <= now) {
                    tracing::debug!("closing a connection that outstayed its timeout");
                    return;
                }
                let next = deadline.map_or(now + tick, |d| d.min(now + tick));
                watchdog.as_mut().reset(next);
            }
            _ = stopping.changed(), if !draining => {
                draining = true;
                if activity.never_used() {
                    return;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// What a connection is waiting for, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Its first byte, since it opened at `since`.
    Opened { since: Instant },
    /// The rest of a request head whose first byte came at `since`.
    Head { since: Instant },
    /// The next request, since the last answer ended.
    Idle { since: Instant },
    /// Nothing: this many requests are being answered.
    Busy(usize),
}

/// A connection's phase, shared by its socket, its service and its watchdog.
struct Activity {
    phase: Mutex<Phase>,
    /// Since when the socket has refused the answer's bytes (the client is
    /// not reading), in any phase.
    blocked_since: Mutex<Option<Instant>>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::Opened {
                since: Instant::now(),
            }),
            blocked_since: Mutex::new(None),
        }
    }

    /// A write found the socket full: the send timeout starts, unless it runs.
    fn write_blocked(&self) {
        let mut since = self.blocked_since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_none() {
            *since = Some(Instant::now());
        }
    }

    /// The client took bytes again.
    fn write_flowed(&self) {
        *self.blocked_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(|p| p.into_inner());
        *phase = f(*phase);
    }

    /// When the connection is dropped unless its phase changes (or a blocked
    /// write goes through) first.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let phase = match *self.phase.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::Opened { since } | Phase::Head { since } => {
                Some(since + limits.header_read_timeout)
            }
            Phase::Idle { since } => Some(since + limits.keep_alive_timeout),
            Phase::Busy(_) => None,
        };
        let blocked = self
            .blocked_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|since| since + limits.send_timeout);
        match (phase, blocked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the client has sent nothing yet: such a connection can be
    /// closed at any time without cutting off a request or an answer.
    fn never_used(&self) -> bool {
        matches!(
            *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            Phase::Opened { .. }
        )
    }

    fn bytes_arrived(&self) {
        let waiting = matches!(
            *self.phase.lock().unwrap_or_else(|p| p.into_inner()),
            Phase::Opened { .. } | Phase::Idle { .. }
        );
        if waiting {
            self.update(|_| Phase::Head {
                since: Instant::now(),
            });
        }
    }

    /// Marks the connection busy until the returned guard (which travels with
    /// the answer's body) is dropped.
    fn request_started(self: &Arc<Self>) -> Busy {
        self.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
        Busy(self.clone())
    }
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }
}

/// The socket: tells `Activity` when bytes arrive and when the client stops
/// taking the answer's, and holds the connection's place under the cap for as
/// long as it is open (an upgrade included).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: OwnedSemaphorePermit,
}

impl Watched {
    fn note_write<T>(&self, written: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &written {
            Poll::Pending => self.activity.write_blocked(),
            Poll::Ready(_) => self.activity.write_flowed(),
        }
        written
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(flushed)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body whose next chunk must arrive within `timeout` of a handler
/// asking for it; otherwise the read fails with `BodyReadTimeout`, which the
/// faces answer with 408.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    /// Running while the handler waits for a chunk.
    timer: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeout: Duration) -> TimedBody {
        TimedBody {
            inner,
            timeout,
            timer: None,
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyReadTimeout(timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that stopped arriving; `body::bytes` answers it with 408.
#[derive(Debug)]
pub(crate) struct BodyReadTimeout(Duration);

impl std::fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled: no data arrived for {} ms (the body read timeout)",
            self.0.as_millis()
        )
    }
}

impl std::error::Error for BodyReadTimeout {}
