//! `ferrovent._core.AioLoop`: the two hot paths of the asyncio loop (python/ferrovent/asyncio/_loop.py), the
//! making of a callback's `asyncio.Handle` in `call_soon` and the running of the ready queue's handles, without a
//! Python frame per callback.
//!
//! What stays asyncio's own: the handles are `asyncio.Handle` / `TimerHandle` instances with their usual slots, the
//! ready queue is the loop's `_ready` deque, and the timer heap is the loop's `_scheduled` list, so asyncio's own
//! code and anything that looks at them sees what it expects. What this file does is what `Handle.__init__` and
//! `Handle._run` do, in the same order, for the plain (non-debug) case: a copy of the current context when none is
//! given, the callback run in the handle's context, an exception (other than SystemExit and KeyboardInterrupt)
//! handed to the loop's exception handler through a Python reporter. Debug mode, a closed loop, and handles of
//! other classes go through asyncio's own Python code.

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::types::{PyTuple, PyType};
use pyo3::{ffi, intern};

use crate::aio_selector::AioSelector;

/// See the module documentation.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct AioLoop {
    /// The asyncio loop (its `_debug` and `_closed` are read at each call: asyncio sets them as plain attributes).
    aio_loop: Py<PyAny>,
    /// The loop's ready deque's `append` and `popleft`, and the deque itself.
    ready: Py<PyAny>,
    append: Py<PyAny>,
    popleft: Py<PyAny>,
    /// Parked in `select` is where a `call_soon` from another greenlet finds the loop: it wakes it.
    selector: Py<AioSelector>,
    handle_type: Py<PyType>,
    timer_handle_type: Py<PyType>,
    /// asyncio's own `call_soon` for this loop, for debug mode and a closed loop.
    slow_call_soon: Py<PyAny>,
    /// `report(handle, exception)`: hands a callback's exception to the loop's exception handler.
    report: Py<PyAny>,
}

impl AioLoop {
    /// A new `asyncio.Handle` as `Handle.__init__` makes it outside debug mode.
    fn new_handle<'py>(
        &self,
        py: Python<'py>,
        callback: Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let empty = PyTuple::empty(py);
        // SAFETY: `handle_type` is a type object (asyncio.Handle, checked in Python before this object is made);
        // PyType_GenericNew allocates an instance with its slots empty and ignores the (valid) argument tuple.
        let handle = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyType_GenericNew(self.handle_type.as_ptr().cast(), empty.as_ptr(), std::ptr::null_mut()),
            )?
        };
        handle.setattr(intern!(py, "_context"), context)?;
        handle.setattr(intern!(py, "_loop"), self.aio_loop.bind(py))?;
        handle.setattr(intern!(py, "_callback"), callback)?;
        handle.setattr(intern!(py, "_args"), args)?;
        handle.setattr(intern!(py, "_cancelled"), false)?;
        handle.setattr(intern!(py, "_repr"), py.None())?;
        handle.setattr(intern!(py, "_source_traceback"), py.None())?;
        Ok(handle)
    }

    /// Runs one handle taken from the ready queue, as `Handle._run` would.
    fn run_handle(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let kind = handle.get_type();
        if !(kind.is(self.handle_type.bind(py)) || kind.is(self.timer_handle_type.bind(py))) {
            return handle.call_method0(intern!(py, "_run")).map(drop);
        }
        let context = handle.getattr(intern!(py, "_context"))?;
        // SAFETY: a type check on a live object.
        if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
            return handle.call_method0(intern!(py, "_run")).map(drop);
        }
        let callback = handle.getattr(intern!(py, "_callback"))?;
        let args = handle.getattr(intern!(py, "_args"))?;
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
    // SAFETY: `context` is a live Context object (checked by the caller); entering fails with an exception set
    // if it is already entered.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    let result = callback.call1(args.cast::<PyTuple>()?);
    // SAFETY: the context entered above, current again whatever greenlets ran during the call (greenlet keeps
    // each greenlet's context); no exception is set here (PyO3 holds the call's error, if any, in `result`).
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } != 0 {
        return Err(PyErr::fetch(py));
    }
    result.map(drop)
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
        slow_call_soon: Py<PyAny>,
        report: Py<PyAny>,
    ) -> PyResult<Self> {
        let py = aio_loop.py();
        Ok(Self {
            append: ready.getattr(intern!(py, "append"))?.unbind(),
            popleft: ready.getattr(intern!(py, "popleft"))?.unbind(),
            ready: ready.unbind(),
            aio_loop: aio_loop.unbind(),
            selector,
            handle_type,
            timer_handle_type,
            slow_call_soon,
            report,
        })
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
        let aio_loop = self.aio_loop.bind(py);
        if aio_loop.getattr(intern!(py, "_debug"))?.is_truthy()? || aio_loop.getattr(intern!(py, "_closed"))?.is_truthy()?
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

    /// Runs the handles in the ready queue now (not those they queue), skipping cancelled ones, as asyncio's
    /// `_run_once` does outside debug mode. SystemExit and KeyboardInterrupt from a callback go up, the handles
    /// after it staying queued.
    fn run_ready(&self, py: Python<'_>) -> PyResult<()> {
        let count = self.ready.bind(py).len()?;
        let popleft = self.popleft.bind(py);
        for _ in 0..count {
            let handle = popleft.call0()?;
            if handle.getattr(intern!(py, "_cancelled"))?.is_truthy()? {
                continue;
            }
            self.run_handle(py, &handle)?;
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.aio_loop)?;
        visit.call(&self.ready)?;
        visit.call(&self.append)?;
        visit.call(&self.popleft)?;
        visit.call(&self.selector)?;
        visit.call(&self.handle_type)?;
        visit.call(&self.timer_handle_type)?;
        visit.call(&self.slow_call_soon)?;
        visit.call(&self.report)
    }
}
