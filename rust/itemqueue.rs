//! `ferrovent._core.ItemQueue`: the base of `ferrovent.queue.SimpleQueue` (and so of Queue and its family).
//!
//! It holds the queue's state (the storage object, the bound, the unfinished-task count, the shutdown flag and
//! the getters' and putters' `WaitQueue`s) and implements the calls that do not wait: a put with room, a get with
//! an item, and the wake-ups that follow (a put wakes the first waiting getter; a get that frees a slot wakes the
//! first waiting putter, which stores its item itself when it runs). So `put` and `get` of a queue with room or
//! items are one Rust call each, and so are a put that waits for a slot and a get that waits for an item (with
//! no timeout): those waits are shaped to keep little of the C stack (see `WaitQueue::wait_raw`). A call that
//! has something to check first (a timeout, a shutdown, the hub calling) goes to the Python methods `_put_slow`
//! and `_get_slow`, which wait in the same `WaitQueue`s.
//!
//! Putters are woken one at a time: the one woken for a slot (`woken_box`, the box it waits with) wakes the next
//! when it is done, if there is room still. So no two woken putters can race for slots and fall out of order.
//!
//! Storage: a plain queue (`_plain`) keeps its items here, in a Rust deque, until its `queue` attribute is read or
//! set; from then on they live in that Python deque, used directly (whoever read it may change it), for good. A
//! subclass that overrides the stdlib's hooks has every item go through `_qsize`/`_put`/`_get` and its storage is
//! whatever its `_init` put in `queue`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CStr;

use pyo3::exceptions::{PyIndexError, PyRuntimeError};
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFloat, PyInt, PyList, PyTuple};

use crate::event_loop::Loop;
use crate::greenlet_api;
use crate::timers::Nanos;
use crate::vectorcall::{self, Arguments, Object};
use crate::waitqueue::{resume, LoopSlot, WaitQueue, Waited};

/// `collections.deque` and its `append` and `popleft`, looked up once: a plain queue's storage is a deque, and
/// calling the method descriptors skips a method lookup per item.
struct DequeMethods {
    deque: Py<PyAny>,
    append: Py<PyAny>,
    popleft: Py<PyAny>,
}

static DEQUE: PyOnceLock<DequeMethods> = PyOnceLock::new();

fn deque_methods(py: Python<'_>) -> PyResult<&DequeMethods> {
    DEQUE.get_or_try_init(py, || {
        let deque = py.import("collections")?.getattr("deque")?;
        Ok(DequeMethods {
            append: deque.getattr("append")?.unbind(),
            popleft: deque.getattr("popleft")?.unbind(),
            deque: deque.unbind(),
        })
    })
}

/// Where `ItemQueue::get_blocking_raw` stands: done (a new reference, or NULL with the exception set), or to
/// wait in the loop's line of getters (for so many seconds, or with no timeout).
enum GetStep<'py> {
    Done(*mut ffi::PyObject),
    Wait(Bound<'py, Loop>, Option<f64>),
}

/// How long a get may wait: no limit, so many seconds from its first look, or until a deadline on the loop's clock.
#[derive(Clone, Copy)]
enum Limit {
    Never,
    After(f64),
    At(Nanos),
}

/// `queue.Full` and `queue.Empty` (ferrovent's are the stdlib's very classes), looked up once.
static FULL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static EMPTY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A new instance of the stdlib's `queue.<name>`, kept in `class`.
fn stdlib_queue_error(py: Python<'_>, class: &PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<PyErr> {
    let class = class.get_or_try_init(py, || py.import("queue")?.getattr(name).map(Bound::unbind))?;
    Ok(PyErr::from_value(class.bind(py).call0()?))
}

/// `ferrovent.queue.ShutDown` (the stdlib's from Python 3.13), raised in a woken putter that finds the queue shut.
fn shutdown_error(py: Python<'_>) -> PyResult<PyErr> {
    let shutdown = py.import("ferrovent.queue")?.getattr("ShutDown")?;
    Ok(PyErr::from_value(shutdown.call0()?))
}

/// A `timeout` argument the Rust waits take: an exact float or int, zero or more (anything else, a `Timeout` or a
/// negative number, goes to the Python side).
fn seconds_to_wait(timeout: &Bound<'_, PyAny>) -> Option<f64> {
    let number = timeout.is_exact_instance_of::<PyFloat>() || timeout.is_exact_instance_of::<PyInt>();
    number.then(|| timeout.extract::<f64>().ok()).flatten().filter(|seconds| *seconds >= 0.0)
}

/// A `block` argument: any object, taken by its truth value (as the stdlib's queue takes it).
pub struct Truthy(bool);

impl FromPyObject<'_, '_> for Truthy {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, '_, PyAny>) -> PyResult<Self> {
        obj.is_truthy().map(Truthy)
    }
}

/// The counting rules of a bounded queue, free of Python so they can be tested on their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// At most this many items; 0 or less: no bound.
    pub maxsize: i64,
}

impl Capacity {
    /// Whether one more item fits when `size` are stored.
    pub fn has_room(self, size: i64) -> bool {
        self.maxsize <= 0 || size < self.maxsize
    }
}

/// Where a queue's items are.
enum Items {
    /// Here: a plain queue whose `queue` attribute nobody has read or set (no Python call per item).
    Native(VecDeque<Py<PyAny>>),
    /// In a Python object: the deque a plain queue's `queue` attribute gave out or was given, or whatever a
    /// subclass's `_init` made.
    Object(Py<PyAny>),
}

#[pyclass(frozen, subclass, module = "ferrovent._core")]
pub struct ItemQueue {
    queue: RefCell<Items>,
    /// Counts changes to `Items::Native`, so that making the deque (which may run Python code) can tell whether
    /// the items changed meanwhile.
    native_changes: Cell<u64>,
    capacity: Cell<Capacity>,
    unfinished: Cell<i64>,
    plain: Cell<bool>,
    shutdown: Cell<bool>,
    getters: Py<WaitQueue>,
    putters: Py<WaitQueue>,
    /// The box (a one-item list) of the putter woken for a free slot that has not run yet, if any.
    woken_box: RefCell<Option<Py<PyAny>>>,
    loop_: LoopSlot,
}

// SAFETY: the state is only touched with the GIL held (every entry point is a Python call), and no borrow is held
// across a call into Python or a GIL release, so the GIL serializes every access, even from another thread.
// ferrovent does not support free-threaded builds.
unsafe impl Sync for ItemQueue {}

impl ItemQueue {
    fn native_len(&self) -> Option<usize> {
        match &*self.queue.borrow() {
            Items::Native(items) => Some(items.len()),
            Items::Object(_) => None,
        }
    }

    /// Appends to the items held here; gives `item` back if they are in a Python object.
    fn push_native<'py>(&self, item: Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
        match &mut *self.queue.borrow_mut() {
            Items::Native(items) => {
                items.push_back(item.unbind());
                self.native_changes.set(self.native_changes.get() + 1);
                None
            }
            Items::Object(_) => Some(item),
        }
    }

    /// The first of the items held here (None if there is none), or Err(()) if they are in a Python object.
    fn pop_native(&self) -> Result<Option<Py<PyAny>>, ()> {
        match &mut *self.queue.borrow_mut() {
            Items::Native(items) => {
                self.native_changes.set(self.native_changes.get() + 1);
                Ok(items.pop_front())
            }
            Items::Object(_) => Err(()),
        }
    }

    /// Replaces the storage; what it held is released after the borrow (releasing may run Python code).
    fn replace_items(&self, items: Items) {
        let previous = self.queue.replace(items);
        drop(previous);
    }

    /// The Python object holding the items, moving the items held here into a new deque first.
    fn storage_object(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        loop {
            let (snapshot, changes) = match &*self.queue.borrow() {
                Items::Object(storage) => return Ok(storage.clone_ref(py)),
                Items::Native(items) => {
                    let snapshot: Vec<Py<PyAny>> = items.iter().map(|item| item.clone_ref(py)).collect();
                    (snapshot, self.native_changes.get())
                }
            };
            // Making the list and the deque may run Python code (a collection, a finaliser) that puts or gets.
            let deque = deque_methods(py)?.deque.bind(py).call1((PyList::new(py, snapshot)?,))?.unbind();
            if self.native_changes.get() == changes {
                self.replace_items(Items::Object(deque.clone_ref(py)));
                return Ok(deque);
            }
        }
    }

    /// Whether the caller is the hub of the queue's loop (which cannot wait).
    fn in_hub(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let lp = slf.get().owner_loop(py)?;
        Ok(lp.get().is_hub(&greenlet_api::current(py)?))
    }

    fn owner_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Loop>> {
        let lp = self.loop_.get(py).map(|l| l.into_bound(py));
        lp.ok_or_else(|| PyRuntimeError::new_err("the queue has no loop: SimpleQueue.__init__ was not called"))
    }

    fn size(slf: &Bound<'_, Self>) -> PyResult<i64> {
        let me = slf.get();
        if me.plain.get() {
            match me.native_len() {
                Some(len) => Ok(len as i64),
                None => Ok(me.storage_object(slf.py())?.bind(slf.py()).len()? as i64),
            }
        } else {
            slf.call_method0(intern!(slf.py(), "_qsize"))?.extract()
        }
    }

    fn has_room(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let capacity = slf.get().capacity.get();
        if capacity.maxsize <= 0 {
            return Ok(true); // no need to count
        }
        Ok(capacity.has_room(Self::size(slf)?))
    }

    /// Stores an item that has a slot, counts it as unfinished, and wakes the first waiting getter.
    fn add(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.plain.get() {
            if let Some(item) = me.push_native(item) {
                let storage = me.storage_object(py)?.into_bound(py);
                let methods = deque_methods(py)?;
                if storage.get_type().is(&methods.deque) {
                    methods.append.bind(py).call1((storage, item))?;
                } else {
                    storage.call_method1(intern!(py, "append"), (item,))?;
                }
            }
        } else {
            slf.call_method1(intern!(py, "_put"), (item,))?;
        }
        me.unfinished.set(me.unfinished.get() + 1);
        let getters = me.getters.bind(py);
        if !getters.get().is_empty() {
            WaitQueue::wake_first(getters, me.owner_loop(py)?.get())?;
        }
        Ok(())
    }

    /// Removes the next item, then wakes a waiting putter for the freed slot.
    fn pop<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let me = slf.get();
        let item = if me.plain.get() {
            match me.pop_native() {
                Ok(Some(item)) => item.into_bound(py),
                Ok(None) => return Err(PyIndexError::new_err("pop from an empty queue")),
                Err(()) => {
                    let storage = me.storage_object(py)?.into_bound(py);
                    let methods = deque_methods(py)?;
                    if storage.get_type().is(&methods.deque) {
                        methods.popleft.bind(py).call1((storage,))?
                    } else {
                        storage.call_method0(intern!(py, "popleft"))?
                    }
                }
            }
        } else {
            slf.call_method0(intern!(py, "_get"))?
        };
        if !me.putters.get().is_empty() {
            Self::wake_putter(slf)?;
        }
        Ok(item)
    }

    /// `put(item, block)` with no timeout: stored at once, or after waiting in line for a slot (`put_waiting_raw`);
    /// None, or NULL with the exception set. A shut queue, or a full one with `block` false or in the hub, goes to
    /// the Python side's `_put_slow`.
    fn put_raw(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>, block: bool) -> *mut ffi::PyObject {
        match Self::put_at_once(slf, item, block) {
            Some(done) => done,
            None => Self::put_waiting_raw(slf, item, None),
        }
    }

    /// `put_raw` up to the wait: its result if it need not wait for a slot, None if it must.
    #[inline(never)]
    fn put_at_once(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>, block: bool) -> Option<*mut ffi::PyObject> {
        let py = slf.py();
        let step = || -> PyResult<Option<*mut ffi::PyObject>> {
            if !slf.get().shutdown.get() {
                if Self::has_room(slf)? {
                    Self::add(slf, item.clone())?;
                    return Ok(Some(py.None().into_ptr()));
                }
                if block && !Self::in_hub(slf)? {
                    return Ok(None);
                }
            }
            let slow = slf.call_method1(intern!(py, "_put_slow"), (item, block, py.None()))?;
            Ok(Some(slow.into_ptr()))
        };
        step().unwrap_or_else(|err| {
            err.restore(py);
            Some(std::ptr::null_mut())
        })
    }

    /// A put that found the queue full: waits in line for a slot (Full once `timeout` passes), then stores `item`;
    /// None, or NULL with the exception set. Shaped as a wait is (see `WaitQueue::wait_raw`): this frame stays on
    /// the parked greenlet's saved C stack, so it holds no `PyResult` and the work after each wake is out of line.
    ///
    /// The putter waits with a box, a list holding its item. A get in the hub, which cannot wait for the putter to
    /// run, may store the item for it (the box is then empty), or fail to (the box then holds the item and the
    /// error, which the putter raises). Otherwise the putter was woken for a free slot: it stores its item itself,
    /// so a subclass's `_put` runs here, or waits again at the front if the slot was taken meanwhile.
    fn put_waiting_raw(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>, timeout: Option<f64>) -> *mut ffi::PyObject {
        let py = slf.py();
        let Some((lp, boxed)) = Self::before_put_wait(slf, item) else { return std::ptr::null_mut() };
        let putters = slf.get().putters.bind(py);
        let deadline = timeout.map(|seconds| lp.get().deadline_after(seconds));
        let mut timeout = timeout;
        let mut front = false;
        loop {
            let waited =
                WaitQueue::wait_current_raw(putters, &lp, timeout, front, Some(boxed.clone().into_any().unbind()));
            if let Some(done) = Self::after_put_wait(slf, item, &boxed, waited) {
                return done;
            }
            front = true; // the slot was taken by someone who never waited: back to the front of the line
            let lp = lp.get();
            timeout = deadline.map(|d| d.saturating_sub(lp.clock()) as f64 / 1e9);
        }
    }

    /// The queue's loop and the box a putter waits with; None, with the exception set, if it cannot wait.
    #[inline(never)]
    fn before_put_wait<'py>(
        slf: &Bound<'py, Self>,
        item: &Bound<'py, PyAny>,
    ) -> Option<(Bound<'py, Loop>, Bound<'py, PyList>)> {
        let py = slf.py();
        let made = slf.get().owner_loop(py).and_then(|lp| Ok((lp, PyList::new(py, [item])?)));
        made.map_err(|err| err.restore(py)).ok()
    }

    /// What a putter does after a wait for a slot ended: its result (None, or NULL with the exception set), or
    /// None to wait again at the front of the line.
    #[inline(never)]
    fn after_put_wait(
        slf: &Bound<'_, Self>,
        item: &Bound<'_, PyAny>,
        boxed: &Bound<'_, PyList>,
        waited: Waited,
    ) -> Option<*mut ffi::PyObject> {
        let py = slf.py();
        let step = || -> PyResult<bool> {
            match waited {
                Waited::Failed { .. } => {
                    let err = PyErr::fetch(py);
                    Self::putter_done(slf, boxed)?;
                    return Err(err);
                }
                Waited::TimedOut => return Err(stdlib_queue_error(py, &FULL, "Full")?),
                Waited::Woken => {}
            }
            match boxed.len() {
                0 => return Ok(true), // a get in the hub stored it
                2 => return Err(PyErr::from_value(boxed.get_item(1)?)),
                _ => {}
            }
            let stored = Self::store_for_woken_putter(slf, item);
            Self::putter_done(slf, boxed)?;
            stored
        };
        match step() {
            Ok(true) => Some(py.None().into_ptr()),
            Ok(false) => None,
            Err(err) => {
                err.restore(py);
                Some(std::ptr::null_mut())
            }
        }
    }

    /// `get()`, or `get(timeout=seconds)`: the next item, waiting in line for one if there is none (Empty once
    /// `timeout` passes); a new reference, or NULL with the exception set. Shaped as a wait is (see
    /// `WaitQueue::wait_raw`): this frame stays on the parked greenlet's saved C stack, so it holds no `PyResult`
    /// and the work around each wait is out of line. A shut queue or a call from the hub goes to the Python side's
    /// `_get_slow`. Inlined into its callers: one frame fewer on the saved stack.
    #[inline(always)]
    fn get_blocking_raw(slf: &Bound<'_, Self>, timeout: Option<f64>) -> *mut ffi::PyObject {
        let getters = slf.get().getters.bind(slf.py());
        let mut waited = None;
        let mut limit = timeout.map_or(Limit::Never, Limit::After);
        loop {
            let (lp, left) = match Self::next_get_step(slf, waited, &mut limit) {
                GetStep::Done(got) => return got,
                GetStep::Wait(lp, left) => (lp, left),
            };
            // After a wake that found no item (taken by someone who never waited), back to the front of the line.
            let front = waited.is_some();
            waited = Some(WaitQueue::wait_current_raw(getters, &lp, left, front, None));
        }
    }

    /// What `get_blocking_raw` does next, given how its last wait ended (None before the first): done, or wait
    /// for the time left within `limit` (made a deadline here at the first look).
    #[inline(never)]
    fn next_get_step<'py>(slf: &Bound<'py, Self>, waited: Option<Waited>, limit: &mut Limit) -> GetStep<'py> {
        let py = slf.py();
        let me = slf.get();
        let mut step = || -> PyResult<GetStep<'py>> {
            match waited {
                Some(Waited::Failed { lost }) => {
                    let err = PyErr::fetch(py);
                    if lost {
                        if let Err(secondary) = Self::pass_getter_wake_on(slf) {
                            secondary.set_cause(py, Some(err));
                            return Err(secondary);
                        }
                    }
                    return Err(err);
                }
                Some(Waited::TimedOut) => return Err(stdlib_queue_error(py, &EMPTY, "Empty")?),
                Some(Waited::Woken) | None => {}
            }
            if Self::size(slf)? > 0 {
                return Ok(GetStep::Done(Self::pop(slf)?.into_ptr()));
            }
            if me.shutdown.get() {
                return Err(shutdown_error(py)?);
            }
            if waited.is_none() && Self::in_hub(slf)? {
                let timeout = match *limit {
                    Limit::After(seconds) => Some(seconds),
                    Limit::Never | Limit::At(_) => None,
                };
                let slow = slf.call_method1(intern!(py, "_get_slow"), (true, timeout))?;
                return Ok(GetStep::Done(slow.into_ptr()));
            }
            let lp = me.owner_loop(py)?;
            let left = match *limit {
                Limit::Never => None,
                Limit::After(seconds) => {
                    *limit = Limit::At(lp.get().deadline_after(seconds));
                    Some(seconds)
                }
                Limit::At(deadline) => Some(deadline.saturating_sub(lp.get().clock()) as f64 / 1e9),
            };
            Ok(GetStep::Wait(lp, left))
        };
        step().unwrap_or_else(|err| {
            err.restore(py);
            GetStep::Done(std::ptr::null_mut())
        })
    }

    /// A getter woken for an item left without it (an exception ended its wait): the next getter may have it.
    fn pass_getter_wake_on(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        let getters = me.getters.bind(slf.py());
        if !getters.get().is_empty() && Self::size(slf)? > 0 {
            WaitQueue::wake_first(getters, me.owner_loop(slf.py())?.get())?;
        }
        Ok(())
    }

    /// A putter woken for a slot stores its item if the slot is still free (true) or finds it taken (false).
    fn store_for_woken_putter(slf: &Bound<'_, Self>, item: &Bound<'_, PyAny>) -> PyResult<bool> {
        if slf.get().shutdown.get() {
            return Err(shutdown_error(slf.py())?);
        }
        if !Self::has_room(slf)? {
            return Ok(false);
        }
        Self::add(slf, item.clone())?;
        Ok(true)
    }

    /// A putter is through with its wake: if it was the one woken for a slot, the next one's turn comes.
    fn putter_done(slf: &Bound<'_, Self>, boxed: &Bound<'_, PyList>) -> PyResult<()> {
        let me = slf.get();
        let was_woken = me.woken_box.borrow().as_ref().is_some_and(|b| b.is(boxed));
        if !was_woken {
            return Ok(());
        }
        let previous = me.woken_box.replace(None);
        drop(previous);
        Self::wake_putter(slf)
    }

    /// Wakes the first waiting putter if there is room for its item and no other woken putter is still to run.
    fn wake_putter(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let putters = me.putters.bind(py);
        if me.woken_box.borrow().is_some() || putters.get().is_empty() || !Self::has_room(slf)? {
            return Ok(());
        }
        let lp = me.owner_loop(py)?;
        let lp = lp.get();
        lp.check_thread()?;
        if let Some(putter) = putters.get().pop_parked(py, lp)? {
            let woken_box = putter.item.as_ref().map(|b| b.clone_ref(py));
            let previous = me.woken_box.replace(woken_box);
            resume(putters, lp, putter);
            drop(previous);
        }
        Ok(())
    }
}

#[pymethods]
impl ItemQueue {
    /// An empty, unbounded queue with no loop yet; `SimpleQueue.__init__` sets it up.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(py: Python<'_>, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Ok(Self {
            queue: RefCell::new(Items::Object(py.None())),
            native_changes: Cell::new(0),
            capacity: Cell::new(Capacity { maxsize: -1 }),
            unfinished: Cell::new(0),
            plain: Cell::new(true),
            shutdown: Cell::new(false),
            getters: Py::new(py, WaitQueue::new_empty())?,
            putters: Py::new(py, WaitQueue::new_empty())?,
            woken_box: RefCell::new(None),
            loop_: LoopSlot::default(),
        })
    }

    /// The storage object (a deque unless a subclass's `_init` made something else). Reading it moves a plain
    /// queue's items into it for good: whoever holds it may change it.
    #[getter]
    fn get_queue(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.storage_object(py)
    }

    #[setter]
    fn set_queue(&self, value: Py<PyAny>) {
        self.replace_items(Items::Object(value));
    }

    /// Makes `items` (any iterable) the queue's items, held here: a plain queue's `_init`.
    fn _hold(&self, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let held: VecDeque<Py<PyAny>> =
            items.try_iter()?.map(|item| item.map(Bound::unbind)).collect::<PyResult<_>>()?;
        self.native_changes.set(self.native_changes.get() + 1);
        self.replace_items(Items::Native(held));
        Ok(())
    }

    /// The next item, not removed (IndexError if there is none): a plain queue's `_peek`.
    fn _front(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let front = match &*self.queue.borrow() {
            Items::Native(items) => Some(items.front().map(|item| item.clone_ref(py))),
            Items::Object(_) => None,
        };
        match front {
            Some(Some(item)) => Ok(item),
            Some(None) => Err(PyIndexError::new_err("peek at an empty queue")),
            None => Ok(self.storage_object(py)?.bind(py).get_item(0)?.unbind()),
        }
    }

    /// The bound (0 or less: none); `maxsize` is the public face of it.
    #[getter(_maxsize)]
    fn get_maxsize(&self) -> i64 {
        self.capacity.get().maxsize
    }

    #[setter(_maxsize)]
    fn set_maxsize(&self, value: i64) {
        self.capacity.set(Capacity { maxsize: value });
    }

    /// Items put and not yet marked done with `task_done`.
    #[getter]
    fn get_unfinished_tasks(&self) -> i64 {
        self.unfinished.get()
    }

    #[setter]
    fn set_unfinished_tasks(&self, value: i64) {
        self.unfinished.set(value);
    }

    /// True when the items live in the deque `queue` and no storage hook is overridden.
    #[getter(_plain)]
    fn get_plain(&self) -> bool {
        self.plain.get()
    }

    #[setter(_plain)]
    fn set_plain(&self, value: bool) {
        self.plain.set(value);
    }

    /// True once `shutdown()` was called.
    #[getter]
    fn get_is_shutdown(&self) -> bool {
        self.shutdown.get()
    }

    #[setter]
    fn set_is_shutdown(&self, value: bool) {
        self.shutdown.set(value);
    }

    /// The greenlets blocked in get (or peek), in order.
    #[getter]
    fn getters(&self, py: Python<'_>) -> Py<WaitQueue> {
        self.getters.clone_ref(py)
    }

    /// The greenlets blocked in put, in order, each with its item.
    #[getter]
    fn putters(&self, py: Python<'_>) -> Py<WaitQueue> {
        self.putters.clone_ref(py)
    }

    /// The box of the putter woken for a free slot that has not run yet (None if there is none).
    #[getter(_woken_box)]
    fn get_woken_box(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.woken_box.borrow().as_ref().map(|b| b.clone_ref(py))
    }

    #[setter(_woken_box)]
    fn set_woken_box(&self, value: Option<Py<PyAny>>) {
        let previous = self.woken_box.replace(value);
        drop(previous); // after the borrow: releasing it may run Python code
    }

    /// The loop of the hub the queue was made in: its waiters park there.
    #[getter(_loop)]
    fn get_loop(&self, py: Python<'_>) -> Option<Py<Loop>> {
        self.loop_.get(py)
    }

    #[setter(_loop)]
    fn set_loop(&self, value: Option<Py<Loop>>) {
        self.loop_.set(value);
    }

    /// The number of items in the queue.
    fn qsize(slf: &Bound<'_, Self>) -> PyResult<i64> {
        Self::size(slf)
    }

    fn __len__(slf: &Bound<'_, Self>) -> PyResult<usize> {
        Ok(usize::try_from(Self::size(slf)?).unwrap_or(0))
    }

    /// True if the queue holds no item.
    fn empty(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(Self::size(slf)? == 0)
    }

    /// True if a put would block (never for an unbounded queue).
    fn full(slf: &Bound<'_, Self>) -> PyResult<bool> {
        Ok(!Self::has_room(slf)?)
    }

    /// Adds `item`, waiting for a free slot if the queue is full.
    ///
    /// With `block` false, or once `timeout` seconds have passed, raises Full instead of waiting.
    #[pyo3(signature = (item, block=Truthy(true), timeout=None))]
    fn put(
        slf: &Bound<'_, Self>,
        item: Bound<'_, PyAny>,
        block: Truthy,
        timeout: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        if timeout.is_none() {
            // SAFETY: a new reference, or NULL with the exception set.
            return unsafe { Bound::from_owned_ptr_or_err(py, Self::put_raw(slf, &item, block.0)) }.map(drop);
        }
        slf.call_method1(intern!(py, "_put_slow"), (item, block.0, timeout))?;
        Ok(())
    }

    /// Adds `item` if there is a free slot, else raises Full.
    fn put_nowait(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>) -> PyResult<()> {
        Self::put(slf, item, Truthy(false), None)
    }

    /// Removes and returns the next item, waiting for one if the queue is empty.
    ///
    /// With `block` false, or once `timeout` seconds have passed, raises Empty instead of waiting.
    #[pyo3(signature = (block=Truthy(true), timeout=None))]
    fn get<'py>(
        slf: &Bound<'py, Self>,
        block: Truthy,
        timeout: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let waits_here = match &timeout {
            None => Some(None),
            Some(seconds) => seconds_to_wait(seconds).map(Some),
        };
        if let (true, Some(timeout)) = (block.0, waits_here) {
            let got = Self::get_blocking_raw(slf, timeout);
            // SAFETY: a new reference, or NULL with the exception set.
            return unsafe { Bound::from_owned_ptr_or_err(slf.py(), got) };
        }
        if Self::size(slf)? > 0 {
            return Self::pop(slf);
        }
        slf.call_method1(intern!(slf.py(), "_get_slow"), (block.0, timeout))
    }

    /// Removes and returns the next item if there is one, else raises Empty.
    fn get_nowait<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::get(slf, Truthy(false), None)
    }

    /// Stores an item that has a slot and wakes the first waiting getter (for the Python side's slow paths).
    fn _add(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>) -> PyResult<()> {
        Self::add(slf, item)
    }

    /// Removes the next item and wakes a putter for the freed slot (for the Python side's slow paths).
    fn _pop<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::pop(slf)
    }

    /// Wakes the first waiting putter if there is room and no woken putter is still to run.
    fn _wake_putter(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::wake_putter(slf)
    }

    /// Waits in line for a slot, then stores `item`; Full once `timeout` passes (see `put_waiting_raw`).
    #[pyo3(signature = (item, timeout=None))]
    fn _put_waiting(slf: &Bound<'_, Self>, item: Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<()> {
        // SAFETY: a new reference, or NULL with the exception set.
        unsafe { Bound::from_owned_ptr_or_err(slf.py(), Self::put_waiting_raw(slf, &item, timeout)) }.map(drop)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.getters)?;
        visit.call(&self.putters)?;
        if let Ok(Some(woken_box)) = self.woken_box.try_borrow().as_deref() {
            visit.call(woken_box)?;
        }
        if let Ok(queue) = self.queue.try_borrow() {
            match &*queue {
                Items::Native(items) => {
                    for item in items {
                        visit.call(item)?;
                    }
                }
                Items::Object(storage) => visit.call(storage)?,
            }
        }
        self.loop_.traverse(&visit)
    }

    /// Drops the loop, the woken putter's box and the items held here; a storage object is a container the
    /// collector clears itself.
    fn __clear__(&self) {
        self.loop_.clear();
        let woken_box = self.woken_box.try_borrow_mut().map(|mut b| b.take());
        drop(woken_box);
        let held = self.queue.try_borrow_mut().map(|mut queue| match &mut *queue {
            Items::Native(items) => std::mem::take(items),
            Items::Object(_) => VecDeque::new(),
        });
        drop(held);
    }
}

/// PyO3's `put` and `get`, for the call shapes the fast entries pass on.
static GENERAL_PUT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static GENERAL_GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const PUT_DOC: &CStr =
    c"put($self, item, block=..., timeout=None)\n--\n\nAdds `item`, waiting for a free slot if the queue \
is full.\n\nWith `block` false, or once `timeout` seconds have passed, raises Full instead of waiting.";
const GET_DOC: &CStr =
    c"get($self, block=..., timeout=None)\n--\n\nRemoves and returns the next item, waiting for one if \
the queue is empty.\n\nWith `block` false, or once `timeout` seconds have passed, raises Empty instead of waiting.";

/// Adds `ItemQueue`, with `put(item)` and `get()` as plain vectorcall methods (rust/vectorcall.rs): PyO3's
/// trampoline, argument parsing and `self` check cost about as much as a put or get of an unbounded queue. Every
/// other call shape goes to PyO3's methods.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<ItemQueue>()?;
    let cls = py.get_type::<ItemQueue>();
    vectorcall::install_method::<FastPut>(&cls, c"put", PUT_DOC)?;
    vectorcall::install_method::<FastGet>(&cls, c"get", GET_DOC)
}

/// `queue.put(item)`, taken by its vectorcall entry.
struct FastPut;

impl vectorcall::FastCall for FastPut {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &GENERAL_PUT;

    unsafe fn fast(py: Python<'_>, slf: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        (nargs == 1).then(|| {
            // SAFETY: per the trait's contract, `slf` is an ItemQueue and `args[0]` a borrowed reference.
            let (queue, item) = unsafe { (Bound::from_borrowed_ptr(py, slf), Bound::from_borrowed_ptr(py, *args)) };
            // SAFETY: `slf` is an ItemQueue (the method descriptor checked it).
            let queue = unsafe { queue.cast_into_unchecked::<ItemQueue>() };
            ItemQueue::put_raw(&queue, &item, true)
        })
    }
}

/// `queue.get()`, taken by its vectorcall entry.
struct FastGet;

impl vectorcall::FastCall for FastGet {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &GENERAL_GET;

    unsafe fn fast(py: Python<'_>, slf: Object, _: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        (nargs == 0).then(|| {
            // SAFETY: per the trait's contract, `slf` is an ItemQueue (the method descriptor checked it).
            let queue = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<ItemQueue>() };
            ItemQueue::get_blocking_raw(&queue, None)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Capacity;

    #[test]
    fn a_bound_admits_up_to_maxsize() {
        let capacity = Capacity { maxsize: 2 };
        assert!(capacity.has_room(0) && capacity.has_room(1));
        assert!(!capacity.has_room(2) && !capacity.has_room(3));
    }

    #[test]
    fn no_bound_always_has_room() {
        for maxsize in [0, -1] {
            assert!(Capacity { maxsize }.has_room(1_000_000));
        }
    }
}
