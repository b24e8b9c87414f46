//! Per-thread allocation metering: the process's global allocator counts what the current thread allocates while
//! a filter evaluation runs on it, so the evaluation can be held to a memory budget.
//!
//! Invariants:
//! - A thread that is not metering pays one thread-local read per allocation and nothing else; every allocation
//!   is served by jemalloc ([`INNER`]) unchanged.
//! - While metering, [`net_bytes`] is the bytes this thread allocated minus those it freed since
//!   [`start`]. Memory freed here but allocated elsewhere lowers it, which can only under-count by what the
//!   evaluation was handed.
//! - The evaluation itself checks [`net_bytes`] between steps and fails cleanly (see `budget`). The allocator
//!   never fails an allocation and never unwinds (both would abort the process). Its only sanction, on a thread
//!   that set a hard cap (the filter pool's threads), is to stop that thread for good *before* an allocation
//!   that would take it past the cap, or once the pool marked it as overrun: the thread then sleeps forever
//!   holding what it has, and the pool replaces it. That is what contains a single huge allocation
//!   (`"x" * 1e10`) or a built-in that runs long between two steps of the interpreter.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tikv_jemallocator::Jemalloc;

/// The allocator underneath the metering.
///
/// Why jemalloc rather than the system's (glibc): a block is decoded on one thread and its events are freed on
/// another, and glibc's arenas pay for that in locks and consolidation (a fifth of the daemon's CPU while it
/// catches up). With jemalloc the daemon spends 30-32 us of CPU per block instead of 37-39, for the same memory
/// with 1,000 triggers (see BENCHMARKS.md). C code in the process (SQLite, aws-lc) keeps the system allocator:
/// the crate's symbols are prefixed.
static INNER: Jemalloc = Jemalloc;

/// The process's allocator: jemalloc, metered per thread while a filter evaluation runs.
pub struct MeteredAllocator;

#[global_allocator]
static GLOBAL: MeteredAllocator = MeteredAllocator;

thread_local! {
    /// Whether this thread's allocations are counted.
    static METERING: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed since metering started.
    static NET: Cell<isize> = const { Cell::new(0) };
    /// The most `NET` reached since metering started.
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// Net bytes past which this thread stops for good; 0 means never.
    static HARD_CAP: Cell<usize> = const { Cell::new(0) };
    /// Set by another thread when this thread's evaluation overran: it stops at its next allocation.
    static OVERRUN: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

/// Starts counting this thread's allocations from zero.
pub fn start() {
    NET.with(|net| net.set(0));
    PEAK.with(|peak| peak.set(0));
    METERING.with(|metering| metering.set(true));
}

/// Stops counting; returns the net bytes counted.
pub fn stop() -> isize {
    METERING.with(|metering| metering.set(false));
    NET.with(Cell::get)
}

/// Bytes allocated minus bytes freed by this thread since [`start`].
pub fn net_bytes() -> isize {
    NET.with(Cell::get)
}

/// The most this thread held at once since [`start`] (while metering).
pub fn peak_bytes() -> isize {
    PEAK.with(Cell::get)
}

/// Runs `f` with metering paused (work bounded by other means, such as converting outputs under their own size
/// limit), and resumes it with the count unchanged.
pub fn paused<T>(f: impl FnOnce() -> T) -> T {
    let was = METERING.with(|metering| metering.replace(false));
    let result = f();
    METERING.with(|metering| metering.set(was));
    result
}

/// Makes this thread stop for good before it would hold more than `bytes` while metering (0: no cap). Only for
/// threads the filter pool owns and can replace.
pub fn set_hard_cap(bytes: usize) {
    HARD_CAP.with(|cap| cap.set(bytes));
}

/// Makes this thread stop for good at its first metered allocation once `*overrun` is set (null: never), while
/// it has a hard cap. Only for threads the filter pool owns and can replace.
///
/// # Safety
///
/// `overrun` must stay valid until this thread ends or calls this again with another pointer.
pub unsafe fn set_overrun_flag(overrun: *const AtomicBool) {
    OVERRUN.with(|flag| flag.set(overrun));
}

#[inline]
fn charge(bytes: usize) {
    let _ = METERING.try_with(|metering| {
        if metering.get() {
            charge_metered(bytes);
        }
    });
}

#[inline]
fn credit(bytes: usize) {
    let _ = METERING.try_with(|metering| {
        if metering.get() {
            let _ = NET.try_with(|net| {
                net.set(net.get().saturating_sub_unsigned(bytes));
            });
        }
    });
}

#[cold]
fn charge_metered(bytes: usize) {
    let after = NET
        .try_with(|net| {
            let after = net.get().saturating_add_unsigned(bytes);
            net.set(after);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(after)));
            after
        })
        .unwrap_or(0);
    let cap = HARD_CAP.try_with(Cell::get).unwrap_or(0);
    if cap == 0 {
        return;
    }
    let overrun = OVERRUN
        .try_with(Cell::get)
        .ok()
        .filter(|flag| !flag.is_null())
        // SAFETY: `set_overrun_flag`'s caller keeps the flag alive while it is set.
        .is_some_and(|flag| unsafe { &*flag }.load(Ordering::Relaxed));
    if overrun || usize::try_from(after).is_ok_and(|after| after > cap) {
        stop_forever();
    }
}

/// Parks this thread for good without allocating or unwinding (both of which the allocator must not do).
#[cold]
fn stop_forever() -> ! {
    let _ = METERING.try_with(|metering| metering.set(false));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Returns the free memory of every jemalloc arena to the system now, rather than after jemalloc's decay (about
/// ten seconds, and only on an arena still in use). `false` if jemalloc refused, which only costs memory.
pub fn release_free_memory() -> bool {
    // MALLCTL_ARENAS_ALL (4096) names every arena at once.
    const PURGE_ALL: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a NUL-terminated control name that takes and returns nothing, so every pointer may be null.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    status == 0
}

// SAFETY: every method forwards to jemalloc with the caller's arguments unchanged; the metering
// around it only touches this thread's own counters and never allocates or unwinds.
unsafe impl GlobalAlloc for MeteredAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size());
        // SAFETY: forwarded as received.
        unsafe { INNER.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size());
        // SAFETY: forwarded as received.
        unsafe { INNER.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        credit(layout.size());
        // SAFETY: forwarded as received.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            charge(new_size - layout.size());
        } else {
            credit(layout.size() - new_size);
        }
        // SAFETY: forwarded as received.
        unsafe { INNER.realloc(ptr, layout, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jemalloc_accepts_the_request_to_release_free_memory() {
        let freed: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1 << 20]).collect();
        drop(std::hint::black_box(freed));
        assert!(release_free_memory(), "jemalloc refused arena.4096.purge");
    }

    #[test]
    fn a_metering_thread_counts_what_it_holds() {
        std::thread::spawn(|| {
            start();
            let held: Vec<u8> = Vec::with_capacity(1 << 20);
            assert!(net_bytes() >= 1 << 20, "{}", net_bytes());
            assert!(peak_bytes() >= 1 << 20, "{}", peak_bytes());
            let paused_bytes = paused(|| {
                let more: Vec<u8> = Vec::with_capacity(1 << 20);
                std::hint::black_box(&more);
                net_bytes()
            });
            assert!(
                paused_bytes < 2 << 20,
                "allocations while paused are not counted"
            );
            drop(held);
            assert!(net_bytes() < 1 << 16, "{}", net_bytes());
            assert!(peak_bytes() >= 1 << 20, "the peak stays");
            stop();
            let unmetered: Vec<u8> = Vec::with_capacity(1 << 20);
            std::hint::black_box(&unmetered);
            assert!(net_bytes() < 1 << 16, "not counted once stopped");
        })
        .join()
        .expect("the metering thread");
    }
}
