//! The gateway's TCP connections, with a way to end one abruptly.
//!
//! Dropping a socket closes it gracefully: the kernel keeps sending what is queued, then a FIN.
//! To a client that never reads, that queue (megabytes on loopback, where the send buffer grows)
//! never drains, so the client sees neither its close frame nor the end of the connection, and
//! the kernel holds the orphan in `FIN-WAIT-1`. When the gateway could not write its close
//! frame, the socket task [arms](Peer::reset_on_close) the connection instead: it is then closed
//! with `SO_LINGER` 0, which discards what is queued and sends a reset, so the connection ends
//! at once, as it does when API Gateway drops a client.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TCP connections as [`Connection`]s, without Nagle.
#[derive(Debug)]
pub(super) struct Listener(pub(super) TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        // No Nagle: frames and Management API answers are small, and each should leave at
        // once rather than wait for the previous one's ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::warn!(error = %err, "could not set TCP_NODELAY");
        }
        let connection = Connection {
            stream,
            reset: Arc::default(),
        };
        (connection, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One accepted TCP connection: reset rather than closed when dropped, once armed.
#[derive(Debug)]
pub(super) struct Connection {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Acquire)
            && let Err(err) = self.stream.set_zero_linger()
        {
            tracing::warn!(error = %err, "could not reset the connection; closing it instead");
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Who is on the other end of a request (axum's connect info): the address, and a handle on
/// how the connection closes.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// The client's address.
    pub(super) addr: SocketAddr,
    reset: Arc<AtomicBool>,
}

impl Peer {
    /// Makes the connection end with a reset, discarding what is queued for the client, when
    /// it is next dropped (a WebSocket's connection is dropped when its task ends).
    pub(super) fn reset_on_close(&self) {
        self.reset.store(true, Ordering::Release);
    }
}

impl Connected<IncomingStream<'_, Listener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            reset: Arc::clone(&stream.io().reset),
        }
    }
}
