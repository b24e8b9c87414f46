//! What one evaluation may spend, and the checks that hold it to that.
//!
//! An evaluation is given [`Limits`]; a [`Budget`] enforces them while it runs:
//! - jq: the interpreter calls [`Budget::tick`] at every step (every term it evaluates, and every number `range`
//!   yields). Each tick compares the stack pointer with a floor well above the end of the thread's stack; every
//!   [`CHECK_EVERY`] ticks it also checks the clock, the memory counted by `meter`, and whether the caller still
//!   wants the result. Past a limit the tick unwinds with an [`Exceeded`] payload (through
//!   `std::panic::resume_unwind`, so no panic hook runs and nothing is printed); the evaluation's entry point
//!   catches it and turns it into a [`super::FilterError`]. jaq forbids `unsafe` code, so unwinding through it
//!   frees everything it held.
//! - JMESPath has no loops and no recursion: its work is bounded by the expression and the event. Its
//!   evaluation cannot be interrupted; the filter pool's hard limits (see `pool`) contain it.
//! - Both: outputs are converted to JSON under [`Limits::output_bytes`], [`Limits::output_depth`] and
//!   [`Limits::outputs`] (`output`).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// What one evaluation of a filter on one event may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from the start of the evaluation (`filter_timeout`, 1 s by default).
    pub timeout: Duration,
    /// Memory the evaluation may hold beyond the event it is given, in bytes.
    pub memory: usize,
    /// The JSON size of one event's outputs together, in bytes.
    pub output_bytes: usize,
    /// How deep one output may nest (arrays and objects).
    pub output_depth: usize,
    /// How many outputs one event may yield.
    pub outputs: usize,
}

/// The default of `filter_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest `filter_timeout` accepted: a runaway filter holds a pool thread this long per try.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Memory one evaluation may hold (32 MiB): far above what reshaping an event needs (the event itself and the
/// outputs are not counted), far below what would hurt the daemon. It also bounds how deep a value can nest, and
/// so how much stack a built-in recursing through it can touch (about ten times as much; see `pool`).
pub const MAX_MEMORY: usize = 32 << 20;
/// The JSON size of one event's outputs together (16 MiB): above Function Compute's 6 MB invocation payload.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// How deep an output may nest: receivers parse it recursively (Python's `json` gives up near 1,000 levels).
pub const MAX_OUTPUT_DEPTH: usize = 512;
/// The most payloads one event may yield: past it the filter is taken to be endless (`repeat`, `range(infinite)`)
/// and fails, instead of filling memory.
pub const MAX_OUTPUTS: usize = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: DEFAULT_TIMEOUT,
            memory: MAX_MEMORY,
            output_bytes: MAX_OUTPUT_BYTES,
            output_depth: MAX_OUTPUT_DEPTH,
            outputs: MAX_OUTPUTS,
        }
    }
}

impl Limits {
    /// The default limits with another time limit.
    pub fn with_timeout(timeout: Duration) -> Self {
        Limits {
            timeout,
            ..Limits::default()
        }
    }
}

/// Which limit an evaluation went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// It ran longer than [`Limits::timeout`].
    Time(Duration),
    /// It held more than [`Limits::memory`].
    Memory(usize),
    /// It recursed so deep that the thread's stack would run out.
    Depth,
    /// The caller no longer wants the result (the trigger was stopped).
    Cancelled,
}

/// Ticks between two checks of the clock, the memory and the caller: a check costs a clock read (~25 ns), a
/// tick a few instructions; 1,024 ticks take well under a millisecond.
pub const CHECK_EVERY: u32 = 1024;

/// The running account of one evaluation; see the module documentation. Lives on the evaluating thread.
pub struct Budget<'c> {
    limits: Limits,
    deadline: Instant,
    /// Whether the caller gave up on the result.
    cancelled: &'c (dyn Fn() -> bool + 'c),
    /// The lowest stack address a tick may see before the evaluation is stopped.
    stack_floor: usize,
    ticks: Cell<u32>,
}

impl<'c> Budget<'c> {
    /// Starts the account now, on the current thread.
    pub fn start(limits: Limits, cancelled: &'c (dyn Fn() -> bool + 'c)) -> Self {
        Budget {
            limits,
            deadline: Instant::now() + limits.timeout,
            cancelled,
            stack_floor: stack::floor(),
            ticks: Cell::new(0),
        }
    }

    /// One step of the evaluation; unwinds with an [`Exceeded`] past a limit.
    #[inline]
    pub fn tick(&self) {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if stack::pointer() < self.stack_floor {
            exceed(Exceeded::Depth);
        }
        if ticks.is_multiple_of(CHECK_EVERY) {
            self.check();
        }
    }

    /// The checks made every [`CHECK_EVERY`] ticks; unwinds with an [`Exceeded`] past a limit.
    #[cold]
    pub fn check(&self) {
        if let Some(exceeded) = self.over() {
            exceed(exceeded);
        }
    }

    /// The limit the evaluation is past, if any (clock, memory, caller; not the stack).
    pub fn over(&self) -> Option<Exceeded> {
        if Instant::now() >= self.deadline {
            Some(Exceeded::Time(self.limits.timeout))
        } else if usize::try_from(super::meter::net_bytes()).is_ok_and(|n| n > self.limits.memory) {
            Some(Exceeded::Memory(self.limits.memory))
        } else if (self.cancelled)() {
            Some(Exceeded::Cancelled)
        } else {
            None
        }
    }
}

/// Unwinds out of the evaluation without running the panic hook.
#[cold]
fn exceed(exceeded: Exceeded) -> ! {
    std::panic::resume_unwind(Box::new(exceeded))
}

/// The stack of the current thread: where it ends, how close to that end an evaluation may go, and giving back
/// what an evaluation touched.
pub mod stack {
    use std::cell::Cell;

    /// Stacks at least this large are the filter pool's: their guard keeps most of the stack free for built-ins
    /// that recurse through a deep value (see [`margin`]).
    pub const POOL_SIZED: usize = 256 << 20;

    /// The stack kept free below the deepest interpreter step. On a pool-sized stack, three quarters of it: the
    /// room for built-ins that recurse through a value (jaq drops, compares and prints values recursively), whose
    /// depth the pool bounds through the memory limit. On another thread, a quarter of its stack (at most
    /// 256 KiB): room for the frames between two steps and for unwinding; built-ins on deep values need a pool
    /// thread.
    pub fn margin(size: usize) -> usize {
        if size >= POOL_SIZED {
            size / 4 * 3
        } else {
            (size / 4).min(256 << 10)
        }
    }

    thread_local! {
        /// The current thread's stack floor for evaluations, once known.
        static FLOOR: Cell<usize> = const { Cell::new(0) };
    }

    /// The address of a local variable: the current depth of the stack (it grows downwards).
    #[inline(always)]
    pub fn pointer() -> usize {
        let marker = 0u8;
        std::hint::black_box(&marker) as *const u8 as usize
    }

    /// The lowest stack address an evaluation on this thread may reach (computed once per thread).
    pub fn floor() -> usize {
        let known = FLOOR.with(Cell::get);
        if known != 0 {
            return known;
        }
        let floor = match bounds() {
            Some((low, size)) => low.saturating_add(margin(size)),
            // Unknown bounds: assume the 2 MiB of a default Rust thread below the current depth.
            None => pointer()
                .saturating_sub(2 << 20)
                .saturating_add(margin(2 << 20)),
        };
        FLOOR.with(|cell| cell.set(floor));
        floor
    }

    /// Gives the pages of this thread's stack below the current depth back to the system (they read as zero if
    /// touched again). An evaluation that recursed deep leaves them resident otherwise, for the thread's life.
    pub fn release_unused() {
        #[cfg(target_os = "linux")]
        if let Some((low, _)) = bounds() {
            const PAGE: usize = 4096;
            // Above the guard area, and well below the frames in use now.
            let from = (low + (64 << 10)).next_multiple_of(PAGE);
            let to = pointer().saturating_sub(64 << 10) / PAGE * PAGE;
            if to > from {
                // SAFETY: [from, to) lies inside this thread's stack, below every live frame (the current one is
                // 64 KiB higher), so no live data is discarded; the kernel maps fresh zero pages if it is used again.
                unsafe {
                    libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_DONTNEED);
                }
            }
        }
    }

    /// The current thread's stack: its lowest address and its size.
    #[cfg(target_os = "linux")]
    pub fn bounds() -> Option<(usize, usize)> {
        // SAFETY: `pthread_getattr_np` fills the zeroed attribute object for the calling thread, which is then
        // read and destroyed exactly once.
        unsafe {
            let mut attr: libc::pthread_attr_t = std::mem::zeroed();
            if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
                return None;
            }
            let mut address: *mut libc::c_void = std::ptr::null_mut();
            let mut size: libc::size_t = 0;
            let got = libc::pthread_attr_getstack(&attr, &mut address, &mut size);
            libc::pthread_attr_destroy(&mut attr);
            (got == 0 && !address.is_null() && size > 0).then_some((address as usize, size))
        }
    }

    /// The current thread's stack: unknown on this system.
    #[cfg(not(target_os = "linux"))]
    pub fn bounds() -> Option<(usize, usize)> {
        None
    }
}
