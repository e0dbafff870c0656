//! Small frame stacks for greenlets.
//!
//! CPython 3.11+ keeps Python frames on a per-thread stack of chunks (`PyThreadState.datastack_*`); greenlet
//! saves and restores those fields per greenlet and starts every greenlet with none, so the first frame a greenlet
//! pushes makes CPython allocate a 16 KiB chunk, of which a parked greenlet typically uses a few hundred bytes but
//! touches a whole 4 KiB page. A Greenlet, started through `run_current_greenlet`, gets a 1 KiB root chunk from
//! our slabs instead, before its first frame: a shallow greenlet lives in it, and a deeper one makes CPython chain
//! a normal chunk after it, as it would after any full chunk. greenlet frees the chain through the arena allocator
//! when the greenlet ends, which hands our chunk back to `arena`.
//!
//! The fields are private to CPython, so their offsets are learnt, not assumed. The probe, on a fresh greenlet,
//! calls a generator function from C with tracing and the garbage collector paused: CPython pushes its frame (which
//! takes a new chunk from the arena allocator) and pops it at the generator's first instruction, so no bytecode
//! runs that checks for signals, and no tracer, profiler or finalizer runs. We then look in the thread state for
//! the exact triple CPython must have stored for that chunk (chunk, its second data slot, chunk + size).
//! - A new chunk was handed out and the triple found: small stacks from then on.
//! - No new chunk, or one that was freed again: the stack was not fresh (say a `greenlet.settrace` function ran
//!   Python code in the new greenlet first). Tried again at the next Greenlet's start.
//! - A new root chunk, but no triple: the layout is not what we know. Never tried again; CPython's chunks as before.

use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{arena, FRAME_CHUNK, SMALL_CHUNK};

const WORD: usize = std::mem::size_of::<usize>();
/// `_PyStackChunk`'s header: previous, size, top; `data[]` follows.
const CHUNK_HEADER: usize = 3 * WORD;

/// Offset of `datastack_chunk` in `PyThreadState` (`datastack_top` and `datastack_limit` follow it), or None when
/// small stacks are off. Unset until learnt.
static LAYOUT: OnceLock<Option<usize>> = OnceLock::new();
/// The generator function the probe calls, and how far into the thread state it may look.
static PROBE: OnceLock<(Py<PyAny>, usize, Quiet)> = OnceLock::new();

/// The C API that pauses tracing and the garbage collector (3.10/3.11+), found at run time so that ferrovent still
/// loads on interpreters without it.
struct Quiet {
    enter_tracing: unsafe extern "C" fn(*mut ffi::PyThreadState),
    leave_tracing: unsafe extern "C" fn(*mut ffi::PyThreadState),
    gc_disable: unsafe extern "C" fn() -> c_int,
    gc_enable: unsafe extern "C" fn() -> c_int,
}

fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the symbols the interpreter exports.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!found.is_null()).then_some(found)
}

impl Quiet {
    fn find() -> Option<Self> {
        let [enter, leave, disable, enable] =
            [c"PyThreadState_EnterTracing", c"PyThreadState_LeaveTracing", c"PyGC_Disable", c"PyGC_Enable"].map(symbol);
        // SAFETY: these are the C API functions of those names, with the signatures of CPython's headers.
        unsafe {
            Some(Self {
                enter_tracing: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut ffi::PyThreadState)>(
                    enter?,
                ),
                leave_tracing: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut ffi::PyThreadState)>(
                    leave?,
                ),
                gc_disable: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(disable?),
                gc_enable: std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> c_int>(enable?),
            })
        }
    }

    /// Runs `f` with this thread's tracing and profiling and the garbage collector paused.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        // SAFETY: the GIL is held (our callers'); the thread state is this thread's; each pause is undone below.
        unsafe {
            let tstate = ffi::PyThreadState_Get();
            let collecting = (self.gc_disable)();
            (self.enter_tracing)(tstate);
            let result = f();
            (self.leave_tracing)(tstate);
            if collecting == 1 {
                (self.gc_enable)();
            }
            result
        }
    }
}

/// How far into the thread state the probe may look: `sizeof(PyThreadState)` on 64-bit CPython 3.11 (360), and
/// on 3.12 (288; 3.13's is larger). The fields sit at 296 and 232.
fn probe_limit(minor: u8) -> usize {
    if minor == 11 {
        360
    } else {
        288
    }
}

/// Prepares the probe, or switches small stacks off for good. Module init, with the GIL held.
pub fn init(py: Python<'_>, enabled: bool) {
    let prepared = enabled && prepare_probe(py).is_ok();
    if !prepared {
        let _ = LAYOUT.set(None);
    }
}

fn prepare_probe(py: Python<'_>) -> PyResult<()> {
    let quiet = Quiet::find().ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no tracing pause"))?;
    // Compiled, not run: the generator function is made from its code object.
    let source = "def probe():\n    yield\n";
    let module_code = py.import("builtins")?.getattr("compile")?.call1((source, "<ferrovent probe>", "exec"))?;
    let code_type = py.import("types")?.getattr("CodeType")?;
    let code = module_code
        .getattr("co_consts")?
        .try_iter()?
        .find(|c| c.as_ref().is_ok_and(|c| c.is_instance(&code_type).unwrap_or(false)))
        .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no probe code"))??;
    let function = py.import("types")?.getattr("FunctionType")?.call1((code, PyDict::new(py)))?;
    let _ = PROBE.set((function.unbind(), probe_limit(py.version_info().minor), quiet));
    Ok(())
}

/// Called first thing in a greenlet's run, with the GIL held, before the greenlet has pushed a Python frame.
#[inline(never)]
pub fn give_current_greenlet_a_small_stack() {
    match LAYOUT.get() {
        Some(Some(offset)) => install(*offset),
        Some(None) => {}
        None => learn_layout(),
    }
}

/// Whether greenlets get small frame stacks: None until the first Greenlet that could be probed has started.
#[pyfunction]
pub fn small_frame_stacks() -> Option<bool> {
    LAYOUT.get().map(Option::is_some)
}

/// The three datastack fields at `offset` in the current thread state.
fn fields(offset: usize) -> *mut [usize; 3] {
    // SAFETY: PyThreadState_Get returns the current thread's state (the GIL is held); `offset` was found inside it,
    // with the two fields after it, by `probe`.
    unsafe { ffi::PyThreadState_Get().cast::<u8>().add(offset).cast::<[usize; 3]>() }
}

fn install(offset: usize) {
    // Our free must be the one installed: greenlet frees the chunk through whatever allocator is current.
    if !arena::installed() {
        return;
    }
    let fields = fields(offset);
    // SAFETY: `fields` points at the thread state's three datastack words (see `fields`), valid while we hold the GIL.
    if unsafe { *fields } != [0, 0, 0] {
        return; // not a fresh greenlet: frames are already on its stack
    }
    let Some(chunk) = arena::take_small_chunk() else { return };
    // SAFETY: `chunk` is SMALL_CHUNK writable bytes of our slabs. It becomes a root chunk as CPython makes them: no
    // previous, its size, top unused until a chunk is chained after it; the first data slot is skipped so CPython
    // never pops a root chunk. greenlet frees it through the arena allocator with its size, which is `arena_free`.
    unsafe {
        let header = chunk as *mut usize;
        header.write(0);
        header.add(1).write(SMALL_CHUNK);
        header.add(2).write(0);
        *fields = [chunk, chunk + CHUNK_HEADER + WORD, chunk + SMALL_CHUNK];
    }
}

#[cold]
#[inline(never)]
fn learn_layout() {
    // SAFETY: our only caller runs with the GIL held.
    let py = unsafe { Python::assume_attached() };
    match probe(py) {
        Probe::Found(offset) => drop(LAYOUT.set(Some(offset))),
        Probe::NotFresh => {}
        Probe::NotFound => drop(LAYOUT.set(None)),
    }
}

enum Probe {
    Found(usize),
    NotFresh,
    NotFound,
}

/// Makes CPython start this greenlet's frame stack, without running bytecode, and finds where it recorded it.
fn probe(py: Python<'_>) -> Probe {
    let Some((function, limit, quiet)) = PROBE.get() else { return Probe::NotFound };
    if !arena::installed() {
        return Probe::NotFresh; // the chunk would not pass through us: ask again when it does
    }
    let before = arena::frame_chunks_seen();
    let called = quiet.run(|| {
        // SAFETY: `function` is a generator function taking no arguments; calling it returns a new generator (its
        // frame already popped) or NULL with an exception set. Dropping the unstarted generator runs no bytecode
        // that can switch, and tracing is paused around it.
        unsafe {
            let generator = ffi::PyObject_CallNoArgs(function.as_ptr());
            if generator.is_null() {
                return false;
            }
            ffi::Py_DECREF(generator);
            true
        }
    });
    if !called {
        drop(PyErr::take(py)); // e.g. MemoryError: try again later, leave nothing pending
        return Probe::NotFresh;
    }
    let after = arena::frame_chunks_seen();
    if after.handed_out != before.handed_out + 1 || after.freed != before.freed {
        return Probe::NotFresh;
    }
    let chunk = after.last;
    let expected = [chunk, chunk + CHUNK_HEADER + WORD, chunk + FRAME_CHUNK];
    let found = (0..=limit - 3 * WORD).step_by(WORD).find(|&offset| {
        // SAFETY: three words starting at `offset` lie within the first `limit` bytes of the thread state, which
        // is at least that large; `fields` points there.
        unsafe { *fields(offset) == expected }
    });
    found.map_or(Probe::NotFound, Probe::Found)
}
