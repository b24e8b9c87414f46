//! The simulator's TCP connections, with a gate below TLS and HTTP/2: frozen, no byte moves either way (a peer
//! process that stopped, or a black-holed path: TCP up, nothing flowing, HTTP/2 pings unanswered); closed, every
//! read and write fails, so connections end even when a client never closes its side.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Freezes or closes every connection of one simulated peer at once.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// No byte moves while set.
    frozen: AtomicBool,
    /// Every read and write fails once set.
    closed: AtomicBool,
    /// Tasks waiting for the gate to open.
    waiting: Mutex<Vec<Waker>>,
}

impl Gate {
    /// Freezes (`true`) or thaws every connection, present and future.
    pub(crate) fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
        if !frozen {
            self.wake_all();
        }
    }

    /// Makes every read and write fail from now on.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        let waiting = std::mem::take(
            &mut *self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for waker in waiting {
            waker.wake();
        }
    }

    /// Ready when bytes may move; an error once closed.
    fn poll_pass(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the peer simulator stopped",
                )));
            }
            if !self.frozen.load(Ordering::SeqCst) {
                return Poll::Ready(Ok(()));
            }
            let mut waiting = self
                .waiting
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            drop(waiting);
            // Thawed or closed between the check and the registration: look again rather than sleep forever.
            if self.frozen.load(Ordering::SeqCst) && !self.closed.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
    }
}

/// A TCP connection behind its peer's [`Gate`].
pub(crate) struct SimConnection {
    io: TcpStream,
    gate: std::sync::Arc<Gate>,
}

impl SimConnection {
    pub(crate) fn new(io: TcpStream, gate: std::sync::Arc<Gate>) -> Self {
        SimConnection { io, gate }
    }
}

impl Connected for SimConnection {
    // The plain TCP information, so that tonic's TLS layer exposes the client's certificates as usual.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

impl AsyncRead for SimConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.gate.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.gate.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.gate.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gate.closed.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        ready!(self.gate.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
