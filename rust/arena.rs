//! A cache for the 16 KiB chunks CPython allocates for each greenlet's frame stack.
//!
//! Every greenlet that runs Python code gets a fresh frame-stack chunk from CPython's arena allocator, which maps
//! and unmaps it with a syscall each: that pair costs more than the rest of a greenlet's life. This wraps the arena
//! allocator so chunks of exactly that size are kept in a small free list and reused; every other size goes to
//! the allocator that was installed before.

use std::ffi::c_void;
use std::sync::{Mutex, OnceLock, PoisonError};

use pyo3::ffi::{PyObjectArenaAllocator, PyObject_GetArenaAllocator, PyObject_SetArenaAllocator};

/// CPython's frame-stack chunk size (`DATA_STACK_CHUNK_SIZE`).
const FRAME_CHUNK: usize = 16 * 1024;
/// At most this many idle chunks are kept (a few MiB at worst); the rest are returned.
const CACHE_LIMIT: usize = 256;

/// The allocator that was installed before ours, as addresses so it can live in a static.
struct Previous {
    ctx: usize,
    alloc: extern "C" fn(*mut c_void, usize) -> *mut c_void,
    free: extern "C" fn(*mut c_void, *mut c_void, usize),
}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static IDLE_CHUNKS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

extern "C" fn cached_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    if size == FRAME_CHUNK {
        if let Some(chunk) = IDLE_CHUNKS.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return chunk as *mut c_void;
        }
    }
    match PREVIOUS.get() {
        Some(prev) => (prev.alloc)(prev.ctx as *mut c_void, size),
        None => std::ptr::null_mut(),
    }
}

extern "C" fn cached_free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    if size == FRAME_CHUNK && !ptr.is_null() {
        let mut idle = IDLE_CHUNKS.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < CACHE_LIMIT {
            idle.push(ptr as usize);
            return;
        }
    }
    if let Some(prev) = PREVIOUS.get() {
        (prev.free)(prev.ctx as *mut c_void, ptr, size);
    }
}

/// Installs the caching allocator once per process.
pub fn install() {
    if PREVIOUS.get().is_some() {
        return;
    }
    let mut current = PyObjectArenaAllocator::default();
    // SAFETY: fills in a valid struct; the caller holds the GIL (module init), as the arena API requires.
    unsafe { PyObject_GetArenaAllocator(&mut current) };
    let (Some(alloc), Some(free)) = (current.alloc, current.free) else { return };
    if PREVIOUS.set(Previous { ctx: current.ctx as usize, alloc, free }).is_err() {
        return;
    }
    let mut ours =
        PyObjectArenaAllocator { ctx: std::ptr::null_mut(), alloc: Some(cached_alloc), free: Some(cached_free) };
    // SAFETY: `ours` points to functions valid for the life of the process; CPython copies the struct. Memory
    // handed out before this call is still freed correctly: sizes we do not cache go back to the previous allocator,
    // and cached chunks are only ever reused for requests of their exact size.
    unsafe { PyObject_SetArenaAllocator(&mut ours) };
}
