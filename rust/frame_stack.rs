//! Small frame stacks for greenlets.
//!
//! CPython 3.11+ keeps Python frames on a per-thread stack of chunks (`PyThreadState.datastack_*`); greenlet
//! saves and restores those fields per greenlet and starts every greenlet with none, so the first frame a greenlet
//! pushes makes CPython allocate a 16 KiB chunk, of which a parked greenlet typically uses a few hundred bytes but
//! touches a whole 4 KiB page. A Greenlet, started through `run_current_greenlet`, gets a 1 KiB root chunk from
//! malloc instead, before its first frame: a shallow greenlet lives in it, and a deeper one makes CPython chain a
//! normal chunk after it, as it would after any full chunk. greenlet frees the chain through the arena allocator
//! when the greenlet ends (`arena` hands chunks of `SMALL_CHUNK` bytes back to `free`).
//!
//! The fields are private to CPython, so their offsets are learnt, not assumed: the first time, a fresh greenlet
//! runs one trivial frame and we look in the thread state for the exact triple CPython must have stored for
//! the chunk the arena allocator just handed out (chunk, its second data slot, chunk + size). Found: small stacks
//! from then on. Not found: never tried again, and greenlets get CPython's chunks as before.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::arena;

/// Bytes in a small root chunk.
pub const SMALL_CHUNK: usize = 1024;
const WORD: usize = std::mem::size_of::<usize>();
/// `_PyStackChunk`'s header: previous, size, top; `data[]` follows.
const CHUNK_HEADER: usize = 3 * WORD;

/// How far into the thread state the probe may look: `sizeof(PyThreadState)` on 64-bit CPython 3.11 (360), and
/// on 3.12 (288; 3.13's is larger), which later versions are assumed not to undercut. The fields sit at 296 and 232.
fn probe_limit(version: (u8, u8)) -> usize {
    if version == (3, 11) {
        360
    } else {
        288
    }
}

/// Offset of `datastack_chunk` in `PyThreadState`; `datastack_top` and `datastack_limit` follow it.
static CHUNK_FIELD: OnceLock<Option<usize>> = OnceLock::new();

/// Called first thing in a greenlet's run, with the GIL held, before the greenlet has pushed a Python frame.
#[inline(never)]
pub fn give_current_greenlet_a_small_stack() {
    match CHUNK_FIELD.get() {
        Some(Some(offset)) => install(*offset),
        Some(None) => {}
        None => learn_layout(),
    }
}

#[cold]
#[inline(never)]
fn learn_layout() {
    // SAFETY: our only caller runs with the GIL held.
    let py = unsafe { Python::assume_attached() };
    let version = py.version_info();
    let measured = version >= (3, 11) && cfg!(target_pointer_width = "64"); // the sizes above are 64-bit ones
    let found = if measured { probe(py, probe_limit((version.major, version.minor))) } else { None };
    let _ = CHUNK_FIELD.set(found);
}

/// Whether greenlets get small frame stacks: known once the first Greenlet has run.
#[pyfunction]
pub fn small_frame_stacks() -> Option<bool> {
    CHUNK_FIELD.get().map(Option::is_some)
}

/// Reads the three datastack fields at `offset` in the current thread state.
fn fields(offset: usize) -> *mut [usize; 3] {
    // SAFETY: PyThreadState_Get returns the current thread's state (the GIL is held); `offset` was found inside it,
    // with the two fields after it, by `probe`.
    unsafe { ffi::PyThreadState_Get().cast::<u8>().add(offset).cast::<[usize; 3]>() }
}

fn install(offset: usize) {
    let fields = fields(offset);
    // SAFETY: `fields` points at the thread state's three datastack words (see `fields`), valid while we hold the GIL.
    if unsafe { *fields } != [0, 0, 0] {
        return; // not a fresh greenlet: frames are already on its stack
    }
    // SAFETY: malloc of a fixed size; checked for NULL below.
    let chunk = unsafe { libc::malloc(SMALL_CHUNK) }.cast::<usize>();
    if chunk.is_null() {
        return;
    }
    // SAFETY: `chunk` is SMALL_CHUNK writable bytes. It becomes a root chunk as CPython makes them: no previous,
    // its size, top unused until a chunk is chained after it; the first data slot is skipped so CPython never pops
    // a root chunk. greenlet frees it through the arena allocator with its size, which sends it back to `free`.
    unsafe {
        chunk.write(0);
        chunk.add(1).write(SMALL_CHUNK);
        chunk.add(2).write(0);
        let base = chunk as usize;
        *fields = [base, base + CHUNK_HEADER + WORD, base + SMALL_CHUNK];
    }
}

/// Runs one trivial frame on this fresh greenlet's empty stack and finds where CPython recorded its chunk.
fn probe(py: Python<'_>, limit: usize) -> Option<usize> {
    let before = arena::frame_chunks_handed_out();
    py.run(c"pass", None, None).ok()?;
    if arena::frame_chunks_handed_out() != before + 1 {
        return None; // that frame did not start a new chunk: the stack was not fresh, or chunks are not ours
    }
    let chunk = arena::last_frame_chunk();
    let expected = [chunk, chunk + CHUNK_HEADER + WORD, chunk + arena::FRAME_CHUNK];
    (0..=limit - 3 * WORD).step_by(WORD).find(|&offset| {
        // SAFETY: three words starting at `offset` lie within the first `limit` bytes of the thread state, which
        // is at least that large; `fields` points there.
        unsafe { *fields(offset) == expected }
    })
}
