//! The threads filter evaluations run on: off the async runtime, bounded, with large stacks, and replaced when an
//! evaluation cannot be stopped.
//!
//! Invariants:
//! - At most [`FilterPool::size`] evaluations run at once (one per thread); more wait in a queue, in order. A
//!   waiting or running evaluation whose caller stopped waiting (the trigger was disabled, deleted, reloaded or
//!   the daemon is stopping) is skipped, or stops at its next check: the caller never waits for it.
//! - Every evaluation runs under its [`Limits`] (see `budget`), on a thread with a [`STACK_SIZE`] stack whose
//!   depth guard keeps three quarters of it free for built-ins that recurse through a value, with the memory
//!   limit capped so that no value it allows is too deep for that room ([`STACK_PER_MEMORY`]), at a lower
//!   scheduling priority than the rest of the daemon (nice [`NICE`] on Linux), so filters yield the CPU to the
//!   admin API, the feeds and the pushes.
//! - On top of the budget, a pool thread has hard limits the global allocator enforces (`meter`): it stops for
//!   good before holding more than [`HARD_MEMORY_FACTOR`] times the memory limit, or at its first allocation once
//!   the watcher marked it overrun.
//! - The watcher (one thread, waking every [`WATCH_EVERY`]) marks a thread overrun when its evaluation is still
//!   running [`GRACE`] past its time limit: jq evaluations stop themselves at the limit, so this is only a
//!   built-in that runs long between two interpreter steps, or a JMESPath evaluation. The watcher answers the
//!   caller with an [`ErrorKind::Overrun`] error and starts a replacement thread. A thread cannot be killed: the
//!   overrun one stops at its next allocation (it then sleeps forever, holding what it had) or, if it ever
//!   finishes, exits. At most [`FilterPool::size`] threads are abandoned that way over the daemon's life (they
//!   come back to the count when they exit); past that, overrun threads are not replaced, and once none is left
//!   evaluations fail at once with [`ErrorKind::Unavailable`] instead of waiting. Threads are never more than
//!   twice the pool's size, plus the watcher.
//! - A thread whose evaluation went past the depth or memory limit exits after answering and is replaced, which
//!   gives the stack and heap it touched back to the system.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use super::budget::{Limits, stack};
use super::{Envelope, ErrorKind, Filter, FilterError, duration_text, meter};

/// The stack of each pool thread: address space reserved, not memory used (pages are touched only as deep as an
/// evaluation goes, and given back after an evaluation that went deep). Where the system refuses to reserve that
/// much, the pool falls back to a quarter, then to 256 MiB, and lowers the memory limit to match.
pub const STACK_SIZE: usize = 2 << 30;
/// Stack a built-in may need, per byte of memory an evaluation holds, to recurse through the deepest value that
/// memory can build: one nesting level costs at least 56 bytes of heap (`[.]`), and printing it (`tojson`,
/// `tostring`, the deepest recursion among jaq's built-ins) about 1 KiB of stack in an optimised build, 3.8 KiB in
/// a debug build. The pool keeps [`stack::margin`] of each thread's stack for that and caps the memory limit at
/// `margin / STACK_PER_MEMORY`: 64 MiB on a 2 GiB stack.
pub const STACK_PER_MEMORY: usize = if cfg!(debug_assertions) { 80 } else { 24 };
/// An evaluation that ran longer than this may have touched much of its stack: the pages below the current
/// depth are given back afterwards (one system call, only for evaluations this slow).
const RELEASE_STACK_AFTER: Duration = Duration::from_millis(1);
/// How long past its time limit an evaluation may run before its thread counts as overrun.
pub const GRACE: Duration = Duration::from_secs(1);
/// How often the watcher looks for overrun evaluations.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);
/// The memory a pool thread may hold during an evaluation, as a multiple of the evaluation's memory limit,
/// before it stops for good (the budget stops the evaluation cleanly at 1x between steps; this catches a single
/// step that allocates far more).
pub const HARD_MEMORY_FACTOR: usize = 4;
/// The scheduling priority of pool threads (Linux nice value; the daemon runs at 0).
pub const NICE: i32 = 5;

/// What one evaluation sends back.
type Answer = Result<Vec<Value>, FilterError>;

/// A bounded pool of evaluation threads; see the module documentation. Dropping it lets its threads end once
/// idle.
pub struct FilterPool {
    shared: Arc<Shared>,
}

/// The pool's counts, for tests and status pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Threads the pool keeps ready.
    pub size: usize,
    /// Threads serving evaluations now (idle or busy).
    pub live: usize,
    /// Evaluations running.
    pub busy: usize,
    /// Evaluations waiting for a thread.
    pub queued: usize,
    /// Threads abandoned because their evaluation overran, not yet ended.
    pub abandoned: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool stops.
    work: Condvar,
    size: usize,
    stack_size: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// The running evaluations, by thread.
    running: HashMap<u64, Running>,
    live: usize,
    abandoned: usize,
    next_thread: u64,
    stopping: bool,
}

struct Job {
    filter: Filter,
    envelope: Box<dyn AsRef<Envelope> + Send>,
    limits: Limits,
    reply: Arc<Reply>,
}

struct Running {
    started: Instant,
    limits: Limits,
    reply: Arc<Reply>,
    overrun: Arc<AtomicBool>,
    /// For the log when the evaluation overruns.
    filter: Filter,
}

/// Where an evaluation's answer goes: taken once, by the thread that ran it or by the watcher.
struct Reply(Mutex<Option<oneshot::Sender<Answer>>>);

impl Reply {
    fn sender(&self) -> MutexGuard<'_, Option<oneshot::Sender<Answer>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn send(&self, answer: Answer) {
        if let Some(sender) = self.sender().take() {
            let _ = sender.send(answer);
        }
    }

    /// Whether nobody waits for the answer any more.
    fn abandoned(&self) -> bool {
        self.sender()
            .as_ref()
            .is_none_or(oneshot::Sender::is_closed)
    }
}

impl FilterPool {
    /// A pool of `size` threads (at least 1).
    pub fn new(size: usize) -> FilterPool {
        Self::with_stack(size, STACK_SIZE)
    }

    fn with_stack(size: usize, stack_size: usize) -> FilterPool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            size: size.max(1),
            stack_size,
        });
        shared.refill(&mut shared.lock());
        let watched = Arc::clone(&shared);
        if let Err(error) = std::thread::Builder::new()
            .name("filter-watch".to_owned())
            .spawn(move || watch(&watched))
        {
            tracing::error!(%error, "cannot start the filter pool's watcher: overrun evaluations will not be replaced");
        }
        FilterPool { shared }
    }

    /// The process's pool, sized for the machine ([`FilterPool::machine_size`]), started on first use.
    pub fn shared() -> &'static FilterPool {
        static POOL: OnceLock<FilterPool> = OnceLock::new();
        POOL.get_or_init(|| FilterPool::new(Self::machine_size()))
    }

    /// One thread per CPU the process may use, at least 2, so that one evaluation running to its limit never
    /// stalls every other filter.
    pub fn machine_size() -> usize {
        std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .max(2)
    }

    /// How many evaluations run at once.
    pub fn size(&self) -> usize {
        self.shared.size
    }

    /// The pool's counts now.
    pub fn status(&self) -> PoolStatus {
        let state = self.shared.lock();
        PoolStatus {
            size: self.shared.size,
            live: state.live,
            busy: state.running.len(),
            queued: state.queue.len(),
            abandoned: state.abandoned,
        }
    }

    /// Runs `filter` on `envelope` under `limits` on a pool thread. Dropping the future abandons the evaluation:
    /// it is skipped if still queued, and stops at its next check if running.
    pub async fn evaluate<E>(&self, filter: &Filter, envelope: E, limits: Limits) -> Answer
    where
        E: AsRef<Envelope> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let reply = Arc::new(Reply(Mutex::new(Some(sender))));
        {
            let mut state = self.shared.lock();
            if state.live == 0 {
                return Err(unavailable(filter, state.abandoned));
            }
            state.queue.push_back(Job {
                filter: filter.clone(),
                envelope: Box::new(envelope),
                limits,
                reply,
            });
        }
        self.shared.work.notify_one();
        receiver.await.unwrap_or_else(|_| {
            Err(FilterError {
                language: filter.language(),
                kind: ErrorKind::Panicked,
                message: "the filter thread ended without an answer".to_owned(),
            })
        })
    }
}

impl Drop for FilterPool {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts threads until the pool has its size, within the bound on threads (abandoned ones count).
    fn refill(self: &Arc<Self>, state: &mut State) {
        while !state.stopping
            && state.live < self.size
            && state.live + state.abandoned < self.size * 2
        {
            let id = state.next_thread;
            state.next_thread += 1;
            let mut sizes = [self.stack_size, self.stack_size / 4, stack::POOL_SIZED]
                .into_iter()
                .filter(|size| *size >= stack::POOL_SIZED.min(self.stack_size));
            let spawned = loop {
                let Some(size) = sizes.next() else {
                    break None;
                };
                let shared = Arc::clone(self);
                let overrun = Arc::new(AtomicBool::new(false));
                match std::thread::Builder::new()
                    .name(format!("filter-{id}"))
                    .stack_size(size)
                    .spawn(move || serve(&shared, id, &overrun))
                {
                    Ok(_) => break Some(()),
                    Err(error) => {
                        tracing::warn!(%error, stack = size, "cannot start a filter thread with this stack")
                    }
                }
            };
            if spawned.is_none() {
                tracing::error!("cannot start a filter thread; trying again later");
                break;
            }
            state.live += 1;
        }
    }

    /// The next job for thread `id`, registered as running; `None` when the pool stops.
    fn next_job(&self, id: u64, overrun: &Arc<AtomicBool>) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if state.stopping {
                state.live -= 1;
                return None;
            }
            while let Some(job) = state.queue.pop_front() {
                if job.reply.abandoned() {
                    continue;
                }
                state.running.insert(
                    id,
                    Running {
                        started: Instant::now(),
                        limits: job.limits,
                        reply: Arc::clone(&job.reply),
                        overrun: Arc::clone(overrun),
                        filter: job.filter.clone(),
                    },
                );
                return Some(job);
            }
            state = self
                .work
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// A pool thread: evaluates jobs until the pool stops, its evaluation overran, or it must give back what an
/// evaluation past a limit made it touch.
fn serve(shared: &Arc<Shared>, id: u64, overrun: &Arc<AtomicBool>) {
    lower_priority();
    // SAFETY: `overrun` is owned by the caller for the whole life of this thread: this function returns only
    // when the thread ends, and a thread stopped by the allocator never returns.
    unsafe { meter::set_overrun_flag(Arc::as_ptr(overrun)) };
    // No value the memory limit allows may be too deep for the room the depth guard keeps.
    let memory_cap = stack::bounds().map_or(usize::MAX, |(_, size)| {
        (stack::margin(size) / STACK_PER_MEMORY).max(1 << 20) >> 20 << 20
    });
    while let Some(job) = shared.next_job(id, overrun) {
        let limits = Limits {
            memory: job.limits.memory.min(memory_cap),
            ..job.limits
        };
        meter::set_hard_cap(limits.memory.saturating_mul(HARD_MEMORY_FACTOR));
        let reply = Arc::clone(&job.reply);
        let cancelled = || reply.abandoned();
        let started = Instant::now();
        let answer = job
            .filter
            .evaluate((*job.envelope).as_ref(), &limits, &cancelled);
        meter::set_hard_cap(0);
        if started.elapsed() > RELEASE_STACK_AFTER {
            stack::release_unused();
        }
        drop(job);
        let retire =
            matches!(&answer, Err(e) if matches!(e.kind, ErrorKind::Depth | ErrorKind::Memory));
        let mut state = shared.lock();
        if overrun.load(Ordering::SeqCst) {
            // The watcher answered for this evaluation and replaced this thread meanwhile.
            state.abandoned -= 1;
            shared.refill(&mut state);
            return;
        }
        state.running.remove(&id);
        if retire {
            state.live -= 1;
            shared.refill(&mut state);
        }
        drop(state);
        reply.send(answer);
        if retire {
            return;
        }
    }
    // SAFETY: clearing the pointer set above, before `overrun` goes.
    unsafe { meter::set_overrun_flag(std::ptr::null()) };
}

/// The watcher: marks overrun evaluations, answers for them and replaces their threads; see the module docs.
fn watch(shared: &Arc<Shared>) {
    loop {
        std::thread::sleep(WATCH_EVERY);
        let mut state = shared.lock();
        if state.stopping {
            return;
        }
        let now = Instant::now();
        let overdue: Vec<u64> = state
            .running
            .iter()
            .filter(|(_, running)| {
                now.saturating_duration_since(running.started)
                    > running.limits.timeout.saturating_add(GRACE)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            let Some(running) = state.running.remove(&id) else {
                continue;
            };
            running.overrun.store(true, Ordering::SeqCst);
            state.live -= 1;
            state.abandoned += 1;
            tracing::error!(
                thread = id,
                filter = %super::jq::bounded_display(&running.filter.source(), 200),
                abandoned = state.abandoned,
                "a filter evaluation did not stop at its time limit; its thread is abandoned"
            );
            running.reply.send(Err(overrun_error(&running)));
        }
        shared.refill(&mut state);
        if state.live == 0 {
            let abandoned = state.abandoned;
            for job in state.queue.drain(..) {
                job.reply.send(Err(unavailable(&job.filter, abandoned)));
            }
        }
    }
}

fn overrun_error(running: &Running) -> FilterError {
    FilterError {
        language: running.filter.language(),
        kind: ErrorKind::Overrun,
        message: format!(
            "it did not stop at its time limit of {}: it was still running {} later inside one operation that \
             cannot be interrupted (such as building one huge string or array); its thread was abandoned and \
             replaced",
            duration_text(running.limits.timeout),
            duration_text(GRACE)
        ),
    }
}

fn unavailable(filter: &Filter, abandoned: usize) -> FilterError {
    FilterError {
        language: filter.language(),
        kind: ErrorKind::Unavailable,
        message: format!(
            "no filter thread is left: {abandoned} evaluations that could not be interrupted hold them; fix the \
             filters that overran (see the log) and restart the daemon"
        ),
    }
}

/// Lowers this thread's scheduling priority (Linux applies nice values per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority(2) on this thread's own id; raising one's own nice value needs no privilege.
        let tid = unsafe { libc::gettid() };
        let id = libc::id_t::try_from(tid).unwrap_or_default();
        // SAFETY: as above.
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, id, NICE) };
    }
}

#[cfg(test)]
mod tests;
