//! ferrovent's wrapper around CPython's arena allocator: the frame-stack chunk cache.
//!
//! Every greenlet that runs Python code gets a fresh 16 KiB frame-stack chunk from the arena allocator, which
//! maps and unmaps it with a syscall each: that pair costs more than the rest of a short greenlet's life. This
//! wrapper serves chunks of exactly that size from `slabs` and recycles them; every other request goes to the
//! allocator that was installed before ours. It also takes back the small root chunks `frame_stack` hands out,
//! which greenlet frees through the arena allocator when a greenlet ends.
//!
//! CPython frees a chunk as soon as the frame that starts it returns, so a call made in a loop whose frame starts
//! a new chunk takes one and gives it back on every call. Each thread keeps the frame chunk it freed last as its
//! spare and hands it out first: that round trip then costs two thread-local accesses, not a slab's lock and
//! lookup (a small root chunk puts that boundary only a few calls deep).
//!
//! Invariants (besides those in `cpython/mod.rs` and `slabs`):
//! - A free is ours only if the pointer lies in one of our slabs; anything else, whatever its size, goes to the
//!   previous allocator, which made it (chunks CPython mapped before we were installed included). A spare is any
//!   frame chunk, ours or not: all are the same size, and its final free is sorted out like any other.
//! - Requests reach us from any thread holding the GIL, possibly from several interpreters at once: the slabs are
//!   behind a mutex, and what the probe reads (`Seen`) is per thread.
//! - If someone installs another allocator after us, our chunks still live and recycle through us while our free
//!   is called (a wrapper that delegates to us); `installed` tells `frame_stack` to stop handing out small chunks.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use pyo3::ffi::{PyObjectArenaAllocator, PyObject_GetArenaAllocator, PyObject_SetArenaAllocator};

use super::slabs::{Kind, Release, Slabs};
use super::FRAME_CHUNK;

/// The allocator that was installed before ours, as plain values so it can live in a static.
struct Previous {
    ctx: usize,
    alloc: extern "C" fn(*mut c_void, usize) -> *mut c_void,
    free: extern "C" fn(*mut c_void, *mut c_void, usize),
}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static SLABS: Mutex<Slabs> = Mutex::new(Slabs::new());
/// Our allocator's context: its address marks the allocator as ours.
static CONTEXT: u8 = 0;

/// Frame chunks this thread was handed and gave back, and the latest handed out: what the probe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub handed_out: usize,
    pub freed: usize,
    pub last: usize,
}

/// The frame chunk this thread freed last and kept for its next request (0: none); given back when the thread
/// ends.
struct Spare(Cell<usize>);

impl Drop for Spare {
    fn drop(&mut self) {
        let chunk = self.0.replace(0);
        if chunk != 0 {
            release(chunk as *mut c_void, FRAME_CHUNK);
        }
    }
}

thread_local! {
    static SEEN: Cell<Seen> = const { Cell::new(Seen { handed_out: 0, freed: 0, last: 0 }) };
    static SPARE: Spare = const { Spare(Cell::new(0)) };
}

/// This thread's spare frame chunk, taken (None if it has none, or is ending).
fn take_spare() -> Option<usize> {
    SPARE.try_with(|spare| spare.0.replace(0)).ok().filter(|&chunk| chunk != 0)
}

/// Keeps `chunk` as this thread's spare; false if it already has one (or is ending).
fn keep_spare(chunk: usize) -> bool {
    SPARE
        .try_with(|spare| {
            let empty = spare.0.get() == 0;
            if empty {
                spare.0.set(chunk);
            }
            empty
        })
        .unwrap_or(false)
}

pub fn frame_chunks_seen() -> Seen {
    SEEN.with(Cell::get)
}

fn slabs() -> MutexGuard<'static, Slabs> {
    SLABS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn context() -> *mut c_void {
    std::ptr::addr_of!(CONTEXT).cast_mut().cast()
}

extern "C" fn arena_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    let ours = if size == FRAME_CHUNK { take_spare().or_else(|| slabs().take(Kind::Frame)) } else { None };
    let chunk = match (ours, PREVIOUS.get()) {
        (Some(chunk), _) => chunk as *mut c_void,
        (None, Some(prev)) => (prev.alloc)(prev.ctx as *mut c_void, size),
        (None, None) => std::ptr::null_mut(),
    };
    if size == FRAME_CHUNK && !chunk.is_null() {
        SEEN.with(|seen| {
            let s = seen.get();
            seen.set(Seen { handed_out: s.handed_out + 1, last: chunk as usize, ..s });
        });
    }
    chunk
}

extern "C" fn arena_free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    if ptr.is_null() {
        return;
    }
    if size == FRAME_CHUNK {
        SEEN.with(|seen| {
            let s = seen.get();
            seen.set(Seen { freed: s.freed + 1, ..s });
        });
        if keep_spare(ptr as usize) {
            return;
        }
    }
    release(ptr, size);
}

/// Frees `ptr` (`size` bytes) for good: back to our slabs if it lies in one, else to the allocator that made it.
fn release(ptr: *mut c_void, size: usize) {
    if slabs().give_back(ptr as usize, size) {
        return;
    }
    if let Some(prev) = PREVIOUS.get() {
        (prev.free)(prev.ctx as *mut c_void, ptr, size);
    }
}

/// Installs our allocator once per process, wrapping the current one. False if the current allocator cannot be
/// wrapped. The caller holds the GIL.
pub fn install() -> bool {
    if PREVIOUS.get().is_none() {
        let mut current = PyObjectArenaAllocator::default();
        // SAFETY: fills in a valid struct; the caller holds the GIL, as the arena API requires.
        unsafe { PyObject_GetArenaAllocator(&mut current) };
        let (Some(alloc), Some(free)) = (current.alloc, current.free) else { return false };
        if PREVIOUS.set(Previous { ctx: current.ctx as usize, alloc, free }).is_err() {
            return false;
        }
        let mut ours = PyObjectArenaAllocator { ctx: context(), alloc: Some(arena_alloc), free: Some(arena_free) };
        // SAFETY: `ours` points to functions valid for the life of the process; CPython copies the struct. Memory
        // handed out before this call is still freed correctly: it is not in our slabs, so it goes back to the
        // previous allocator.
        unsafe { PyObject_SetArenaAllocator(&mut ours) };
    }
    installed()
}

/// Whether our allocator is the one installed now (nobody replaced or restored another since).
pub fn installed() -> bool {
    let mut current = PyObjectArenaAllocator::default();
    // SAFETY: fills in a valid struct from CPython's global; the caller holds the GIL.
    unsafe { PyObject_GetArenaAllocator(&mut current) };
    current.ctx == context() && current.free.map(|f| f as *const ()) == Some(arena_free as *const ())
}

/// A small root chunk from our slabs (not page-aligned: see `slabs`), or None.
pub fn take_small_chunk() -> Option<usize> {
    slabs().take(Kind::Small)
}

/// After a burst: what to give back (taken out of the slabs' books under the lock), or None if nothing is due.
pub fn plan_trim() -> Option<Release> {
    let mut slabs = slabs();
    if !slabs.trim_due() {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    Some(slabs.plan_trim(page))
}
