//! The threads filter evaluations run on: off the async runtime, bounded, with large stacks, and replaced when an
//! evaluation cannot be stopped.
//!
//! Invariants:
//! - [`FilterPool::size`] threads serve evaluations, one at a time each; more wait in a queue, in order. When every
//!   thread is busy with an evaluation that has run longer than [`SLOW`] and work waits, the watcher starts one
//!   more thread, up to twice the size (they leave once nothing waits): so slow filters, up to their time limit,
//!   do not hold up quick ones unless they are more than twice the pool's size. A waiting or running evaluation
//!   whose caller stopped waiting (the trigger was disabled, deleted, reloaded or the daemon is stopping) is
//!   skipped, or stops at its next check: the caller never waits for it.
//! - Every evaluation runs under its [`Limits`] (see `budget`), on a thread with a [`STACK_SIZE`] stack whose
//!   depth guard keeps three quarters of it free for built-ins that recurse through a value, with the memory
//!   limit capped so that no value it allows is too deep for that room ([`STACK_PER_MEMORY`]). Pool threads
//!   keep the daemon's scheduling priority: a lower one made every evaluation wait for the CPU behind any other
//!   busy process on the machine, and the time limit already bounds what a runaway filter takes.
//! - On top of the budget, a pool thread has hard limits the global allocator enforces (`meter`): it stops for
//!   good before holding more than [`HARD_MEMORY_FACTOR`] times the memory limit, or at its first allocation once
//!   the watcher marked it overrun.
//! - The watcher (one thread, waking every [`WATCH_EVERY`]) marks a thread overrun when its evaluation is still
//!   running [`GRACE`] past its time limit: jq evaluations stop themselves at the limit, so this is only a
//!   built-in that runs long between two interpreter steps, or a JMESPath evaluation. The watcher answers the
//!   caller with an [`ErrorKind::Overrun`] error and starts a replacement thread. A thread cannot be killed: the
//!   overrun one stops at its next allocation (it then sleeps forever, holding what it had) or, if it ever
//!   finishes, exits.
//! - A filter that overran is not run again (its evaluations fail at once with the reason): its trigger holds the
//!   event in Exception anyway, and retrying would only abandon one more thread each time. Changing the filter
//!   (and reloading) or restarting the daemon runs it again. So each hostile filter costs at most one thread.
//! - Overrun threads are replaced while no more than [`FilterPool::max_abandoned`] are abandoned (they leave the
//!   count when they exit): threads are never more than `2 × size + max_abandoned`, plus the watcher. Past that the
//!   pool shrinks, and once no thread is left evaluations fail at once with [`ErrorKind::Unavailable`] instead of
//!   waiting.
//! - A thread whose evaluation went past the depth or memory limit exits after answering and is replaced, which
//!   gives the stack and heap it touched back to the system.
//! - A job may hold several events of one trigger ([`FilterPool::evaluate_many`]): one hand-over to a thread and
//!   one answer instead of one per event, which is most of what a cheap filter costs when a trigger reads a
//!   backlog. Each event is evaluated under its own limits and timed on its own (the watcher and [`SLOW`] look
//!   at the event running now). A job gives its thread up after [`BATCH_SLICE`] and answers the events it
//!   evaluated so far, so one trigger's backlog never holds a thread longer than one slow event would; the
//!   caller sends the rest again, behind the work that waited meanwhile.

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
/// memory can build. Measured: one nesting level costs at least 56 bytes of heap as counted (`[.]`; about 100 in
/// practice), and printing it (`tojson`, `tostring`: the deepest recursion among jaq's built-ins; comparing,
/// sorting, merging and dropping need less) about 1 KiB of stack in an optimised build, 3.8 KiB in a debug build.
/// The pool keeps [`stack::margin`] of each thread's stack for that and caps the memory limit at
/// `margin / STACK_PER_MEMORY`: 64 MiB on a 2 GiB stack, above the default limit. (Measured in an optimised
/// build: `tojson` of a value nested 640,000 levels deep, as deep as 64 MiB allows, peaked at 700 MiB of stack;
/// at the default 32 MiB the deepest value is half that.)
pub const STACK_PER_MEMORY: usize = if cfg!(debug_assertions) { 80 } else { 24 };
/// An evaluation that ran longer than this may have touched much of its stack: the pages below the current
/// depth are given back afterwards (one system call, only for evaluations this slow).
const RELEASE_STACK_AFTER: Duration = Duration::from_millis(1);
/// An evaluation that held more than this at once leaves the allocator with that much free memory, which it
/// keeps for the thread's arena: it is given back to the system afterwards.
const TRIM_HEAP_AFTER: isize = 16 << 20;
/// How long past its time limit an evaluation may run before its thread counts as overrun.
pub const GRACE: Duration = Duration::from_secs(1);
/// An evaluation running this long counts as slow: when every thread is busy with a slow one and work waits, the
/// watcher starts one more thread, up to twice the pool's size; such threads leave once nothing waits.
pub const SLOW: Duration = Duration::from_millis(250);
/// How often the watcher looks for overrun evaluations.
pub const WATCH_EVERY: Duration = Duration::from_millis(50);
/// The memory a pool thread may hold during an evaluation, as a multiple of the evaluation's memory limit,
/// before it stops for good (the budget stops the evaluation cleanly at 1x between steps; this catches a single
/// step that allocates far more).
pub const HARD_MEMORY_FACTOR: usize = 4;
/// The fewest abandoned overrun threads a pool replaces before it stops replacing them.
pub const MIN_ABANDONED: usize = 4;
/// How long a job of several events keeps its thread before it answers the events evaluated so far (at least
/// one is always evaluated).
pub const BATCH_SLICE: Duration = Duration::from_millis(2);

/// What one evaluation sends back.
pub type Answer = Result<Vec<Value>, FilterError>;

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
    max_abandoned: usize,
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
    /// The events to evaluate, in order (at least one).
    envelopes: Vec<Box<dyn AsRef<Envelope> + Send>>,
    limits: Limits,
    reply: Arc<Reply>,
}

struct Running {
    limits: Limits,
    reply: Arc<Reply>,
    overrun: Arc<AtomicBool>,
    /// For the log when the evaluation overruns.
    filter: Filter,
}

/// Where a job's answers go: collected as its events are evaluated, and sent once, by the thread that ran it or
/// by the watcher.
struct Reply(Mutex<Replying>);

struct Replying {
    sender: Option<oneshot::Sender<Vec<Answer>>>,
    /// The answers so far, in the job's order.
    answers: Vec<Answer>,
    /// When the evaluation running now started: what the time limit and [`SLOW`] are measured from.
    started: Instant,
}

impl Reply {
    fn new(sender: oneshot::Sender<Vec<Answer>>) -> Reply {
        Reply(Mutex::new(Replying {
            sender: Some(sender),
            answers: Vec::new(),
            started: Instant::now(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Replying> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the start of the job's next evaluation.
    fn start(&self) -> Instant {
        let now = Instant::now();
        self.lock().started = now;
        now
    }

    /// When the evaluation running now started.
    fn started(&self) -> Instant {
        self.lock().started
    }

    /// Adds the next answer; `false` once the job was answered (by the watcher), or nobody waits any more.
    fn push(&self, answer: Answer) -> bool {
        let mut replying = self.lock();
        if replying
            .sender
            .as_ref()
            .is_none_or(oneshot::Sender::is_closed)
        {
            return false;
        }
        replying.answers.push(answer);
        true
    }

    /// Sends the answers so far, with `last` after them; later pushes are ignored.
    fn send(&self, last: Option<Answer>) {
        let mut replying = self.lock();
        if let Some(sender) = replying.sender.take() {
            let mut answers = std::mem::take(&mut replying.answers);
            answers.extend(last);
            let _ = sender.send(answers);
        }
    }

    /// Whether nobody waits for the answer any more.
    fn abandoned(&self) -> bool {
        self.lock()
            .sender
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
            max_abandoned: size.max(MIN_ABANDONED),
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

    /// How many abandoned overrun threads the pool replaces at a time: its size, at least [`MIN_ABANDONED`].
    pub fn max_abandoned(&self) -> usize {
        self.shared.max_abandoned
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
        let mut answers = self.evaluate_many(filter, vec![envelope], limits).await;
        answers.truncate(1);
        answers.pop().unwrap_or_else(|| Err(no_answer(filter)))
    }

    /// Runs `filter` on each of `envelopes` in order, each under `limits`, in one job: the answers of the first
    /// events, at least one (none only for no envelopes). Fewer answers than envelopes: the job gave its thread
    /// up after [`BATCH_SLICE`], or an evaluation failed in a way that ended its thread (past a limit, overrun);
    /// the caller sends the rest again. Dropping the future abandons the job: it is skipped if still queued, and
    /// its evaluation stops at its next check if running.
    pub async fn evaluate_many<E>(
        &self,
        filter: &Filter,
        envelopes: Vec<E>,
        limits: Limits,
    ) -> Vec<Answer>
    where
        E: AsRef<Envelope> + Send + 'static,
    {
        if envelopes.is_empty() {
            return Vec::new();
        }
        if let Some(reason) = filter.overran() {
            return vec![Err(FilterError {
                language: filter.language(),
                kind: ErrorKind::Overrun,
                message: format!(
                    "not run: {reason}; a filter that could not be interrupted is not run again, so that it holds \
                     no more filter threads: change it and reload the configuration (or restart the daemon)"
                ),
            })];
        }
        let (sender, receiver) = oneshot::channel();
        let reply = Arc::new(Reply::new(sender));
        {
            let mut state = self.shared.lock();
            if state.live == 0 {
                return vec![Err(unavailable(filter, state.abandoned))];
            }
            state.queue.push_back(Job {
                filter: filter.clone(),
                envelopes: envelopes
                    .into_iter()
                    .map(|envelope| Box::new(envelope) as Box<dyn AsRef<Envelope> + Send>)
                    .collect(),
                limits,
                reply,
            });
        }
        self.shared.work.notify_one();
        match receiver.await {
            Ok(answers) if !answers.is_empty() => answers,
            _ => vec![Err(no_answer(filter))],
        }
    }
}

fn no_answer(filter: &Filter) -> FilterError {
    FilterError {
        language: filter.language(),
        kind: ErrorKind::Panicked,
        message: "the filter thread ended without an answer".to_owned(),
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
        while state.live < self.size
            && state.live + state.abandoned < self.size + self.max_abandoned
            && self.spawn(state)
        {}
    }

    /// The most threads serving evaluations at once: twice the pool's size (see [`SLOW`]).
    fn max_live(&self) -> usize {
        self.size * 2
    }

    /// Starts one more thread; `false` if the pool stops or the system refuses.
    fn spawn(self: &Arc<Self>, state: &mut State) -> bool {
        if state.stopping {
            return false;
        }
        let id = state.next_thread;
        state.next_thread += 1;
        let sizes = [self.stack_size, self.stack_size / 4, stack::POOL_SIZED]
            .into_iter()
            .filter(|size| *size >= stack::POOL_SIZED.min(self.stack_size));
        for size in sizes {
            let shared = Arc::clone(self);
            let overrun = Arc::new(AtomicBool::new(false));
            match std::thread::Builder::new()
                .name(format!("filter-{id}"))
                .stack_size(size)
                .spawn(move || serve(&shared, id, &overrun))
            {
                Ok(_) => {
                    state.live += 1;
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, stack = size, "cannot start a filter thread with this stack");
                }
            }
        }
        tracing::error!("cannot start a filter thread; trying again later");
        false
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
                job.reply.start();
                state.running.insert(
                    id,
                    Running {
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
        let reply = Arc::clone(&job.reply);
        let cancelled = || reply.abandoned();
        let sliced = Instant::now();
        let mut retire = false;
        for (done, envelope) in job.envelopes.iter().enumerate() {
            if done > 0 && (sliced.elapsed() > BATCH_SLICE || reply.abandoned()) {
                break;
            }
            let started = reply.start();
            meter::set_hard_cap(limits.memory.saturating_mul(HARD_MEMORY_FACTOR));
            let answer = job
                .filter
                .evaluate((**envelope).as_ref(), &limits, &cancelled);
            meter::set_hard_cap(0);
            give_back(started.elapsed(), meter::peak_bytes());
            retire =
                matches!(&answer, Err(e) if matches!(e.kind, ErrorKind::Depth | ErrorKind::Memory));
            if !reply.push(answer) || retire {
                break;
            }
        }
        drop(job);
        let mut state = shared.lock();
        if overrun.load(Ordering::SeqCst) {
            // The watcher answered for this evaluation and replaced this thread meanwhile.
            state.abandoned -= 1;
            shared.refill(&mut state);
            break;
        }
        state.running.remove(&id);
        // A thread started beside slow evaluations leaves once nothing waits.
        let surplus = state.live > shared.size && state.queue.is_empty();
        let leave = retire || surplus;
        if leave {
            state.live -= 1;
            shared.refill(&mut state);
        }
        drop(state);
        reply.send(None);
        if leave {
            break;
        }
    }
    // SAFETY: clearing the pointer set above, before `overrun` goes.
    unsafe { meter::set_overrun_flag(std::ptr::null()) };
}

/// Gives back to the system what an evaluation that took `elapsed` and held `peak` bytes at most may have left
/// resident: its thread's stack below the current depth, and the allocator's free memory.
fn give_back(elapsed: Duration, peak: isize) {
    if elapsed > RELEASE_STACK_AFTER {
        stack::release_unused();
    }
    if peak > TRIM_HEAP_AFTER {
        meter::release_free_memory();
    }
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
                now.saturating_duration_since(running.reply.started())
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
            let error = overrun_error(&running);
            running
                .filter
                .mark_overran(format!("on an earlier event {}", error.message));
            running.reply.send(Some(Err(error)));
        }
        shared.refill(&mut state);
        // Work waits while every thread is busy with an evaluation that has run a while: one more thread, so that
        // slow filters (up to their time limit, which may be a minute) do not hold up the quick ones.
        let idle = state.live.saturating_sub(state.running.len());
        let all_slow = state
            .running
            .values()
            .all(|running| now.saturating_duration_since(running.reply.started()) > SLOW);
        if !state.queue.is_empty()
            && idle == 0
            && all_slow
            && state.live < shared.max_live()
            && state.live + state.abandoned < shared.max_live() + shared.max_abandoned
        {
            shared.spawn(&mut state);
        }
        if state.live == 0 {
            let abandoned = state.abandoned;
            for job in state.queue.drain(..) {
                job.reply
                    .send(Some(Err(unavailable(&job.filter, abandoned))));
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

#[cfg(test)]
mod tests;
