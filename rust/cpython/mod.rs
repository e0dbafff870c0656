//! The CPython-internals tricks: the frame-chunk cache (`arena`) and small frame stacks (`frame_stack`), both on
//! memory from our own slabs (`slabs`), and the one place that decides whether they run at all.
//!
//! What the tricks rely on, and where it is checked:
//! 1. CPython 3.11-3.13 (64-bit, with a GIL) and greenlet 3: frames live on `PyThreadState.datastack_chunk/top/
//!    limit` (three adjacent words), in chunks headed {previous, size, top} whose root skips its first data slot;
//!    greenlet saves those fields per greenlet, starts a greenlet with all three zero, and frees a finished
//!    greenlet's chain with the arena allocator's free(ctx, chunk, chunk->size). Checked: the versions against
//!    the allow-list below at import (anything else runs on CPython's own chunks); the layout by the probe.
//! 2. CPython asks the arena allocator for frame-stack chunks of exactly `FRAME_CHUNK` bytes and frees them with
//!    that size. Checked: the probe only succeeds if the chunk it caused was of that size.
//! 3. Only memory we mapped is released by us, only once every chunk in it has been freed back to us; memory we
//!    did not map goes back to the allocator that was installed before ours (see `slabs`, `arena`).
//! 4. A small chunk is handed out only while our allocator is installed (checked at every handout), to a fresh
//!    greenlet (all three fields zero, checked), and is never page-aligned, so a foreign free that unmaps cannot
//!    unmap it (checked at compile time in `slabs`).
//! 5. The probe runs no bytecode a tracer, profiler, signal handler or finalizer can see (see `frame_stack`).
//! 6. What a trim gives back is taken off the slabs' books under their lock before the GIL is released to unmap
//!    it, so no other thread can hand it out meanwhile.
//!
//! Each trick has an environment switch, read once at import: `FERROVENT_ARENA_CACHE=0` and
//! `FERROVENT_SMALL_STACKS=0` (also `false`, `no`, `off`) turn it off. Small stacks need the cache, so the
//! cache's switch turns both off: a small root chunk puts a chunk boundary a few calls deep, and a call in a loop
//! across it would map and unmap a 16 KiB chunk every time without the cache. With the cache off, CPython's
//! allocator is left alone.

use std::time::Duration;

use pyo3::prelude::*;

pub mod arena;
pub mod frame_stack;
mod slabs;

/// CPython's frame-stack chunk size (`DATA_STACK_CHUNK_SIZE`).
pub const FRAME_CHUNK: usize = 16 * 1024;
/// Bytes in a small root chunk (not a size CPython ever asks the arena allocator for).
pub const SMALL_CHUNK: usize = 1008;
/// The shortest block worth spending on giving memory back: shorter waits are the loop at work, not idle.
const IDLE_ENOUGH: Duration = Duration::from_millis(20);

/// The CPython minor versions (3.x) the tricks were tested on.
const CPYTHON_MINORS: std::ops::RangeInclusive<u8> = 11..=13;
/// The greenlet major version whose frame-stack handling the tricks were tested with.
const GREENLET_MAJOR: &str = "3";

/// Whether an environment switch leaves its trick on (unset, or anything but 0/false/no/off).
fn switched_on(name: &str) -> bool {
    std::env::var(name)
        .map_or(true, |value| !matches!(value.trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

/// Whether this interpreter and greenlet are ones the tricks were tested on.
fn allowed(py: Python<'_>) -> PyResult<bool> {
    let version = py.version_info();
    let sys = py.import("sys")?;
    let cpython = sys.getattr("implementation")?.getattr("name")?.extract::<String>()? == "cpython";
    let gil = !sys.getattr("abiflags")?.extract::<String>()?.contains('t');
    let greenlet: String = py.import("greenlet")?.getattr("__version__")?.extract()?;
    Ok(cpython
        && gil
        && cfg!(target_pointer_width = "64")
        && version.major == 3
        && CPYTHON_MINORS.contains(&version.minor)
        && greenlet.split('.').next() == Some(GREENLET_MAJOR))
}

/// Module init: decides which tricks run and installs the allocator they need. The GIL is held.
pub fn init(py: Python<'_>) -> PyResult<()> {
    let allowed = allowed(py)?;
    let installed = allowed && switched_on("FERROVENT_ARENA_CACHE") && arena::install();
    frame_stack::init(py, installed && switched_on("FERROVENT_SMALL_STACKS"));
    Ok(())
}

/// Called when the loop is about to block for `timeout` (None: until I/O). After a burst of greenlets, lets the
/// loop shrink its own queues (`shrink_loop`), then gives back the idle chunks the burst left (beyond a small
/// reserve) and asks malloc to return its free pages, with the GIL released. That takes about 0.2 s per GiB given
/// back, once per burst; it stays on the loop's thread, since a ferrovent process runs one OS thread per hub.
pub fn trim_idle(py: Python<'_>, timeout: Option<Duration>, shrink_loop: impl FnOnce()) {
    if timeout.is_some_and(|t| t < IDLE_ENOUGH) {
        return;
    }
    let Some(release) = arena::plan_trim() else { return };
    shrink_loop();
    py.detach(move || {
        release.run();
        trim_malloc();
    });
}

/// Returns the free pages of malloc's heaps to the system: a burst of greenlets leaves many behind (their saved C
/// stacks), which glibc keeps unless asked.
fn trim_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases malloc's own free memory; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether CPython's 16 KiB frame-stack chunks are being recycled through ferrovent's cache right now.
#[pyfunction]
pub fn arena_cache() -> bool {
    arena::installed()
}
