//! Which connections the gRPC port takes: at most `max_connections` open at
//! once (the next is closed at once: an HTTP/1 503 would mean nothing to a
//! gRPC client, which sees UNAVAILABLE), and each must send its first bytes,
//! the HTTP/2 preface, within the header read timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How much one client may hold of the gRPC port.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// A new connection must send its first bytes within this.
    pub first_bytes_timeout: Duration,
    /// Largest header list (a call's metadata), in bytes.
    pub max_header_bytes: u32,
}

/// The accepted connections that fit under the cap, each holding its place
/// until it closes.
pub fn admitted(
    listener: TcpListener,
    limits: GrpcLimits,
) -> impl Stream<Item = io::Result<Admitted>> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    TcpListenerStream::new(listener).filter_map(move |accepted| {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => return Some(Err(e)),
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("gRPC connection refused: {} open", limits.max_connections);
            return None;
        };
        Some(Ok(Admitted {
            inner: stream,
            _permit: permit,
            first_bytes: Some(Box::pin(tokio::time::sleep(limits.first_bytes_timeout))),
        }))
    })
}

/// An accepted connection under the cap.
pub struct Admitted {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Running until the client's first bytes arrive.
    first_bytes: Option<Pin<Box<Sleep>>>,
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        if let Poll::Ready(read) = Pin::new(&mut self.inner).poll_read(cx, buf) {
            if buf.filled().len() > before {
                self.first_bytes = None;
            }
            return Poll::Ready(read);
        }
        let expired = match self.first_bytes.as_mut() {
            Some(timer) => timer.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if expired {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the header read timeout",
            )));
        }
        Poll::Pending
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
