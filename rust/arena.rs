//! A cache for the 16 KiB chunks CPython allocates for each greenlet's frame stack.
//! (It also takes back the small root chunks `frame_stack` makes, which greenlet frees through it.)
//!
//! Every greenlet that runs Python code gets a fresh frame-stack chunk from CPython's arena allocator, which maps
//! and unmaps it with a syscall each: that pair costs more than the rest of a short greenlet's life. This wraps the
//! arena allocator: chunks of exactly that size are carved from larger slabs and recycled through a free list, and
//! every other size goes to the allocator that was installed before. A burst of greenlets can leave many idle
//! chunks behind; the loop calls `trim` before it blocks, which unmaps idle chunks beyond a small reserve, so the
//! syscalls happen while the loop has nothing better to do.

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::frame_stack::SMALL_CHUNK;
use pyo3::ffi::{PyObjectArenaAllocator, PyObject_GetArenaAllocator, PyObject_SetArenaAllocator};

/// CPython's frame-stack chunk size (`DATA_STACK_CHUNK_SIZE`).
pub const FRAME_CHUNK: usize = 16 * 1024;
/// Chunks mapped together when the free list runs dry; untouched pages cost no memory.
const CHUNKS_PER_SLAB: usize = 64;
/// Idle chunks kept by `trim` for the next burst.
const RESERVE: usize = 256;
/// Idle chunks `trim` unmaps per call, so one trim never holds up the loop for long.
const TRIM_BATCH: usize = 4096;

/// The allocator that was installed before ours, as plain values so it can live in a static.
struct Previous {
    ctx: usize,
    alloc: extern "C" fn(*mut c_void, usize) -> *mut c_void,
    free: extern "C" fn(*mut c_void, *mut c_void, usize),
}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static IDLE_CHUNKS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// How many frame chunks were handed out, and the latest: what `frame_stack` learns the thread state's layout from.
static HANDED_OUT: AtomicUsize = AtomicUsize::new(0);
static LAST_HANDED_OUT: AtomicUsize = AtomicUsize::new(0);

pub fn frame_chunks_handed_out() -> usize {
    HANDED_OUT.load(Ordering::Relaxed)
}

pub fn last_frame_chunk() -> usize {
    LAST_HANDED_OUT.load(Ordering::Relaxed)
}

/// Maps a slab of chunks; returns the first and puts the rest on the free list.
fn map_slab(idle: &mut Vec<usize>) -> *mut c_void {
    let size = FRAME_CHUNK * CHUNKS_PER_SLAB;
    // SAFETY: an anonymous private mapping with no address hint; the result is checked for MAP_FAILED.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let base = base as usize;
    idle.extend((1..CHUNKS_PER_SLAB).rev().map(|i| base + i * FRAME_CHUNK));
    base as *mut c_void
}

/// Returns an idle chunk to the system. On POSIX, CPython's own arena allocator maps each chunk with mmap and frees it
/// with munmap, so this is also right for chunks it made before this allocator was installed.
fn unmap_chunk(chunk: usize) {
    // SAFETY: `chunk` is a page-aligned FRAME_CHUNK-sized mapped range (part of one of our slabs, or mapped by
    // CPython's allocator) that nobody uses any more; unmapping part of a mapping is allowed.
    unsafe { libc::munmap(chunk as *mut c_void, FRAME_CHUNK) };
}

extern "C" fn cached_alloc(_ctx: *mut c_void, size: usize) -> *mut c_void {
    if size == FRAME_CHUNK {
        let mut idle = IDLE_CHUNKS.lock().unwrap_or_else(PoisonError::into_inner);
        let chunk = match idle.pop() {
            Some(chunk) => chunk as *mut c_void,
            None => map_slab(&mut idle),
        };
        LAST_HANDED_OUT.store(chunk as usize, Ordering::Relaxed);
        HANDED_OUT.fetch_add(1, Ordering::Relaxed);
        return chunk;
    }
    match PREVIOUS.get() {
        Some(prev) => (prev.alloc)(prev.ctx as *mut c_void, size),
        None => std::ptr::null_mut(),
    }
}

extern "C" fn cached_free(_ctx: *mut c_void, ptr: *mut c_void, size: usize) {
    if size == FRAME_CHUNK && !ptr.is_null() {
        IDLE_CHUNKS.lock().unwrap_or_else(PoisonError::into_inner).push(ptr as usize);
        return;
    }
    if size == SMALL_CHUNK {
        // SAFETY: only `frame_stack` makes chunks of this size (no CPython arena or chunk is so small), from malloc.
        unsafe { libc::free(ptr) };
        return;
    }
    if let Some(prev) = PREVIOUS.get() {
        (prev.free)(prev.ctx as *mut c_void, ptr, size);
    }
}

/// Unmaps idle chunks beyond the reserve (at most a batch per call). Cheap when there is nothing to trim.
pub fn trim() {
    let excess: Vec<usize> = {
        let mut idle = IDLE_CHUNKS.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() <= RESERVE {
            return;
        }
        let keep = RESERVE.max(idle.len().saturating_sub(TRIM_BATCH));
        idle.split_off(keep)
    };
    excess.into_iter().for_each(unmap_chunk);
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
    // and cached chunks (ours or CPython's) are only ever reused for requests of their exact size, or unmapped.
    unsafe { PyObject_SetArenaAllocator(&mut ours) };
}
