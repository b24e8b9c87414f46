//! The runtime's accept loop: HTTP/1.1 connections served as `axum::serve` serves them, except that a connection
//! task woken while it is being polled is polled again at once instead of going through tokio's scheduler.
//!
//! Why: hyper's connection task wakes itself on every request with a body. When the handler first polls the
//! body, the body tells the connection it is wanted, through the waker the connection registered, which is the
//! connection task's own. tokio treats a task woken during its own poll as one that yielded: it goes to the back
//! of the worker's queue and a parked worker is woken to take it. For each invocation that was a `futex` wake,
//! two context switches and the request finishing on the other worker, with cold caches. [`RepollOnSelfWake`]
//! absorbs those wakes; any other wake reaches the scheduler as before.
//!
//! Otherwise the same as `axum::serve` (keep-alive HTTP/1.1, each request carrying its connection's [`Peer`], at
//! shutdown no new connections while the open ones finish the requests they are serving), except that a stop waits
//! for those requests for a grace period only: a client that never finishes its request cannot hold it up.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener as _;
use futures::task::AtomicWaker;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::peer::{Peer, PeerListener};

/// Serves `router` on `listener` until `shutdown`, then waits for the open connections to finish the requests
/// they are serving, for at most `grace`: after it, the connections still open are closed.
pub async fn serve(
    mut listener: PeerListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let connections = TaskTracker::new();
    let close = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        connections.spawn(RepollOnSelfWake::new(serve_connection(
            stream,
            peer,
            router.clone(),
            shutdown.clone(),
            close.clone(),
        )));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "runtime API: requests still in flight {grace:?} after the stop; closing their connections"
        );
        close.cancel();
        connections.wait().await;
    }
}

/// Serves one connection until the client leaves; after `shutdown`, until the request in flight is answered or
/// `close`.
async fn serve_connection(
    stream: TcpStream,
    peer: Peer,
    router: Router,
    shutdown: CancellationToken,
    close: CancellationToken,
) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let response = tower_service::Service::call(&mut router, request).await;
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                _ = close.cancelled() => Ok(()),
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(peer = %peer.addr, %error, "runtime API connection ended");
    }
}

/// How many times in a row a future woken during its own poll is polled again before it is handed back to the
/// scheduler: a future that keeps waking itself still lets other tasks run.
const REPOLLS: usize = 4;

/// Wraps a task's future so that wakes arriving while it is being polled make it poll again, up to [`REPOLLS`]
/// times, instead of rescheduling the task.
///
/// The inner future sees a waker of its own ([`WakeState`]) for the whole life of the task: a wake during a
/// poll is noted there, a wake at any other time goes to the task's current waker.
pub(super) struct RepollOnSelfWake<F> {
    inner: Pin<Box<F>>,
    state: Arc<WakeState>,
    waker: Waker,
}

impl<F: Future> RepollOnSelfWake<F> {
    pub(super) fn new(inner: F) -> Self {
        let state = Arc::new(WakeState {
            phase: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        });
        RepollOnSelfWake {
            inner: Box::pin(inner),
            waker: Waker::from(state.clone()),
            state,
        }
    }
}

impl<F: Future> Future for RepollOnSelfWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        this.state.task.register(cx.waker());
        for _ in 0..REPOLLS {
            this.state.phase.store(POLLING, Ordering::SeqCst);
            let polled = this
                .inner
                .as_mut()
                .poll(&mut Context::from_waker(&this.waker));
            // Whatever woke the future from now on reaches the task; a wake noted during the poll is acted on here.
            let phase = this.state.phase.swap(IDLE, Ordering::SeqCst);
            match polled {
                Poll::Ready(output) => return Poll::Ready(output),
                Poll::Pending if phase == POLLING => return Poll::Pending,
                Poll::Pending => {}
            }
        }
        // Still waking itself: back to the scheduler, as tokio would have done the first time.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Not being polled: wakes go to the task.
const IDLE: u8 = 0;
/// Being polled, not woken yet.
const POLLING: u8 = 1;
/// Being polled, and woken: poll again when this poll returns.
const WOKEN: u8 = 2;

/// The waker the wrapped future sees.
struct WakeState {
    /// [`IDLE`], [`POLLING`] or [`WOKEN`]: one atomic, so a wake from another thread either lands before the poll
    /// ends (and is seen by the swap in `poll`) or after it (and goes to the task); none is lost.
    phase: AtomicU8,
    /// The task's waker, registered at each poll.
    task: AtomicWaker,
}

impl Wake for WakeState {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut phase = self.phase.load(Ordering::SeqCst);
        loop {
            match phase {
                POLLING => match self.phase.compare_exchange(
                    POLLING,
                    WOKEN,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => return,
                    Err(now) => phase = now,
                },
                WOKEN => return,
                // Between polls (or a poll just starting, which then runs once more than needed).
                _ => {
                    self.task.wake();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wakes the scheduler would get.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Counter {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Wakes itself during each of its first `self_wakes` polls, then is ready with the number of polls.
    struct WakesItself {
        self_wakes: usize,
        polls: usize,
    }

    impl Future for WakesItself {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.polls > self.self_wakes {
                return Poll::Ready(self.polls);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn poll_once<F: Future>(
        future: &mut RepollOnSelfWake<F>,
        task: &Arc<Counter>,
    ) -> Poll<F::Output> {
        let waker = Waker::from(task.clone());
        Pin::new(future).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_future_that_wakes_itself_is_polled_again_without_the_scheduler() {
        let task = Arc::new(Counter::default());
        let mut future = RepollOnSelfWake::new(WakesItself {
            self_wakes: REPOLLS - 1,
            polls: 0,
        });
        assert_eq!(poll_once(&mut future, &task), Poll::Ready(REPOLLS));
        assert_eq!(task.count(), 0, "the task was never rescheduled");
    }

    #[test]
    fn a_future_that_keeps_waking_itself_goes_back_to_the_scheduler() {
        let task = Arc::new(Counter::default());
        let mut future = RepollOnSelfWake::new(WakesItself {
            self_wakes: usize::MAX,
            polls: 0,
        });
        assert_eq!(poll_once(&mut future, &task), Poll::Pending);
        assert_eq!(
            task.count(),
            1,
            "rescheduled once, so other tasks run first"
        );
        assert_eq!(future.inner.polls, REPOLLS);
    }

    /// Pending until `ready`; keeps the waker it was last polled with.
    #[derive(Default)]
    struct Gate {
        ready: bool,
        waker: Option<Waker>,
    }

    struct WaitsForGate(Arc<std::sync::Mutex<Gate>>);

    impl Future for WaitsForGate {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut gate = self.0.lock().unwrap();
            if gate.ready {
                return Poll::Ready(());
            }
            gate.waker = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn open(gate: &std::sync::Mutex<Gate>) {
        let waker = {
            let mut gate = gate.lock().unwrap();
            gate.ready = true;
            gate.waker.take()
        };
        waker.expect("the future registered a waker").wake();
    }

    #[test]
    fn a_wake_between_polls_reaches_the_task() {
        let task = Arc::new(Counter::default());
        let gate = Arc::new(std::sync::Mutex::new(Gate::default()));
        let mut future = RepollOnSelfWake::new(WaitsForGate(gate.clone()));
        assert_eq!(poll_once(&mut future, &task), Poll::Pending);
        assert_eq!(task.count(), 0);
        let opener = {
            let gate = gate.clone();
            std::thread::spawn(move || open(&gate))
        };
        opener.join().unwrap();
        assert_eq!(
            task.count(),
            1,
            "the wake from another thread reached the task"
        );
        assert_eq!(poll_once(&mut future, &task), Poll::Ready(()));
    }

    /// Registers its waker, then has another thread open the gate before the poll returns.
    struct OpenedWhilePolled {
        gate: Arc<std::sync::Mutex<Gate>>,
        polls: usize,
    }

    impl Future for OpenedWhilePolled {
        type Output = usize;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            let polls = self.polls;
            match Pin::new(&mut WaitsForGate(self.gate.clone())).poll(cx) {
                Poll::Ready(()) => Poll::Ready(polls),
                Poll::Pending => {
                    let gate = self.gate.clone();
                    std::thread::spawn(move || open(&gate)).join().unwrap();
                    Poll::Pending
                }
            }
        }
    }

    #[test]
    fn a_wake_from_another_thread_during_the_poll_is_not_lost() {
        let task = Arc::new(Counter::default());
        let mut future = RepollOnSelfWake::new(OpenedWhilePolled {
            gate: Arc::new(std::sync::Mutex::new(Gate::default())),
            polls: 0,
        });
        assert_eq!(poll_once(&mut future, &task), Poll::Ready(2));
        assert_eq!(task.count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tasks_in_a_runtime_complete_with_wakes_from_everywhere() {
        // Channels sent to from the task itself, from other tasks and from plain threads: every task ends.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..64u64 {
            tasks.spawn(RepollOnSelfWake::new(async move {
                let (own_tx, mut own_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let (thread_tx, thread_rx) = tokio::sync::oneshot::channel::<u64>();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(n % 5));
                    let _ = thread_tx.send(n);
                });
                let from_task = tokio::spawn(async move { n * 2 });
                own_tx.send(n).await.unwrap();
                let own = own_rx.recv().await.unwrap();
                own + thread_rx.await.unwrap() + from_task.await.unwrap()
            }));
        }
        let mut sum = 0;
        while let Some(result) = tasks.join_next().await {
            sum += result.unwrap();
        }
        assert_eq!(sum, (0..64u64).map(|n| n * 4).sum::<u64>());
    }
}
