//! A new Greenlet for `Greenlet.spawn`, built and started without running the Python `Greenlet.__init__` and
//! `Greenlet.start`.
//!
//! A spawn is paid once per greenlet, and `__init__`'s frame was a fifth of it: the call packs the arguments twice
//! (a tuple for the class call, another tuple and a dict for `*args, **kwargs`), each allocation counting towards
//! the next collection. Here the greenlet comes from its class's own `tp_new` (greenlet's), and what `__init__` sets
//! is stored straight into Greenlet's slots: the hub as parent (through greenlet's C API, with its checks), the
//! function, the arguments as a tuple, the keyword arguments as a dict (None without any), the same defaults, and a
//! weak reference to the spawning greenlet. Then what `start` does to a new greenlet: the spawn callbacks, if any,
//! through the Python method; else `_start_state` is set and the hub's loop starts it (`parent.loop.start`).
//!
//! Only for the classes ferrovent.greenlet vouches for (`_assigns_as_greenlet`): Greenlet, or a subclass that keeps
//! `__new__`, `__init__`, `start`, `__setattr__`, `__getattribute__` and every attribute they assign as Greenlet's,
//! with `spawning_stack_limit` 0. That verdict is kept per class and version tag (CPython gives a class a new tag
//! whenever it or one of its bases changes), so it is asked again after any change. Any other class, or call shape
//! (no positional `run`, a keyword named `run` or `self`, a `run` that is not callable), goes through the class
//! call and `__init__`. Both are CPython internals (slot offsets, version tags): the Python side installs this only
//! on the versions it lists, and not with `FERROVENT_GREENLET_FAST=0`.

use std::sync::Mutex;

use pyo3::exceptions::PyAttributeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType, PyWeakrefReference};

use crate::greenlet_api;
use crate::slots::{fill_slot, slot_offset};
use crate::type_version::version_tag;
use crate::vectorcall::{Arguments, Object};

/// How many classes' verdicts are kept (a program spawns a handful of Greenlet classes).
const VERDICTS_KEPT: usize = 8;

/// Greenlet's slots that `__init__` and `start` assign, by their byte offsets in its instances.
struct Layout {
    function: isize,
    args: isize,
    kwargs: isize,
    value: isize,
    exc_info: isize,
    start_state: isize,
    start_timer: isize,
    links: isize,
    links_scheduled: isize,
    finish_order: isize,
    spawning_greenlet: isize,
}

impl Layout {
    fn of(greenlet_class: &Bound<'_, PyType>) -> PyResult<Self> {
        let offset = |name| slot_offset(greenlet_class, name);
        Ok(Self {
            function: offset("_function")?,
            args: offset("args")?,
            kwargs: offset("_kwargs")?,
            value: offset("value")?,
            exc_info: offset("_exc_info")?,
            start_state: offset("_start_state")?,
            start_timer: offset("_start_timer")?,
            links: offset("_links")?,
            links_scheduled: offset("_links_scheduled")?,
            finish_order: offset("_finish_order")?,
            spawning_greenlet: offset("spawning_greenlet")?,
        })
    }
}

/// What building a Greenlet needs, taken once from ferrovent.greenlet.
struct Builder {
    /// ferrovent.greenlet's globals, for `_spawn_callbacks` (read at each spawn, as `start` reads it).
    globals: Py<PyDict>,
    /// The thread-local object whose `hub` attribute is the thread's hub (ferrovent.hub's `_hubs`).
    hubs: Py<PyAny>,
    /// `get_hub`, for a thread that has no hub yet.
    get_hub: Py<PyAny>,
    /// `_assigns_as_greenlet(cls)`: whether a class may be built and started here.
    vouches: Py<PyAny>,
    /// `_SCHEDULED`, the `_start_state` of a started greenlet (compared by identity).
    scheduled: Py<PyAny>,
    /// greenlet's `tp_new`, which every class built here has (checked again at each build).
    tp_new: ffi::newfunc,
    layout: Layout,
    /// The verdicts given so far, by class address and version tag: (class, tag, verdict), latest last.
    verdicts: Mutex<Vec<(usize, u32, bool)>>,
}

static BUILDER: PyOnceLock<Builder> = PyOnceLock::new();

/// Lets `Greenlet.spawn` build and start the classes ferrovent.greenlet (whose globals are `globals`) vouches for
/// (see the module's comment). Returns whether it was installed: only the first call does (a second Greenlet class
/// keeps the class call).
#[pyfunction]
pub fn build_greenlets_in_rust(greenlet_class: &Bound<'_, PyType>, globals: &Bound<'_, PyDict>) -> PyResult<bool> {
    let py = greenlet_class.py();
    if BUILDER.get(py).is_some() {
        return Ok(false);
    }
    let global = |name: &str| -> PyResult<Py<PyAny>> {
        globals.get_item(name)?.map(Bound::unbind).ok_or_else(|| PyAttributeError::new_err(name.to_owned()))
    };
    // SAFETY: reading a slot of a live type object.
    let tp_new = unsafe { (*greenlet_class.as_type_ptr()).tp_new }
        .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("Greenlet has no tp_new"))?;
    let builder = Builder {
        globals: globals.clone().unbind(),
        hubs: global("_hubs")?,
        get_hub: global("get_hub")?,
        vouches: global("_assigns_as_greenlet")?,
        scheduled: global("_SCHEDULED")?,
        tp_new,
        layout: Layout::of(greenlet_class)?,
        verdicts: Mutex::new(Vec::with_capacity(VERDICTS_KEPT)),
    };
    Ok(BUILDER.set(py, builder).is_ok())
}

/// `cls(run, *args, **kwargs)` with `args` holding `run` and the other positionals, then the keyword values named by
/// `kwnames` (NULL for none), then its `start()`: the new greenlet, started, or None when this call must go through
/// the class and the greenlet's `start` instead.
///
/// # Safety
/// The GIL is held; `cls` is a live object; `args` holds `nargs` positionals followed by one value per name in
/// `kwnames`, a tuple of str or NULL.
pub unsafe fn spawn<'py>(
    py: Python<'py>,
    cls: Object,
    args: Arguments,
    nargs: usize,
    kwnames: Object,
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let builder = BUILDER.get(py)?;
    // SAFETY: per the contract; `run` is the first positional, if there is one.
    let run = unsafe {
        if nargs == 0 || ffi::PyCallable_Check(*args) == 0 {
            return None;
        }
        Bound::from_borrowed_ptr(py, *args)
    };
    // SAFETY: per the contract.
    let kwnames = unsafe { Bound::from_borrowed_ptr_or_opt(py, kwnames) }.map(|names| names.cast_into::<PyTuple>());
    let kwnames = match kwnames {
        None => None,
        Some(Ok(names))
            if !names.iter().any(|name| name.eq("run").unwrap_or(true) || name.eq("self").unwrap_or(true)) =>
        {
            Some(names)
        }
        Some(_) => return None,
    };
    // SAFETY: per the contract.
    let cls = unsafe { Bound::from_borrowed_ptr(py, cls) }.cast_into::<PyType>().ok()?;
    match builder.vouches_for(&cls) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(err) => return Some(Err(err)),
    }
    // SAFETY: per the contract, the positionals after `run`, then the keyword values.
    let (rest, values) = unsafe {
        (
            std::slice::from_raw_parts(args.add(1), nargs - 1),
            std::slice::from_raw_parts(args.add(nargs), kwnames.as_ref().map_or(0, |names| names.len())),
        )
    };
    let keywords = kwnames.as_ref().map(|names| (names, values));
    Some(builder.build(&cls, run, rest, keywords).and_then(|(greenlet, hub)| builder.start(greenlet, &hub)))
}

impl Builder {
    /// Whether `cls` may be built here: asked of Python once per class and version tag.
    fn vouches_for(&self, cls: &Bound<'_, PyType>) -> PyResult<bool> {
        let raw = cls.as_type_ptr();
        // SAFETY: reading slots of a live type object. A metaclass other than `type` may change how the class is
        // called, and only `type` is immutable: any other goes through the class call.
        let (metaclass, tp_new) = unsafe { (ffi::Py_TYPE(raw.cast()), (*raw).tp_new) };
        let greenlets_own = tp_new.is_some_and(|tp_new| std::ptr::fn_addr_eq(tp_new, self.tp_new));
        if metaclass != std::ptr::addr_of_mut!(ffi::PyType_Type) || !greenlets_own {
            return Ok(false);
        }
        let key = version_tag(cls).map(|tag| (raw as usize, tag));
        if let Some((class, tag)) = key {
            let verdicts = self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(&(_, _, verdict)) = verdicts.iter().find(|&&(c, t, _)| c == class && t == tag) {
                return Ok(verdict);
            }
        }
        // No lock is held while Python runs: another thread may spawn meanwhile.
        let verdict = self.vouches.bind(cls.py()).call1((cls,))?.is_truthy()?;
        // Kept only if the class is unchanged since the tag was read (a change clears the tag).
        if let Some((class, tag)) = key.filter(|&(_, tag)| version_tag(cls) == Some(tag)) {
            let mut verdicts = self.verdicts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            verdicts.retain(|&(c, _, _)| c != class);
            if verdicts.len() == VERDICTS_KEPT {
                verdicts.remove(0);
            }
            verdicts.push((class, tag, verdict));
        }
        Ok(verdict)
    }

    /// A new `cls` with the state `Greenlet.__init__(run, *rest, **keywords)` gives it, in `__init__`'s order, but
    /// for `_start_state`, which `start` fills; and its parent, the hub.
    fn build<'py>(
        &self,
        cls: &Bound<'py, PyType>,
        run: Bound<'py, PyAny>,
        rest: &[Object],
        keywords: Option<(&Bound<'py, PyTuple>, &[Object])>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let py = cls.py();
        // SAFETY: `tp_new` is greenlet's (checked in `vouches_for`), which ignores its arguments (as greenlet's own
        // calls it, with an empty tuple); a new reference, or NULL with an exception set.
        let greenlet = unsafe {
            let empty = PyTuple::empty(py);
            Bound::from_owned_ptr_or_err(py, (self.tp_new)(cls.as_type_ptr(), empty.as_ptr(), std::ptr::null_mut()))
        }?;
        let hub = match self.hubs.bind(py).getattr(intern!(py, "hub")) {
            Ok(hub) => hub,
            Err(err) if err.is_instance_of::<PyAttributeError>(py) => self.get_hub.bind(py).call0()?,
            Err(err) => return Err(err),
        };
        greenlet_api::set_parent(&greenlet, &hub)?;
        // SAFETY: each value is a new reference or a borrowed one made owned here, as the slot takes it.
        let args = PyTuple::new(py, rest.iter().map(|&arg| unsafe { Bound::from_borrowed_ptr(py, arg) }))?;
        let kwargs = match keywords {
            Some((names, values)) if !names.is_empty() => {
                let kwargs = PyDict::new(py);
                for (name, &value) in names.iter().zip(values) {
                    // SAFETY: a borrowed value of the call, held by the caller for the call's length.
                    kwargs.set_item(name, unsafe { Bound::from_borrowed_ptr(py, value) })?;
                }
                kwargs.into_any()
            }
            _ => py.None().into_bound(py),
        };
        let spawner = greenlet_api::current(py)?;
        let spawning_greenlet = PyWeakrefReference::new(&spawner)?.into_any();
        let none = || py.None().into_bound(py);
        let layout = &self.layout;
        let values = [
            (layout.function, run),
            (layout.args, args.into_any()),
            (layout.kwargs, kwargs),
            (layout.value, none()),
            (layout.exc_info, none()),
            (layout.start_timer, none()),
            (layout.links, PyTuple::empty(py).into_any()),
            (layout.links_scheduled, pyo3::types::PyBool::new(py, false).to_owned().into_any()),
            (layout.finish_order, 0i64.into_pyobject(py)?.into_any()),
            (layout.spawning_greenlet, spawning_greenlet),
        ];
        for (offset, value) in values {
            // SAFETY: `greenlet` is a new instance of Greenlet or a subclass (its tp_new is Greenlet's and
            // `vouches_for` checked it subclasses Greenlet), whose slots are empty; `offset` is one of Greenlet's.
            unsafe { fill_slot(&greenlet, offset, value) };
        }
        Ok((greenlet, hub))
    }

    /// `Greenlet.start` on `greenlet`, just built (so not started): without spawn callbacks, `_start_state` becomes
    /// `_SCHEDULED` and the hub's loop starts it; with some, the Python method runs them first.
    /// `hub` is the greenlet's parent, as `build` just set it.
    fn start<'py>(&self, greenlet: Bound<'py, PyAny>, hub: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = greenlet.py();
        let callbacks = self.globals.bind(py).get_item(intern!(py, "_spawn_callbacks"))?;
        let layout = &self.layout;
        if callbacks.is_some_and(|callbacks| !callbacks.is_none()) {
            // SAFETY: `greenlet` was just built, its `_start_state` slot left empty.
            unsafe { fill_slot(&greenlet, layout.start_state, py.None().into_bound(py)) };
            greenlet.call_method0(intern!(py, "start"))?;
            return Ok(greenlet);
        }
        // SAFETY: as above.
        unsafe { fill_slot(&greenlet, layout.start_state, self.scheduled.bind(py).clone()) };
        hub.getattr(intern!(py, "loop"))?.call_method1(intern!(py, "start"), (&greenlet,))?;
        Ok(greenlet)
    }
}
