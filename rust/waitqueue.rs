//! `ferrovent._core.WaitQueue`: a FIFO line of greenlets parked in the loop, and of links (callbacks).
//!
//! Event, AsyncResult and the semaphores keep their waiters here, and so do a queue's getters and putters. A
//! waiting greenlet's entry holds the token of its park in the loop's `ParkingLot`; waking it is pushing a resume
//! with that token, so a whole line is woken with no Python call per greenlet, and a wake that arrives after the
//! greenlet left the wait some other way (a timeout, a kill) is dropped by the loop. A woken greenlet gets the
//! line itself as its wake value: anything else (a stray `loop.wake`) is not ours and the greenlet parks again.
//!
//! A link is any other object in the line (a `rawlink` callback, a thread's grant): waking it means handing it to
//! the caller's `schedule` callable, in line order, so links and greenlets run in the order they joined.
//!
//! Used under the GIL only; the line is never borrowed across a greenlet switch or a call into Python (entries are
//! moved out first, and objects are dropped after the borrow ends).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ffi::CStr;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::{PyTraverseError, PyVisit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyList;

use crate::event_loop::{address, InvalidThreadUseError, Loop};
use crate::ready::{Ready, Wake};
use crate::timers::Nanos;
use crate::vectorcall::{self, Arguments, Object};

/// One place in the line: a parked greenlet (with its park token) or a link, and what it carries.
pub(crate) struct Entry<T> {
    pub obj: T,
    /// The token the greenlet is parked under; None for a link.
    pub token: Option<u64>,
    /// What a waiting putter hands over when it is taken off the line.
    pub item: Option<T>,
}

/// The line's bookkeeping, free of Python so it can be tested on its own.
pub(crate) struct Line<T> {
    entries: VecDeque<Entry<T>>,
}

impl<T> Default for Line<T> {
    fn default() -> Self {
        Self { entries: VecDeque::new() }
    }
}

impl<T> Line<T> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, entry: Entry<T>, front: bool) {
        if front {
            self.entries.push_front(entry);
        } else {
            self.entries.push_back(entry);
        }
    }

    pub fn pop_front(&mut self) -> Option<Entry<T>> {
        self.entries.pop_front()
    }

    /// Whether the wait parked under `token` is still in line.
    pub fn holds(&self, token: u64) -> bool {
        self.entries.iter().any(|e| e.token == Some(token))
    }

    /// Takes the wait parked under `token` out of the line, wherever it is.
    pub fn remove_token(&mut self, token: u64) -> Option<Entry<T>> {
        let at = self.entries.iter().position(|e| e.token == Some(token))?;
        self.entries.remove(at)
    }

    /// Takes the entry at `index` out of the line.
    pub fn remove_at(&mut self, index: usize) -> Option<Entry<T>> {
        self.entries.remove(index)
    }

    /// Gives the wait parked under `old` its new token, keeping its place. False if it is not in line.
    pub fn retoken(&mut self, old: u64, new: u64) -> bool {
        match self.entries.iter_mut().find(|e| e.token == Some(old)) {
            Some(entry) => {
                entry.token = Some(new);
                true
            }
            None => false,
        }
    }

    /// Empties the line, returning everything it held in order.
    pub fn take_all(&mut self) -> VecDeque<Entry<T>> {
        std::mem::take(&mut self.entries)
    }

    /// Puts entries taken out earlier back at the front, ahead of anything that joined since, in their order.
    pub fn restore_front(&mut self, rest: Vec<Entry<T>>) {
        for entry in rest.into_iter().rev() {
            self.entries.push_front(entry);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry<T>> {
        self.entries.iter()
    }
}

type PyEntry = Entry<Py<PyAny>>;

/// How a wait in a line ended. After `Failed` the exception is set in the interpreter, not carried: see
/// `WaitQueue::wait_raw`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Waited {
    /// This line woke it (also when a timeout or a stray wake overtook that wake).
    Woken,
    TimedOut,
    /// An exception ended it; `lost` if this line had already taken it off for a wake, which it did not use.
    Failed {
        lost: bool,
    },
}

/// Where a wait stands after a wake: over, or parked again under a new token.
enum Step {
    Over(Waited),
    Again(u64),
}

/// The loop an object's waiters park in (None until the object is set up or owned), as queues and linkable
/// objects hold it.
#[derive(Default)]
pub(crate) struct LoopSlot(RefCell<Option<Py<Loop>>>);

impl LoopSlot {
    pub fn get(&self, py: Python<'_>) -> Option<Py<Loop>> {
        self.0.borrow().as_ref().map(|l| l.clone_ref(py))
    }

    pub fn set(&self, value: Option<Py<Loop>>) {
        let previous = self.0.replace(value);
        drop(previous); // after the borrow: releasing it may run Python code
    }

    /// Shows the loop to the garbage collector (unless the slot is being changed right now).
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self.0.try_borrow().as_deref() {
            Ok(Some(lp)) => visit.call(lp),
            _ => Ok(()),
        }
    }

    /// Drops the loop reference (the garbage collector breaking a cycle).
    pub fn clear(&self) {
        let previous = self.0.try_borrow_mut().map(|mut l| l.take());
        drop(previous);
    }
}

/// A FIFO line of parked greenlets and links; see the module documentation.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct WaitQueue {
    line: RefCell<Line<Py<PyAny>>>,
}

// SAFETY: the line is only touched with the GIL held (every entry point is a Python call), and no borrow of it is
// held across a call into Python or a GIL release, so the GIL serializes every access, even from another thread
// (a thread appending a link, or the garbage collector's traversal). ferrovent does not support free-threaded
// builds.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    pub(crate) fn new_empty() -> Self {
        Self { line: RefCell::new(Line::default()) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.line.borrow().is_empty()
    }

    /// Takes the first greenlet still parked under its token off the line, without waking it. Links met on the
    /// way are an error (the lines that use this hold greenlets only); stale entries are dropped.
    pub(crate) fn pop_parked(&self, py: Python<'_>, lp: &Loop) -> PyResult<Option<PyEntry>> {
        loop {
            let entry = self.line.borrow_mut().pop_front();
            let Some(entry) = entry else { return Ok(None) };
            match entry.token {
                Some(token) if is_parked(lp, entry.obj.bind(py), token) => return Ok(Some(entry)),
                Some(_) => drop(entry),
                None => {
                    self.line.borrow_mut().push(entry, true);
                    return Err(PyValueError::new_err("this line holds a link: wake it with a schedule callable"));
                }
            }
        }
    }

    /// Wakes the first greenlet in line (see `pop_parked`). False if none was waiting. Only from the loop's thread.
    pub(crate) fn wake_first(this: &Bound<'_, Self>, lp: &Loop) -> PyResult<bool> {
        lp.check_thread()?;
        match this.get().pop_parked(this.py(), lp)? {
            Some(entry) => {
                resume(this, lp, entry);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Parks the current greenlet in the line (at the back, or the front) until this line wakes it: true then,
    /// false once `timeout` passes. `item` rides along with the entry for whoever takes it off the line.
    ///
    /// A wake from this line that a timeout or a stray wake overtook still counts: the greenlet was taken off the
    /// line for it (true). A stray wake while still in line parks again for the time left. On an exception the
    /// entry leaves the line; if this line had already woken it, `on_lost()` is called, so the caller can pass
    /// the wake on.
    pub(crate) fn wait_current(
        this: &Bound<'_, Self>,
        loop_: &Bound<'_, Loop>,
        timeout: Option<f64>,
        front: bool,
        item: Option<Py<PyAny>>,
        on_lost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let waited = Self::wait_current_raw(this, loop_, timeout, front, item);
        Self::outcome(this.py(), waited, on_lost)
    }

    /// `wait_current` in the raw shape (see `wait_raw`).
    pub(crate) fn wait_current_raw(
        this: &Bound<'_, Self>,
        loop_: &Bound<'_, Loop>,
        timeout: Option<f64>,
        front: bool,
        item: Option<Py<PyAny>>,
    ) -> Waited {
        if !is_current_loop(loop_) {
            return Waited::Failed { lost: false };
        }
        Self::wait_raw(this, loop_.get(), timeout, front, item)
    }

    /// A raw wait's outcome as `wait_current` returns it, calling `on_lost` for a wake the error made it lose.
    #[inline(never)]
    pub(crate) fn outcome(py: Python<'_>, waited: Waited, on_lost: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        match waited {
            Waited::Woken => Ok(true),
            Waited::TimedOut => Ok(false),
            Waited::Failed { lost } => {
                let err = PyErr::fetch(py);
                match on_lost.filter(|_| lost).map(|f| f.call0()) {
                    Some(Err(secondary)) => {
                        secondary.set_cause(py, Some(err));
                        Err(secondary)
                    }
                    _ => Err(err),
                }
            }
        }
    }

    /// The wait of `wait_current` once the caller knows `lp` is the calling thread's current loop, shaped as `sleep` is (rust/wait.rs): the frames on the way to the switch stay on
    /// the parked greenlet's saved C stack, so this one holds only what the wait needs across the switch, joining
    /// the line and the work after each wake are out of line, and no `PyResult` is kept (after `Failed`, the
    /// exception is set in the interpreter).
    pub(crate) fn wait_raw(
        this: &Bound<'_, Self>,
        lp: &Loop,
        timeout: Option<f64>,
        front: bool,
        item: Option<Py<PyAny>>,
    ) -> Waited {
        let py = this.py();
        let Some((current, mut token, deadline)) = this.get().join_line(py, lp, timeout, front, item) else {
            return Waited::Failed { lost: false };
        };
        loop {
            let switched = lp.switch_to_next(py, &current);
            match Self::after_wake(this, lp, &current, token, deadline, switched) {
                Step::Over(waited) => return waited,
                Step::Again(renewed) => token = renewed,
            }
        }
    }

    /// Parks the current greenlet in the line: it, its token and its deadline; None, with the exception set, if
    /// it cannot wait (the hub).
    #[inline(never)]
    fn join_line<'py>(
        &self,
        py: Python<'py>,
        lp: &Loop,
        timeout: Option<f64>,
        front: bool,
        item: Option<Py<PyAny>>,
    ) -> Option<(Bound<'py, PyAny>, u64, Option<Nanos>)> {
        let current = match lp.current_waiter(py) {
            Ok(current) => current,
            Err(err) => {
                drop(item);
                err.restore(py);
                return None;
            }
        };
        let deadline = timeout.map(|seconds| lp.deadline_after(seconds));
        let token = lp.park_token(&current, None);
        self.line.borrow_mut().push(Entry { obj: current.clone().unbind(), token: Some(token), item }, front);
        if let Some(seconds) = timeout {
            lp.arm_timeout(&current, token, seconds, Wake::TimedOut, true);
        }
        Some((current, token, deadline))
    }

    /// What a wait does once its greenlet is resumed under `token`: it is over, or it parks again (a stray wake).
    #[inline(never)]
    fn after_wake(
        this: &Bound<'_, Self>,
        lp: &Loop,
        current: &Bound<'_, PyAny>,
        token: u64,
        deadline: Option<Nanos>,
        switched: bool,
    ) -> Step {
        let py = this.py();
        let me = this.get();
        let timed_out = match lp.resumed(py, current, token, switched) {
            Ok(Wake::Value(value)) if value.is(this) => return Step::Over(Waited::Woken),
            Ok(Wake::Raise(exc)) => return me.leave_after_error(py, token, PyErr::from_value(exc.into_bound(py))),
            Err(err) => return me.leave_after_error(py, token, err),
            Ok(Wake::TimedOut) => true,
            Ok(Wake::Value(stray)) => {
                drop(stray);
                false
            }
        };
        if !me.line.borrow().holds(token) {
            return Step::Over(Waited::Woken); // this line took us off for a wake the other one overtook
        }
        if timed_out {
            let entry = me.line.borrow_mut().remove_token(token);
            drop(entry);
            return Step::Over(Waited::TimedOut);
        }
        // A stray wake: wait again in the same place, for the time left.
        let renewed = lp.park_token(current, None);
        me.line.borrow_mut().retoken(token, renewed);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_sub(lp.clock()) as f64 / 1e9;
            lp.arm_timeout(current, renewed, left, Wake::TimedOut, true);
        }
        Step::Again(renewed)
    }

    /// Takes the wait parked under `token` out of the line after `err` ended it, and sets `err` as the exception.
    fn leave_after_error(&self, py: Python<'_>, token: u64, err: PyErr) -> Step {
        let entry = self.line.borrow_mut().remove_token(token);
        let lost = entry.is_none(); // a wake from this line had already taken it off
        drop(entry); // before the exception is set: releasing the item may run Python code
        err.restore(py);
        Step::Over(Waited::Failed { lost })
    }

    /// Finds the first entry equal to `target` (identity first, then `==`, as `deque.remove` does). Comparing can
    /// run Python code, so it compares a snapshot and returns the matching object, not a position.
    fn find_equal(&self, target: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let py = target.py();
        let snapshot: Vec<Py<PyAny>> = self.line.borrow().iter().map(|e| e.obj.clone_ref(py)).collect();
        if let Some(same) = snapshot.iter().find(|obj| obj.is(target)) {
            return Ok(Some(same.clone_ref(py)));
        }
        for obj in snapshot {
            if obj.bind(py).eq(target)? {
                return Ok(Some(obj));
            }
        }
        Ok(None)
    }
}

/// PyO3's `wait`, for the call shapes the fast entry passes on.
static GENERAL_WAIT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

const WAIT_DOC: &CStr = c"wait($self, loop, timeout=None, front=False, item=None, on_lost=None)\n--\n\nParks the \
current greenlet in the line until the line wakes it (True) or `timeout` passes (False).\nInvalidThreadUseError, \
before anything else, if `loop` is not the calling thread's current loop (the\ncaller then lets its hub take the \
object over). `front` queues it first; `item` is handed to whoever takes it off with `take_item`; `on_lost()` is \
called\nif it ends with an exception after the line had woken it (so the wake can be passed on).";

/// Adds `WaitQueue`, with `wait` as a plain vectorcall method (rust/vectorcall.rs) for its positional call shape:
/// its frames stay on every waiting greenlet's saved C stack, and PyO3's trampoline frame is about 340 bytes.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<WaitQueue>()?;
    let cls = py.get_type::<WaitQueue>();
    vectorcall::install_method::<FastWait>(&cls, c"wait", WAIT_DOC)
}

/// `line.wait(loop, timeout, front, item, on_lost)` with positional arguments only, `timeout` None or an exact
/// number and `front` exactly True or False, taken by its vectorcall entry.
struct FastWait;

impl vectorcall::FastCall for FastWait {
    const GENERAL: &'static PyOnceLock<Py<PyAny>> = &GENERAL_WAIT;

    unsafe fn fast(py: Python<'_>, slf: Object, args: Arguments, nargs: ffi::Py_ssize_t) -> Option<Object> {
        let nargs = usize::try_from(nargs).ok().filter(|n| (1..=5).contains(n))?;
        // SAFETY: per the trait's contract, `args` holds `nargs` borrowed references.
        let args = unsafe { std::slice::from_raw_parts(args, nargs) };
        // SAFETY: borrowed references, valid for the call; the GIL is held.
        let arg = |at: usize| args.get(at).map(|&obj| unsafe { Bound::from_borrowed_ptr(py, obj) });
        let loop_ = arg(0)?.cast_into::<Loop>().ok()?;
        let timeout = match args.get(1) {
            // SAFETY: a borrowed reference, valid for the call; the GIL is held.
            Some(&timeout) => unsafe { vectorcall::optional_seconds(timeout) }?,
            None => None,
        };
        let front = match args.get(2) {
            // SAFETY: the GIL is held.
            Some(&front) => unsafe { vectorcall::exact_bool(front) }?,
            None => false,
        };
        let item = arg(3).filter(|item| !item.is_none()).map(Bound::unbind);
        let on_lost = arg(4).filter(|on_lost| !on_lost.is_none());
        // SAFETY: `slf` is a WaitQueue (the method descriptor checked it).
        let this = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<WaitQueue>() };
        let waited = WaitQueue::wait_current_raw(&this, &loop_, timeout, front, item);
        Some(waited_result(py, waited, on_lost.as_ref()))
    }
}

/// A raw wait's outcome as an entry returns it: True, False, or NULL with the exception set.
#[inline(never)]
pub(crate) fn waited_result(py: Python<'_>, waited: Waited, on_lost: Option<&Bound<'_, PyAny>>) -> *mut ffi::PyObject {
    match WaitQueue::outcome(py, waited, on_lost) {
        Ok(woken) => vectorcall::bool_result(py, woken),
        Err(err) => {
            err.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Whether `loop_` is the calling thread's current loop; false, with InvalidThreadUseError (or the error of
/// finding the current loop) set, if not.
#[inline(never)]
fn is_current_loop(loop_: &Bound<'_, Loop>) -> bool {
    let py = loop_.py();
    match crate::current::get(py) {
        Ok(current) if current.is(loop_) => true,
        Ok(_) => {
            InvalidThreadUseError::new_err(
                "this object's waiters belong to another thread's hub (or to a destroyed one)",
            )
            .restore(py);
            false
        }
        Err(err) => {
            err.restore(py);
            false
        }
    }
}

/// Whether `greenlet` is still parked in `lp` under `token` (else a wake for it would be dropped).
fn is_parked(lp: &Loop, greenlet: &Bound<'_, PyAny>, token: u64) -> bool {
    lp.lot.borrow().token_of(address(greenlet)) == Some(token)
}

/// Queues the resume of a greenlet taken off `this` line, with the line as its wake value.
pub(crate) fn resume(this: &Bound<'_, WaitQueue>, lp: &Loop, entry: PyEntry) {
    let Entry { obj, token, item } = entry;
    if let Some(token) = token {
        let wake = Some(Wake::Value(this.clone().into_any().unbind()));
        lp.push_ready(Ready::Resume { greenlet: obj, token, wake });
    }
    drop(item);
}

#[pymethods]
impl WaitQueue {
    #[new]
    fn new() -> Self {
        Self::new_empty()
    }

    fn __len__(&self) -> usize {
        self.line.borrow().len()
    }

    fn __repr__(&self) -> String {
        format!("<WaitQueue of {}>", self.line.borrow().len())
    }

    /// Lines are equal when they hold the same objects in the same order (as deques of them would be).
    fn __eq__(&self, other: &Bound<'_, Self>) -> bool {
        let (mine, theirs) = (self.line.borrow(), other.get().line.borrow());
        mine.len() == theirs.len() && mine.iter().zip(theirs.iter()).all(|(a, b)| a.obj.is(&b.obj))
    }

    /// Adds a link (a callback or other non-greenlet object) at the back of the line.
    fn append(&self, link: Py<PyAny>) {
        self.line.borrow_mut().push(Entry { obj: link, token: None, item: None }, false);
    }

    /// Adds a link at the front of the line.
    fn appendleft(&self, link: Py<PyAny>) {
        self.line.borrow_mut().push(Entry { obj: link, token: None, item: None }, true);
    }

    /// Removes the first entry equal to `obj` (a link, or a waiting greenlet). False if there is none.
    fn remove(&self, obj: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Some(found) = self.find_equal(obj)? else { return Ok(false) };
        let removed = {
            let mut line = self.line.borrow_mut();
            let at = line.iter().position(|e| e.obj.is(&found));
            at.and_then(|at| line.remove_at(at))
        };
        Ok(removed.is_some())
    }

    /// Empties the line and returns what it held (greenlets and links), in order. The greenlets stay parked:
    /// the caller wakes them its own way (a queue's shutdown raises in them).
    fn pop_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let entries = self.line.borrow_mut().take_all();
        PyList::new(py, entries.into_iter().map(|e| e.obj))
    }

    /// Parks the current greenlet in the line until the line wakes it (True) or `timeout` passes (False).
    /// InvalidThreadUseError, before anything else, if `loop` is not the calling thread's current loop (the
    /// caller then lets its hub take the object over). `front` queues it first; `item` is handed to whoever takes it off with `take_item`; `on_lost()` is called
    /// if it ends with an exception after the line had woken it (so the wake can be passed on).
    #[pyo3(signature = (r#loop, timeout=None, front=false, item=None, on_lost=None))]
    fn wait(
        slf: &Bound<'_, Self>,
        r#loop: &Bound<'_, Loop>,
        timeout: Option<f64>,
        front: bool,
        item: Option<Py<PyAny>>,
        on_lost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Self::wait_current(slf, r#loop, timeout, front, item, on_lost)
    }

    /// Wakes every greenlet in line, in order, and hands every link to `schedule(link)` at its place in that
    /// order (a link in line twice is handed over once). Returns how many greenlets were woken. With no loop,
    /// only links can be waiting.
    fn wake_all(
        slf: &Bound<'_, Self>,
        r#loop: Option<&Bound<'_, Loop>>,
        schedule: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let py = slf.py();
        let lp = r#loop.map(Bound::get);
        if let Some(lp) = lp {
            lp.check_thread()?;
        }
        let entries = slf.get().line.borrow_mut().take_all();
        let mut woken = 0;
        let mut handed: Vec<usize> = Vec::new();
        let mut entries = entries.into_iter();
        while let Some(entry) = entries.next() {
            let outcome = match (entry.token, lp) {
                (Some(token), Some(lp)) => {
                    if is_parked(lp, entry.obj.bind(py), token) {
                        resume(slf, lp, entry);
                        woken += 1;
                    }
                    Ok(())
                }
                (Some(_), None) => {
                    Err((entry, PyRuntimeError::new_err("a greenlet waits in a line woken without a loop")))
                }
                (None, _) => {
                    let link = entry.obj.bind(py);
                    if handed.contains(&address(link)) {
                        Ok(())
                    } else {
                        handed.push(address(link));
                        schedule.call1((link,)).map(drop).map_err(|err| (entry, err))
                    }
                }
            };
            if let Err((entry, err)) = outcome {
                let mut rest = vec![entry];
                rest.extend(entries);
                slf.get().line.borrow_mut().restore_front(rest);
                return Err(err);
            }
        }
        Ok(woken)
    }

    /// Takes the first entry off the line: a parked greenlet is woken (True); a link is handed to
    /// `schedule(link)` (False). False too when the line is empty. Stale entries are dropped on the way.
    #[pyo3(signature = (r#loop, schedule=None))]
    fn wake_one(
        slf: &Bound<'_, Self>,
        r#loop: Option<&Bound<'_, Loop>>,
        schedule: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = slf.py();
        if let Some(lp) = r#loop {
            lp.get().check_thread()?;
        }
        loop {
            let entry = slf.get().line.borrow_mut().pop_front();
            let Some(entry) = entry else { return Ok(false) };
            match (entry.token, r#loop, schedule) {
                (Some(token), Some(lp), _) => {
                    let lp = lp.get();
                    if is_parked(lp, entry.obj.bind(py), token) {
                        resume(slf, lp, entry);
                        return Ok(true);
                    }
                }
                (None, _, Some(schedule)) => {
                    if let Err(err) = schedule.call1((entry.obj.bind(py),)) {
                        slf.get().line.borrow_mut().push(entry, true);
                        return Err(err);
                    }
                    return Ok(false);
                }
                (Some(_), None, _) | (None, _, None) => {
                    slf.get().line.borrow_mut().push(entry, true);
                    return Err(PyValueError::new_err(
                        "waking a greenlet needs a loop, and a link a schedule callable",
                    ));
                }
            }
        }
    }

    /// Takes the first waiting greenlet off the line, wakes it and returns the item it waited with (None if it had
    /// none). IndexError if no greenlet waits.
    fn take_item(slf: &Bound<'_, Self>, r#loop: &Bound<'_, Loop>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let lp = r#loop.get();
        lp.check_thread()?;
        let Some(mut entry) = slf.get().pop_parked(py, lp)? else {
            return Err(pyo3::exceptions::PyIndexError::new_err("no greenlet waits in this line"));
        };
        let item = entry.item.take().unwrap_or_else(|| py.None());
        resume(slf, lp, entry);
        Ok(item)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(line) = self.line.try_borrow() {
            for entry in line.iter() {
                visit.call(&entry.obj)?;
                if let Some(item) = &entry.item {
                    visit.call(item)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let entries = self.line.try_borrow_mut().map(|mut line| line.take_all());
        drop(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked(obj: &'static str, token: u64) -> Entry<&'static str> {
        Entry { obj, token: Some(token), item: None }
    }

    fn objs(line: &Line<&'static str>) -> Vec<&'static str> {
        line.iter().map(|e| e.obj).collect()
    }

    #[test]
    fn front_and_back_keep_fifo_order() {
        let mut line = Line::default();
        line.push(parked("a", 1), false);
        line.push(parked("b", 2), false);
        line.push(parked("front", 3), true);
        line.push(Entry { obj: "link", token: None, item: None }, false);
        assert_eq!(objs(&line), ["front", "a", "b", "link"]);
        assert_eq!(line.pop_front().map(|e| e.obj), Some("front"));
        assert_eq!(line.len(), 3);
    }

    #[test]
    fn a_wait_leaves_by_its_token_only() {
        let mut line = Line::default();
        line.push(parked("g", 1), false);
        line.push(Entry { obj: "link", token: None, item: None }, false);
        line.push(parked("g", 2), false); // the same greenlet, a later wait
        assert!(line.holds(2) && !line.holds(7));
        assert_eq!(line.remove_token(2).map(|e| e.obj), Some("g"));
        assert!(line.remove_token(2).is_none(), "a second removal finds nothing");
        assert_eq!(objs(&line), ["g", "link"]);
        assert!(line.holds(1));
    }

    #[test]
    fn a_renewed_wait_keeps_its_place() {
        let mut line = Line::default();
        for (obj, token) in [("a", 1), ("b", 2), ("c", 3)] {
            line.push(parked(obj, token), false);
        }
        assert!(line.retoken(2, 9));
        assert!(!line.retoken(2, 10), "the old token is gone");
        assert_eq!(objs(&line), ["a", "b", "c"]);
        assert!(line.holds(9) && !line.holds(2));
    }

    #[test]
    fn restored_entries_go_back_ahead_of_newcomers() {
        let mut line = Line::default();
        for (obj, token) in [("a", 1), ("b", 2), ("c", 3)] {
            line.push(parked(obj, token), false);
        }
        let mut taken = line.take_all().into_iter();
        assert!(line.is_empty());
        let first = taken.next();
        assert_eq!(first.map(|e| e.obj), Some("a"));
        line.push(parked("newcomer", 4), false);
        line.restore_front(taken.collect());
        assert_eq!(objs(&line), ["b", "c", "newcomer"]);
    }

    #[test]
    fn items_ride_with_their_entry() {
        let mut line = Line::default();
        line.push(Entry { obj: "putter", token: Some(1), item: Some("item") }, false);
        let entry = line.remove_at(0);
        assert_eq!(entry.and_then(|e| e.item), Some("item"));
        assert!(line.remove_at(0).is_none());
    }
}
