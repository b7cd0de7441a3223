//! Per-worker heap accounting for the pipeline benchmark.
//!
//! All the simulated `deliver` invocations (workers) run in one process and share one seeded
//! in-memory store and one queue, so the operating system's view (RSS) cannot tell one
//! worker's memory from another's, nor from the million-subscriber store's. Instead, the
//! process's global allocator ([`Counting`], the system allocator underneath) counts bytes by
//! *tag*: a thread-local set by [`Tagged`], a wrapper future, for the duration of each poll of
//! the future it wraps. Each worker task runs inside `Tagged` with its own tag, so every
//! allocation, reallocation and deallocation made while that worker is being polled is added to
//! (or taken from) its live bytes, and the highest value they reach is its peak.
//!
//! What this measures, honestly:
//! - Heap bytes requested (`Layout::size`): not allocator overhead, fragmentation, thread
//!   stacks or code, and not the tokio runtime's own bookkeeping done outside a worker's poll.
//!   It is the memory an invocation's own work holds (the page of connection ids, the posts in
//!   flight, the received messages), which is what grows if a worker does not stay flat.
//! - A byte freed during another tag's poll than the one that allocated it is taken from the
//!   freeing tag, so a worker's count could drift; the benchmark prints the largest live bytes
//!   a worker still holds at the end of a row (under 2 KiB) to show that it does not.
//! - The in-memory stand-ins for DynamoDB and SQS run under [`STAND_INS`] where they keep data
//!   (writes to the table, messages sent and deleted; see `sim`), because in AWS that memory
//!   lives in those services, not in the invocation. What a read or a receive returns is the
//!   worker's.

#![allow(unsafe_code)] // a global allocator is an `unsafe impl`; nothing else here is unsafe

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::task::{Context, Poll};

/// How many tags there are; tag 0 is "not counted".
pub(crate) const TAGS: usize = 1024;
/// The tag of the in-memory store and queue where they keep data.
pub(crate) const STAND_INS: usize = 1;
/// The first worker's tag.
pub(crate) const FIRST_WORKER: usize = 2;

#[derive(Debug)]
struct Slot {
    live: AtomicI64,
    peak: AtomicI64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            live: AtomicI64::new(0),
            peak: AtomicI64::new(0),
        }
    }
}

static SLOTS: [Slot; TAGS] = [const { Slot::new() }; TAGS];

thread_local! {
    // A const-initialised `Cell` with no destructor: reading it never allocates, so the
    // allocator may use it.
    static TAG: Cell<usize> = const { Cell::new(0) };
}

fn current_tag() -> usize {
    TAG.try_with(Cell::get).unwrap_or(0)
}

fn set_tag(tag: usize) -> usize {
    TAG.try_with(|cell| cell.replace(tag)).unwrap_or(0)
}

fn record(size: usize, grow: bool) {
    let tag = current_tag();
    if tag == 0 {
        return;
    }
    let Some(slot) = SLOTS.get(tag) else { return };
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    if grow {
        let live = slot.live.fetch_add(size, Ordering::Relaxed) + size;
        slot.peak.fetch_max(live, Ordering::Relaxed);
    } else {
        slot.live.fetch_sub(size, Ordering::Relaxed);
    }
}

/// The system allocator, counting live bytes per tag.
#[derive(Debug)]
pub(crate) struct Counting;

// SAFETY: every call is forwarded unchanged to `System`, under the caller's contract; the
// bookkeeping around it touches only atomics and a const thread-local, and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            record(layout.size(), true);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            record(layout.size(), true);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        record(layout.size(), false);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                record(new_size - layout.size(), true);
            } else {
                record(layout.size() - new_size, false);
            }
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Zeroes the live and peak bytes of `tags`.
pub(crate) fn reset(tags: std::ops::Range<usize>) {
    for slot in SLOTS.get(tags).unwrap_or_default() {
        slot.live.store(0, Ordering::Relaxed);
        slot.peak.store(0, Ordering::Relaxed);
    }
}

/// The highest live bytes `tag` reached since its reset.
pub(crate) fn peak(tag: usize) -> i64 {
    SLOTS
        .get(tag)
        .map_or(0, |slot| slot.peak.load(Ordering::Relaxed))
}

/// The live bytes of `tag` now.
pub(crate) fn live(tag: usize) -> i64 {
    SLOTS
        .get(tag)
        .map_or(0, |slot| slot.live.load(Ordering::Relaxed))
}

/// A future whose polls are counted under `tag` (and then the previous tag is restored).
#[derive(Debug)]
pub(crate) struct Tagged<F> {
    tag: usize,
    inner: Pin<Box<F>>,
}

/// `future`, counted under `tag`.
pub(crate) fn tagged<F: Future>(tag: usize, future: F) -> Tagged<F> {
    Tagged {
        tag,
        inner: Box::pin(future),
    }
}

/// Runs `f` counted under `tag`.
pub(crate) fn with_tag<T>(tag: usize, f: impl FnOnce() -> T) -> T {
    let _restore = Restore(set_tag(tag));
    f()
}

/// Restores the previous tag when a poll ends, even by unwinding.
struct Restore(usize);

impl Drop for Restore {
    fn drop(&mut self) {
        set_tag(self.0);
    }
}

impl<F: Future> Future for Tagged<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _restore = Restore(set_tag(self.tag));
        self.inner.as_mut().poll(cx)
    }
}
