//! The simulator's TCP connections, with a gate below TLS and HTTP/2: frozen, no byte moves either way (a peer
//! process that stopped, or a black-holed path: TCP up, nothing flowing, HTTP/2 pings unanswered); closed, every
//! read and write fails, so connections end even when a client never closes its side.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Freezes or closes every connection of one simulated peer at once.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// No byte moves while set.
    frozen: AtomicBool,
    /// Every read and write fails once cancelled; each connection watches it, so that one waiting on its socket
    /// wakes up to fail.
    closed: CancellationToken,
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
        self.closed.cancel();
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
            if self.closed.is_cancelled() {
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
            if self.frozen.load(Ordering::SeqCst) && !self.closed.is_cancelled() {
                return Poll::Pending;
            }
        }
    }
}

/// A TCP connection behind its peer's [`Gate`].
pub(crate) struct SimConnection {
    io: TcpStream,
    gate: std::sync::Arc<Gate>,
    /// Wakes this connection's task when the gate closes, whatever it waits for.
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl SimConnection {
    pub(crate) fn new(io: TcpStream, gate: std::sync::Arc<Gate>) -> Self {
        let closing = Box::pin(gate.closed.clone().cancelled_owned());
        SimConnection { io, gate, closing }
    }

    /// Ready when bytes may move; an error once the gate closed.
    fn poll_pass(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Registers the task with the gate's closing, so a task parked on the socket still learns of it.
        let _ = self.closing.as_mut().poll(cx);
        self.gate.poll_pass(cx)
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
        ready!(self.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gate.closed.is_cancelled() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_pass(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
