//! `ferrovent._core.AioLoop`: the hot paths of the asyncio loop (python/ferrovent/asyncio/_loop.py) without a
//! Python frame each: the making of a callback's `asyncio.Handle` in `call_soon`, and one iteration of the loop
//! (`run_once`: timers, select, the ready queue's handles run).
//!
//! What stays asyncio's own: the handles are `asyncio.Handle` / `TimerHandle` instances with their usual slots
//! (those `call_soon` makes, of a subclass that the collector traverses faster: rust/aio_handle_type.rs), the
//! ready queue is the loop's `_ready` deque, and the timer heap is the loop's `_scheduled` list (a `heapq` heap),
//! so asyncio's own code and anything that looks at them sees what it expects; the selector's `select` and the
//! loop's `_process_events` are called as asyncio calls them. What this file does is what `Handle.__init__`,
//! `Handle._run` and `BaseEventLoop._run_once` do, in the same order, for the plain (non-debug) case: a copy of the
//! current context when none is given; cancelled timers dropped by asyncio's rule; a select timeout of zero when
//! callbacks are ready, else up to the next timer; timers due within the clock's resolution queued; the ready
//! callbacks run in their contexts, an exception (other than SystemExit and KeyboardInterrupt) handed to the loop's
//! exception handler through a Python reporter. Debug mode, a closed loop, and handles of other classes go through
//! asyncio's own Python code. Where the loop's class keeps asyncio's `_process_events` and `_add_callback` and its
//! selector is the `HubSelector`, the events a select found are dispatched here too (`queue_ready_fds`), and the
//! select is the selector's Rust one (`select_ready`), without the Python `select` around it or the pairs it makes.
//!
//! The handles' slots are read and written in place, at the offsets their member descriptors give (a CPython
//! internal: `PyMemberDescrObject`'s layout, checked at construction; the Python side makes an `AioLoop` only on
//! the Python versions it lists, and not at all with `FERROVENT_ASYNCIO_FAST=0`).

use std::ffi::CStr;
use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::aio_selector::{AioSelector, ReadyFd};
use crate::aio_transport::AioReadReady;
use crate::poll_bits;
use crate::slots::{fill_slot, read_slot, slot_offset};
use crate::type_version::KeptVerdict;
use crate::vectorcall::{self, Arguments, Object};

/// What `AioLoop` knows of one of the loop's flags (`_debug`, `_closed`), as the loop's property setter last told
/// it (python/ferrovent/asyncio/_loop.py): False, True, or neither (some other value, none yet, or a loop whose
/// class does not keep those properties), when the attribute is read.
const FLAG_FALSE: u8 = 0;
const FLAG_TRUE: u8 = 1;
const FLAG_READ: u8 = 2;

/// The `FLAG_*` for a value stored in a flag.
fn flag_of(value: &Bound<'_, PyAny>) -> u8 {
    let py = value.py();
    if value.is(pyo3::types::PyBool::new(py, true).as_any()) {
        FLAG_TRUE
    } else if value.is(pyo3::types::PyBool::new(py, false).as_any()) {
        FLAG_FALSE
    } else {
        FLAG_READ
    }
}

/// The byte offsets of `asyncio.Handle`'s slots in its instances (and in `TimerHandle`'s, which extends it).
struct HandleLayout {
    context: isize,
    aio_loop: isize,
    callback: isize,
    args: isize,
    cancelled: isize,
    repr: isize,
    source_traceback: isize,
}

impl HandleLayout {
    /// The layout of `handle_type`'s slots, or an error if one of them is not a plain writable object slot.
    fn of(handle_type: &Bound<'_, PyType>) -> PyResult<Self> {
        Ok(Self {
            context: slot_offset(handle_type, "_context")?,
            aio_loop: slot_offset(handle_type, "_loop")?,
            callback: slot_offset(handle_type, "_callback")?,
            args: slot_offset(handle_type, "_args")?,
            cancelled: slot_offset(handle_type, "_cancelled")?,
            repr: slot_offset(handle_type, "_repr")?,
            source_traceback: slot_offset(handle_type, "_source_traceback")?,
        })
    }
}

const CALL_SOON_DOC: &CStr = c"call_soon($self, callback, *args, context=None)\n--\n\nasyncio's `call_soon`: \
queues `callback(*args)` to run in `context` (None: a copy of the current one) and returns its `asyncio.Handle`.";

/// PyO3's `call_soon`, for the call shapes the vectorcall entry does not take.
static GENERAL_CALL_SOON: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Adds `AioLoop`, with `call_soon` as a plain vectorcall method (rust/vectorcall.rs) that takes the shapes asyncio
/// uses, `call_soon(callback, *args)` and `call_soon(callback, *args, context=...)` (every Task step, every future
/// callback), without PyO3's trampoline and keyword parsing. Every other shape goes to PyO3's method.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<AioLoop>()?;
    vectorcall::install_method::<FastCallSoon>(&py.get_type::<AioLoop>(), c"call_soon", CALL_SOON_DOC)
}

/// The first keyword-names tuple `("context",)` a call passed, kept (so its address is not reused) to recognise
/// by identity the calls that pass the same tuple again: every Task step (asyncio's C tasks keep one).
static CONTEXT_KWNAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();

/// `call_soon(callback, *args)`, with or without `context=`, taken by its vectorcall entry.
struct FastCallSoon;

impl vectorcall::FastCall for FastCallSoon {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &GENERAL_CALL_SOON;

    unsafe fn fast(py: Python<'_>, slf: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        // SAFETY: per the trait's contract.
        unsafe { call_soon_here(py, slf, args, nargs, None) }
    }

    unsafe fn fast_with_keywords(
        py: Python<'_>,
        slf: Object,
        args: Arguments,
        nargs: ffi::Py_ssize_t,
        kwnames: Object,
    ) -> Option<Object> {
        // SAFETY: per the trait's contract, `kwnames` is a tuple of str whose values follow the positionals.
        unsafe {
            // Read only once `kwnames` is known to name one value.
            let context = || *args.add(usize::try_from(nargs).unwrap_or(0));
            if CONTEXT_KWNAMES.get(py).is_some_and(|known| known.as_ptr() == kwnames) {
                return call_soon_here(py, slf, args, nargs, Some(context()));
            }
            if ffi::PyTuple_GET_SIZE(kwnames) != 1 {
                return None;
            }
            let name = ffi::PyTuple_GET_ITEM(kwnames, 0);
            let expected = intern!(py, "context").as_ptr();
            if name != expected && ffi::PyUnicode_Compare(name, expected) != 0 {
                return None;
            }
            CONTEXT_KWNAMES.get_or_init(py, || Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked().unbind());
            call_soon_here(py, slf, args, nargs, Some(context()))
        }
    }
}

/// `call_soon(callback, *args, context=context)` on the AioLoop `slf`; None (passed on) without a callback.
///
/// # Safety
/// The GIL is held, `slf` is an AioLoop, `args` holds `nargs` borrowed positionals and `context`, if given, is a borrowed
/// reference.
unsafe fn call_soon_here(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    context: Option<*mut ffi::PyObject>,
) -> Option<*mut ffi::PyObject> {
    let nargs = usize::try_from(nargs).ok().filter(|&n| n >= 1)?;
    // SAFETY: per the contract.
    let (aio_loop, callback, rest, context) = unsafe {
        let positionals = std::slice::from_raw_parts(args, nargs);
        let rest = positionals[1..].iter().map(|&arg| Bound::from_borrowed_ptr(py, arg));
        (
            Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<AioLoop>(),
            Bound::from_borrowed_ptr(py, positionals[0]),
            rest,
            context.map(|value| Bound::from_borrowed_ptr(py, value)),
        )
    };
    // most calls pass the callback alone: the empty tuple without PyTuple::new's iteration
    let rest = if nargs == 1 { Ok(PyTuple::empty(py)) } else { PyTuple::new(py, rest) };
    let handle = rest.and_then(|rest| aio_loop.get().call_soon(py, callback, rest, context)).map(Bound::unbind);
    Some(vectorcall::into_result(py, handle))
}

/// See the module documentation.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct AioLoop {
    /// The asyncio loop.
    aio_loop: Py<PyAny>,
    /// Its `_debug` and `_closed` (see `FLAG_READ`), and whether its setters may keep them here.
    debug: AtomicU8,
    closed: AtomicU8,
    flags_kept: bool,
    /// The loop's ready deque's `append` and `popleft`, and the deque itself.
    ready: Py<PyAny>,
    append: Py<PyAny>,
    popleft: Py<PyAny>,
    /// Parked in `select` is where a `call_soon` from another greenlet finds the loop: it wakes it.
    selector: Py<AioSelector>,
    handle_type: Py<PyType>,
    timer_handle_type: Py<PyType>,
    /// The class of the handles `call_soon` makes: `handle_type`, or its subclass from rust/aio_handle_type.rs.
    made_type: Py<PyType>,
    layout: HandleLayout,
    /// asyncio's own `Handle.__init__` and `Handle._run`: if code has replaced one (to time callbacks, say), the
    /// handles are made, or run, by the replacement.
    handle_init: Py<PyAny>,
    handle_run: Py<PyAny>,
    /// Whether `made_type`'s `__init__` is `handle_init`, kept while the class is unchanged.
    init_kept: KeptVerdict,
    /// asyncio's own `call_soon` for this loop, for debug mode, a closed loop and a replaced `Handle.__init__`.
    slow_call_soon: Py<PyAny>,
    /// asyncio's own `_run_once` for this loop, for debug mode.
    slow_run_once: Py<PyAny>,
    /// `report(handle, exception)`: hands a callback's exception to the loop's exception handler.
    report: Py<PyAny>,
    heappop: Py<PyAny>,
    heapify: Py<PyAny>,
    /// `asyncio.futures`, whose `Future` `create_future` makes (looked up at each call, as asyncio does).
    futures: Py<PyModule>,
    /// `asyncio.tasks`, whose `Task` `create_task` makes (looked up at each call, as asyncio does).
    tasks: Py<PyModule>,
    /// asyncio's own `create_task` (`BaseEventLoop`'s, a function), for debug mode and a loop with a task factory.
    slow_create_task: Py<PyAny>,
    /// `asyncio.base_events`, whose `time.monotonic` `time` calls (looked up at each call, as asyncio does).
    base_events: Py<PyModule>,
    /// asyncio's constants (asyncio.base_events): the longest select, and when to rebuild the timer heap.
    max_select_timeout: f64,
    min_heap_to_rebuild: usize,
    min_cancelled_fraction: f64,
    /// Whether `run_once` may poll the selector and dispatch its events itself (see the module documentation).
    dispatches_events: bool,
    /// Whether the loop's state (`_debug`, `_closed`, `_stopping`, `_scheduled`...) may be read from its
    /// `__dict__`, where asyncio keeps it: its class keeps object's attribute lookup and defines none of them.
    state_in_dict: bool,
}

impl AioLoop {
    /// The loop's `__dict__` if its state may be read there (`state_in_dict`), else None.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        if !self.state_in_dict {
            return Ok(None);
        }
        // SAFETY: the loop is a live object whose class has a `__dict__` (checked in Python); a new reference to
        // it, or NULL with an exception set.
        let dict = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyObject_GenericGetDict(self.aio_loop.as_ptr(), std::ptr::null_mut()),
            )?
        };
        Ok(Some(dict.cast_into::<PyDict>()?))
    }

    /// The truth of the loop's flag `name`, kept in `flag`.
    fn flag(&self, py: Python<'_>, flag: &AtomicU8, name: &Bound<'_, PyString>) -> PyResult<bool> {
        match flag.load(Ordering::Relaxed) {
            FLAG_FALSE => Ok(false),
            FLAG_TRUE => Ok(true),
            _ => self.aio_loop.bind(py).getattr(name)?.is_truthy(),
        }
    }

    /// The loop's attribute `name`: a dict lookup in `state` (the loop's `__dict__`) where allowed and there, else
    /// an ordinary getattr (which raises asyncio's AttributeError if it is missing).
    fn attr<'py>(
        &self,
        aio_loop: &Bound<'py, PyAny>,
        state: Option<&Bound<'py, PyDict>>,
        name: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(value) = state.map(|dict| dict.get_item(name)).transpose()?.flatten() {
            return Ok(value);
        }
        aio_loop.getattr(name)
    }

    /// asyncio's rule: the heap is rebuilt without its cancelled timers when they are many and most of it, else
    /// the cancelled ones at its head are popped.
    fn drop_cancelled_timers(
        &self,
        py: Python<'_>,
        aio_loop: &Bound<'_, PyAny>,
        state: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let scheduled = self.attr(aio_loop, state, intern!(py, "_scheduled"))?.cast_into::<PyList>()?;
        let count = scheduled.len();
        if count == 0 {
            return Ok(());
        }
        let cancelled_name = intern!(py, "_timer_cancelled_count");
        let mut cancelled: i64 = self.attr(aio_loop, state, cancelled_name)?.extract()?;
        #[allow(clippy::cast_precision_loss)] // counts of timers, far below 2^52
        let fraction = cancelled as f64 / count as f64;
        if count > self.min_heap_to_rebuild && fraction > self.min_cancelled_fraction {
            let kept = PyList::empty(py);
            for timer in scheduled.iter() {
                if timer.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                    timer.setattr(intern!(py, "_scheduled"), false)?;
                } else {
                    kept.append(timer)?;
                }
            }
            self.heapify.bind(py).call1((&kept,))?;
            aio_loop.setattr(intern!(py, "_scheduled"), kept)?;
            return aio_loop.setattr(cancelled_name, 0);
        }
        let before = cancelled;
        while !scheduled.is_empty() && scheduled.get_item(0)?.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
            cancelled -= 1;
            self.heappop.bind(py).call1((&scheduled,))?.setattr(intern!(py, "_scheduled"), false)?;
        }
        if cancelled == before {
            return Ok(());
        }
        aio_loop.setattr(cancelled_name, cancelled)
    }

    /// The select timeout: zero if callbacks are ready or the loop is stopping, else up to the next timer (None:
    /// no timer).
    fn select_timeout(
        &self,
        py: Python<'_>,
        aio_loop: &Bound<'_, PyAny>,
        state: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Option<f64>> {
        if self.ready.bind(py).len()? > 0 || self.attr(aio_loop, state, intern!(py, "_stopping"))?.is_truthy()? {
            return Ok(Some(0.0));
        }
        let scheduled = self.attr(aio_loop, state, intern!(py, "_scheduled"))?;
        if scheduled.len()? == 0 {
            return Ok(None);
        }
        let when: f64 = scheduled.get_item(0)?.getattr(intern!(py, "_when"))?.extract()?;
        let now: f64 = aio_loop.call_method0(intern!(py, "time"))?.extract()?;
        Ok(Some((when - now).max(0.0).min(self.max_select_timeout)))
    }

    /// Moves the timers due now, or within the clock's resolution of now, to the ready queue.
    fn queue_due_timers(
        &self,
        py: Python<'_>,
        aio_loop: &Bound<'_, PyAny>,
        state: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let scheduled = self.attr(aio_loop, state, intern!(py, "_scheduled"))?;
        if scheduled.len()? == 0 {
            return Ok(());
        }
        let now: f64 = aio_loop.call_method0(intern!(py, "time"))?.extract()?;
        let resolution: f64 = self.attr(aio_loop, state, intern!(py, "_clock_resolution"))?.extract()?;
        let due_before = now + resolution;
        let append = self.append.bind(py);
        while scheduled.len()? > 0 {
            let when: f64 = scheduled.get_item(0)?.getattr(intern!(py, "_when"))?.extract()?;
            if when >= due_before {
                break;
            }
            let timer = self.heappop.bind(py).call1((&scheduled,))?;
            timer.setattr(intern!(py, "_scheduled"), false)?;
            append.call1((timer,))?;
        }
        Ok(())
    }

    /// What asyncio's `_process_events` does with a select's `(key, events)` pairs: for each ready direction of a
    /// key (read first), its handle (`key.data` is the `(reader, writer)` pair) is queued, or if it was cancelled
    /// the fd's reader or writer is removed.
    fn queue_ready_fds(&self, py: Python<'_>, aio_loop: &Bound<'_, PyAny>, ready: Vec<ReadyFd>) -> PyResult<()> {
        let append = self.append.bind(py);
        for ReadyFd { key, data, events: mask } in ready {
            let key = key.into_bound(py);
            let (reader, writer): (Bound<'_, PyAny>, Bound<'_, PyAny>) = data.extract(py)?;
            let directions = [
                (poll_bits::READ, reader, intern!(py, "_remove_reader")),
                (poll_bits::WRITE, writer, intern!(py, "_remove_writer")),
            ];
            for (bit, handle, remove) in directions {
                if mask & bit == 0 || handle.is_none() {
                    continue;
                }
                if self.is_cancelled(py, &handle)? {
                    aio_loop.call_method1(remove, (key.getattr(intern!(py, "fileobj"))?,))?;
                } else {
                    append.call1((handle,))?;
                }
            }
        }
        Ok(())
    }

    /// A new `asyncio.Handle` as `Handle.__init__` makes it outside debug mode.
    fn new_handle<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let handle_type = self.made_type.bind(py).as_type_ptr();
        // SAFETY: `handle_type` is a type object (asyncio.Handle, checked in Python before this object is made, or
        // its subclass of the same layout, checked in `new`), alive while `self` is. Its `tp_alloc` (what
        // PyType_GenericNew calls, without an argument tuple to make) returns a new instance with its slots empty,
        // or NULL with an exception set.
        let handle = unsafe {
            let alloc = (*handle_type).tp_alloc.unwrap_or(ffi::PyType_GenericAlloc);
            Bound::from_owned_ptr_or_err(py, alloc(handle_type, 0))?
        };
        let layout = &self.layout;
        let values = [
            (layout.context, context),
            (layout.aio_loop, self.aio_loop.bind(py).clone()),
            (layout.callback, callback),
            (layout.args, args.into_any()),
            (layout.cancelled, pyo3::types::PyBool::new(py, false).to_owned().into_any()),
            (layout.repr, py.None().into_bound(py)),
            (layout.source_traceback, py.None().into_bound(py)),
        ];
        for (offset, value) in values {
            // SAFETY: `handle` is a new asyncio.Handle whose slots are all empty, and `offset` one of its slots
            // (`HandleLayout::of`).
            unsafe { fill_slot(&handle, offset, value) };
        }
        Ok(handle)
    }

    /// Runs the handles in the ready queue now (not those they queue), skipping cancelled ones, as asyncio's
    /// `_run_once` does outside debug mode. SystemExit and KeyboardInterrupt from a callback go up, the handles
    /// after it staying queued.
    fn run_ready(&self, py: Python<'_>) -> PyResult<()> {
        let count = self.ready.bind(py).len()?;
        let popleft = self.popleft.bind(py);
        let run_replaced = self.replaced(py, intern!(py, "_run"), &self.handle_run)?;
        for _ in 0..count {
            let handle = popleft.call0()?;
            if self.is_cancelled(py, &handle)? {
                continue;
            }
            if run_replaced {
                handle.call_method0(intern!(py, "_run"))?;
            } else {
                self.run_handle(py, &handle)?;
            }
        }
        Ok(())
    }

    /// Whether the handles' method `name` is no longer `original`: looked up in the own namespaces of the class
    /// `call_soon` makes (if not asyncio.Handle itself: defined there, it is another) and of `asyncio.Handle`,
    /// where asyncio defines it and where assigning `Handle.name` (or deleting it) changes it.
    fn replaced(&self, py: Python<'_>, name: &Bound<'_, PyString>, original: &Py<PyAny>) -> PyResult<bool> {
        let namespace = |class: &Py<PyType>| {
            // SAFETY: `class` is asyncio.Handle (made by a class statement) or our subclass of it, heap types whose
            // `tp_dict` is their namespace dict, alive as long as the type, which `self` keeps.
            unsafe {
                Bound::from_borrowed_ptr(py, (*class.bind(py).as_type_ptr()).tp_dict).cast_into_unchecked::<PyDict>()
            }
        };
        if !self.made_type.is(&self.handle_type) && namespace(&self.made_type).contains(name)? {
            return Ok(true);
        }
        Ok(!namespace(&self.handle_type).get_item(name)?.is_some_and(|method| method.is(original)))
    }

    /// Whether the handles' `__init__` is still `handle_init` (see `replaced`), kept while the class made is
    /// unchanged.
    fn handle_init_kept(&self, py: Python<'_>) -> PyResult<bool> {
        let made_type = self.made_type.bind(py);
        self.init_kept.get(made_type, || Ok(!self.replaced(py, intern!(py, "__init__"), &self.handle_init)?))
    }

    fn is_plain_handle(&self, _py: Python<'_>, handle: &Bound<'_, PyAny>) -> bool {
        // SAFETY: reads the type pointer of a live object.
        let kind = unsafe { ffi::Py_TYPE(handle.as_ptr()) }.cast::<ffi::PyObject>();
        kind == self.made_type.as_ptr() || kind == self.handle_type.as_ptr() || kind == self.timer_handle_type.as_ptr()
    }

    fn is_cancelled(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<bool> {
        if self.is_plain_handle(py, handle) {
            // SAFETY: an asyncio.Handle or TimerHandle, and its slot.
            if let Some(cancelled) = unsafe { read_slot(handle, self.layout.cancelled) } {
                // SAFETY: the GIL is held; the singleton is only compared with.
                if cancelled.as_ptr() == unsafe { ffi::Py_False() } {
                    return Ok(false); // what `cancel` has not yet set: no truth test to call
                }
                return cancelled.is_truthy();
            }
        }
        handle.getattr(intern!(py, "_cancelled"))?.is_truthy()
    }

    /// Runs one handle taken from the ready queue, as `Handle._run` would.
    fn run_handle(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.is_plain_handle(py, handle) {
            return handle.call_method0(intern!(py, "_run")).map(drop);
        }
        // SAFETY: `handle` is an asyncio.Handle or TimerHandle (checked above) and these are its slots.
        let (context, callback, args) = unsafe {
            (
                read_slot(handle, self.layout.context),
                read_slot(handle, self.layout.callback),
                read_slot(handle, self.layout.args),
            )
        };
        let (Some(context), Some(callback), Some(args)) = (context, callback, args) else {
            return handle.call_method0(intern!(py, "_run")).map(drop); // raises the missing slot's AttributeError
        };
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
            return handle.call_method0(intern!(py, "_run")).map(drop);
        }
        let outcome = run_in_context(py, &context, &callback, &args);
        match outcome {
            Ok(()) => Ok(()),
            Err(err) if err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py) => {
                Err(err)
            }
            Err(err) => self.report.bind(py).call1((handle, err.into_value(py))).map(drop),
        }
    }
}

/// `context.run(callback, *args)`, without the method call.
fn run_in_context(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyAny>,
) -> PyResult<()> {
    // cast before entering: nothing may return between the enter and the exit
    let args = args.cast::<PyTuple>()?;
    // SAFETY: `context` is a live Context object (checked by the caller); entering fails with an exception set
    // if it is already entered.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = match callback.cast_exact::<AioReadReady>() {
        // a socket transport's reader (every readable event of a connection), without a Python call around it
        Ok(reader) if args.is_empty() => reader.get().read_ready(py),
        _ => {
            // SAFETY: `args` is a tuple, whose item array holds its `len` borrowed items while `args` lives (the
            // caller's reference); the call's result is a new reference or NULL with an exception set.
            unsafe {
                let items = (*args.as_ptr().cast::<ffi::PyTupleObject>()).ob_item.as_ptr();
                Bound::from_owned_ptr_or_err(
                    py,
                    ffi::PyObject_Vectorcall(callback.as_ptr(), items, args.len(), std::ptr::null_mut()),
                )
                .map(drop)
            }
        }
    };
    // SAFETY: the context entered above, current again whatever greenlets ran during the call (greenlet keeps
    // each greenlet's context); no exception is set here (PyO3 holds the call's error, if any, in `result`).
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    result
}

#[pymethods]
impl AioLoop {
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        aio_loop: Bound<'_, PyAny>,
        ready: Bound<'_, PyAny>,
        selector: Py<AioSelector>,
        handle_type: Py<PyType>,
        timer_handle_type: Py<PyType>,
        made_type: Py<PyType>,
        handle_init: Py<PyAny>,
        handle_run: Py<PyAny>,
        slow_call_soon: Py<PyAny>,
        slow_run_once: Py<PyAny>,
        report: Py<PyAny>,
        dispatches_events: bool,
        state_in_dict: bool,
        flags_kept: bool,
    ) -> PyResult<Self> {
        let py = aio_loop.py();
        let initial = |name: &str| {
            let value = if flags_kept { aio_loop.getattr(name).ok() } else { None };
            AtomicU8::new(value.map_or(FLAG_READ, |value| flag_of(&value)))
        };
        let heapq = py.import("heapq")?;
        let constants = py.import("asyncio.base_events")?;
        if timer_handle_type.bind(py).getattr(intern!(py, "__dict__"))?.contains("_run")? {
            return Err(pyo3::exceptions::PyTypeError::new_err("TimerHandle has a _run of its own"));
        }
        let made = made_type.bind(py);
        if !made.is(&handle_type) && !crate::aio_handle_type::is_handle_class(made, handle_type.bind(py)) {
            return Err(pyo3::exceptions::PyTypeError::new_err("handles of an unknown class"));
        }
        Ok(Self {
            layout: HandleLayout::of(handle_type.bind(py))?,
            handle_init,
            handle_run,
            init_kept: KeptVerdict::new(),
            heappop: heapq.getattr("heappop")?.unbind(),
            heapify: heapq.getattr("heapify")?.unbind(),
            futures: py.import("asyncio.futures")?.unbind(),
            tasks: py.import("asyncio.tasks")?.unbind(),
            slow_create_task: constants.getattr("BaseEventLoop")?.getattr("create_task")?.unbind(),
            base_events: constants.clone().unbind(),
            max_select_timeout: constants.getattr("MAXIMUM_SELECT_TIMEOUT")?.extract()?,
            min_heap_to_rebuild: constants.getattr("_MIN_SCHEDULED_TIMER_HANDLES")?.extract()?,
            min_cancelled_fraction: constants.getattr("_MIN_CANCELLED_TIMER_HANDLES_FRACTION")?.extract()?,
            append: ready.getattr(intern!(py, "append"))?.unbind(),
            popleft: ready.getattr(intern!(py, "popleft"))?.unbind(),
            ready: ready.unbind(),
            debug: initial("_debug"),
            closed: initial("_closed"),
            flags_kept,
            aio_loop: aio_loop.unbind(),
            selector,
            handle_type,
            timer_handle_type,
            made_type,
            slow_call_soon,
            slow_run_once,
            report,
            dispatches_events,
            state_in_dict,
        })
    }

    /// Called by the loop's property setter (and deleter, with None) of `_debug` or `_closed` with what it stored.
    fn flag_stored(&self, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let flag = match name {
            "_debug" => &self.debug,
            "_closed" => &self.closed,
            _ => return Err(pyo3::exceptions::PyValueError::new_err(format!("{name} is not a loop flag"))),
        };
        if self.flags_kept {
            flag.store(flag_of(value), Ordering::Relaxed);
        }
        Ok(())
    }

    /// asyncio's `call_soon`: queues `callback(*args)` to run in `context` (None: a copy of the current one) and
    /// returns its `asyncio.Handle`; wakes the loop if it is parked in `select`.
    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if self.flag(py, &self.debug, intern!(py, "_debug"))?
            || self.flag(py, &self.closed, intern!(py, "_closed"))?
            || !self.handle_init_kept(py)?
        {
            let mut call_args = vec![callback.into_any()];
            call_args.extend(args.iter());
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item(intern!(py, "context"), context)?;
            return self.slow_call_soon.bind(py).call(PyTuple::new(py, call_args)?, Some(&kwargs));
        }
        let context = match context {
            Some(context) if !context.is_none() => context,
            // SAFETY: returns a new reference to a new Context, or NULL with an exception set.
            _ => unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())? },
        };
        let handle = self.new_handle(py, callback, args, context)?;
        self.append.bind(py).call1((&handle,))?;
        self.selector.get().wake_parked(py)?;
        Ok(handle)
    }

    /// asyncio's `_check_closed` (every `create_task`, `call_at`, `run_in_executor`...): RuntimeError if the
    /// loop's `_closed` is true.
    fn check_closed(&self, py: Python<'_>) -> PyResult<()> {
        if self.flag(py, &self.closed, intern!(py, "_closed"))? {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// asyncio's `create_future`: `asyncio.futures.Future(loop=loop)`.
    fn create_future<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let future_type = self.futures.bind(py).getattr(intern!(py, "Future"))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "loop"), self.aio_loop.bind(py))?;
        future_type.call((), Some(&kwargs))
    }

    /// asyncio's `create_task` (CPython 3.11 on: the version whose signature this is): outside debug mode, with no
    /// task factory, `asyncio.tasks.Task(coro, loop=loop, name=name, context=context)` once the loop is checked
    /// open, as asyncio's does (whose Task then keeps no creation traceback to trim); otherwise asyncio's own.
    #[pyo3(signature = (coro, *, name = None, context = None))]
    fn create_task<'py>(
        &self,
        py: Python<'py>,
        coro: Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let aio_loop = self.aio_loop.bind(py);
        // the keywords as asyncio passes them: `loop` (to Task only), `name`, `context`
        let kwargs = PyDict::new(py);
        let slow = self.flag(py, &self.debug, intern!(py, "_debug"))?
            || !aio_loop.getattr(intern!(py, "_task_factory"))?.is_none();
        if !slow {
            self.check_closed(py)?;
            kwargs.set_item(intern!(py, "loop"), aio_loop)?;
        }
        kwargs.set_item(intern!(py, "name"), name)?;
        kwargs.set_item(intern!(py, "context"), context)?;
        if slow {
            return self.slow_create_task.bind(py).call((aio_loop, coro), Some(&kwargs));
        }
        self.tasks.bind(py).getattr(intern!(py, "Task"))?.call((coro,), Some(&kwargs))
    }

    /// asyncio's `get_debug`: the loop's `_debug` (every Future and Task asks it when made).
    fn get_debug<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.debug.load(Ordering::Relaxed) {
            FLAG_READ => self.aio_loop.bind(py).getattr(intern!(py, "_debug")),
            flag => Ok(pyo3::types::PyBool::new(py, flag == FLAG_TRUE).to_owned().into_any()),
        }
    }

    /// asyncio's `time`: `time.monotonic()`, through `asyncio.base_events`' `time` module.
    fn time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let time = self.base_events.bind(py).getattr(intern!(py, "time"))?;
        time.getattr(intern!(py, "monotonic"))?.call0()
    }

    /// One iteration of the loop, as asyncio's `_run_once` outside debug mode: cancelled timers dropped, the
    /// selector's `select` (which may park the loop's greenlet) and `_process_events` on what it found (both in
    /// Rust where allowed), the due timers queued, the ready handles run. In debug mode, asyncio's own.
    fn run_once(&self, py: Python<'_>) -> PyResult<()> {
        let aio_loop = self.aio_loop.bind(py);
        if self.flag(py, &self.debug, intern!(py, "_debug"))? {
            return self.slow_run_once.bind(py).call0().map(drop);
        }
        let state = self.state(py)?;
        self.drop_cancelled_timers(py, aio_loop, state.as_ref())?;
        let timeout = self.select_timeout(py, aio_loop, state.as_ref())?;
        if self.dispatches_events {
            let ready = self.selector.get().select_ready(py, timeout)?;
            self.queue_ready_fds(py, aio_loop, ready)?;
        } else {
            let events = aio_loop.getattr(intern!(py, "_selector"))?.call_method1(intern!(py, "select"), (timeout,))?;
            if events.len()? > 0 {
                aio_loop.call_method1(intern!(py, "_process_events"), (events,))?;
            }
        }
        self.queue_due_timers(py, aio_loop, state.as_ref())?;
        self.run_ready(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.aio_loop)?;
        visit.call(&self.ready)?;
        visit.call(&self.append)?;
        visit.call(&self.popleft)?;
        visit.call(&self.selector)?;
        visit.call(&self.handle_type)?;
        visit.call(&self.timer_handle_type)?;
        visit.call(&self.made_type)?;
        visit.call(&self.handle_init)?;
        visit.call(&self.handle_run)?;
        visit.call(&self.slow_call_soon)?;
        visit.call(&self.slow_run_once)?;
        visit.call(&self.report)?;
        visit.call(&self.heappop)?;
        visit.call(&self.heapify)?;
        visit.call(&self.futures)?;
        visit.call(&self.tasks)?;
        visit.call(&self.slow_create_task)?;
        visit.call(&self.base_events)
    }
}
