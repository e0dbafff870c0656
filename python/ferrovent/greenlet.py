"""Greenlet: a greenlet that runs a function in the hub's loop and keeps its result, exception and links.

Also the module-level waits (``joinall``, ``killall``, ``iwait``, ``wait``) and ``spawn_raw``. Each greenlet
knows the greenlet that created it (``spawning_greenlet``, a weak reference) and shares a dict with it
(``spawn_tree_locals``, made on first use), which ``ferrovent.util.GreenletTree`` shows; callbacks registered with
``Greenlet.add_spawn_callback`` see every Greenlet as it is started.
"""

from __future__ import annotations

import itertools
import operator
import sys
import time
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any, Callable
from weakref import ref

from greenlet import GreenletExit, getcurrent, greenlet

from ferrovent._core import TIMEOUT, build_greenlets_in_rust, greenlet_run, spawn_greenlet
from ferrovent._switches import switched_off
from ferrovent._waiter import MultipleWaiter
from ferrovent.hub import _hubs, get_hub
from ferrovent.timeout import Timeout, wait_bounded_by

if TYPE_CHECKING:
    import traceback
    from types import TracebackType

    from typing_extensions import Self, TypeAlias

    from ferrovent.hub import Loop

    # What ``kill`` and ``killall`` accept as ``exception``: a class, an instance, or a ``sys.exc_info()`` triple.
    KillException: TypeAlias = "type[BaseException] | BaseException | tuple[Any, Any, Any]"

__all__ = ["Greenlet", "joinall", "killall", "iwait", "wait", "spawn_raw"]

# Where a Greenlet is in its start: never started, scheduled, running or finished, or killed before it ran.
_SCHEDULED = "scheduled"
_RAN = "ran"
_CANCELLED = "cancelled"

_finish_counter = itertools.count(1)
_finish_order = operator.attrgetter("_finish_order")
_SUCCESS = (None, None, None)
_greenlet_dead = greenlet.dead.__get__  # greenlet's own `dead`, which Greenlet.dead extends


class _SpawnedLink:
    """Runs a `link` callback in a fresh greenlet, so the callback may block."""

    __slots__ = ("callback",)

    def __init__(self, callback):
        if not callable(callback):
            raise TypeError(f"Expected callable: {callback!r}")
        self.callback = callback

    def wanted(self, source):
        return True

    def __call__(self, source):
        if self.wanted(source):
            greenlet(self.callback, get_hub()).switch(source)

    def __eq__(self, other):
        return self.callback == getattr(other, "callback", other)

    def __hash__(self):
        return hash(self.callback)

    def __repr__(self):
        return repr(self.callback)


class _SuccessLink(_SpawnedLink):
    __slots__ = ()

    def wanted(self, source):
        return source.successful()


class _FailureLink(_SpawnedLink):
    __slots__ = ()

    def wanted(self, source):
        return not source.successful()


def _exception_args(exception):
    """Normalises kill()'s ``exception`` (class, instance or exc_info triple) to an instance to raise."""
    if isinstance(exception, tuple) and len(exception) == 3:
        _, value, tb = exception
        return value.with_traceback(tb) if tb is not None else value
    if isinstance(exception, type):
        return exception()
    return exception


class Greenlet(greenlet):
    """A greenlet that runs ``run(*args, **kwargs)`` once the loop schedules it, and keeps its outcome.

    ``Greenlet(run, *args, **kwargs)`` only creates it: ``start()`` (or the ``spawn`` class method, or
    ``ferrovent.spawn``) schedules it. Without ``run``, a subclass's ``_run`` method is called instead. When it
    finishes, ``value`` holds what the function returned (``exception`` what it raised, the hub having printed the
    error); ``get()`` returns or re-raises it, ``join()`` waits for it, and the links (``link``, ``rawlink``, ...)
    are called in the hub. Killing it with ``GreenletExit`` (``kill()``'s default) counts as a success, with the
    exception as its value. The object is true while it is started and not finished.

    Differences from gevent (``__slots__``, ``_run``, the shared Rust ``run``, ``spawning_stack_limit``): see
    docs/differences.md, sections "Greenlet" and "The smaller public names".

    Raises ``TypeError`` if ``run`` is given and not callable.
    """

    # Slots, not a per-instance dict: one object fewer per greenlet for the cyclic GC to track and traverse.
    # (A subclass that sets its own attributes still gets a dict, created on first use.)
    __slots__ = (
        "args",
        "_kwargs",
        "value",
        "_function",
        "_exc_info",
        "_start_state",
        "_start_timer",
        "_formatted_info",
        "_ident",
        "_name",
        "_links",
        "_links_scheduled",
        "_finish_order",
        "spawning_greenlet",
        "_tree_locals",
    )

    #: How many frames of the spawner's stack ``spawning_stack`` keeps (gevent keeps 10). 0, the default here,
    #: keeps none: taking them costs about a third of a spawn. A subclass (or this class) may set it.
    spawning_stack_limit = 0

    def __init__(self, run: Callable[..., Any] | None = None, *args: Any, **kwargs: Any) -> None:
        try:
            hub = _hubs.hub  # get_hub() without its frame, once the thread has a hub
        except AttributeError:
            hub = get_hub()
        self.parent = hub  # all greenlet.__init__ would do: `run` is this class's (Rust) method
        if run is not None and not callable(run):
            raise TypeError("The run argument or self._run must be callable")
        self._function = run  # None: run the (possibly overridden) _run method
        self.args = args
        self._kwargs = kwargs or None  # None until read: an empty dict per parked greenlet is 64 bytes for nothing
        self.value = None
        self._exc_info = None
        self._start_state = None
        self._start_timer = None
        # _formatted_info, _ident, _name and _tree_locals stay unset until first used: a slot never set is skipped
        # by every GC pass over the greenlet (a None one is visited).
        self._links = ()  # replaced by a list on the first link
        self._links_scheduled = False
        self._finish_order = 0  # when it became ready, among all Greenlets: joinall reports in this order
        spawner = getcurrent()
        #: A weak reference to the greenlet that created this one.
        self.spawning_greenlet = ref(spawner)
        if self.spawning_stack_limit:
            self.spawning_stack = _stack_summary(sys._getframe(1), self.spawning_stack_limit)

    # -- state ------------------------------------------------------------------------------------------

    def __bool__(self) -> bool:
        return self._start_state is not None and self._exc_info is None

    @property
    def started(self) -> bool:
        """True once scheduled to start and until it finishes."""
        return bool(self)

    @property
    def dead(self) -> bool:
        """True once it finished, or was killed before it could start; it will not run again."""
        if getcurrent() is self:
            return False
        return self._start_state is _CANCELLED or _greenlet_dead(self)

    def ready(self) -> bool:
        """True once it has finished (successfully or not)."""
        # `dead` inlined (unless a subclass has its own): joinall asks this of every greenlet, most still scheduled.
        if self._exc_info is not None:
            return True
        if type(self).dead is not _greenlet_dead_property:
            return self.dead
        if self._start_state is _CANCELLED:
            return getcurrent() is not self
        return _greenlet_dead(self)  # false for the running greenlet, as `dead` is

    def successful(self) -> bool:
        """True if it finished without an error (killing with GreenletExit counts as success)."""
        return self._exc_info is not None and self._exc_info[1] is None

    @property
    def exception(self) -> BaseException | None:
        """The exception it died with; None while it runs and after a success (``GreenletExit`` is a success)."""
        return self._exc_info[1] if self._exc_info is not None else None

    @property
    def exc_info(self) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
        """The ``(type, value, traceback)`` it died with, or None if it has not died of an exception."""
        info = self._exc_info
        if info is not None and info[0] is not None:
            return info
        return None

    @property
    def loop(self) -> Loop:
        """The loop of the hub it runs in (the hub of the thread that created it)."""
        return self.parent.loop

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments ``run`` is called with (emptied once it has run)."""
        kwargs = self._kwargs
        if kwargs is None:
            kwargs = self._kwargs = {}
        return kwargs

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self._kwargs = value

    @property
    def minimal_ident(self) -> int:
        """A small integer naming this greenlet, unique among the live greenlets of its hub (its parent)."""
        ident = getattr(self, "_ident", None)
        if ident is None:
            ident = self._ident = self.parent.ident_registry.get_ident(self)
        return ident

    @property
    def spawn_tree_locals(self) -> dict[Any, Any]:
        """A dict shared by every greenlet spawned, directly or not, from the same greenlet (the main greenlet
        excepted: each greenlet it spawns starts a tree of its own)."""
        shared = getattr(self, "_tree_locals", None)
        if shared is None:
            # Up the chain of spawners that have no dict yet (a loop: the chain may be long), then down it.
            chain = [self]
            spawner = self.spawning_greenlet()
            while isinstance(spawner, Greenlet) and getattr(spawner, "_tree_locals", None) is None:
                chain.append(spawner)
                spawner = spawner.spawning_greenlet()
            shared = spawner._tree_locals if isinstance(spawner, Greenlet) else _tree_locals_of_spawner(spawner)
            for glet in chain:
                glet._tree_locals = shared
        return shared

    @spawn_tree_locals.setter
    def spawn_tree_locals(self, value: dict[Any, Any]) -> None:
        self._tree_locals = value

    @property
    def spawning_stack(self) -> traceback.StackSummary | None:
        """The first frames of the spawner's stack when this greenlet was made (see ``spawning_stack_limit``), as
        a ``traceback.StackSummary``, or None."""
        return self.__dict__.get("spawning_stack") if hasattr(self, "__dict__") else None

    @spawning_stack.setter
    def spawning_stack(self, value: traceback.StackSummary | None) -> None:
        self.__dict__["spawning_stack"] = value

    @staticmethod
    def add_spawn_callback(callback: Callable[[Greenlet], object]) -> None:
        """Calls ``callback(greenlet)`` each time any Greenlet is started (``start``, ``start_later``, ``spawn``),
        before it is scheduled. Adding a callback twice registers it once."""
        global _spawn_callbacks
        if _spawn_callbacks is None:
            _spawn_callbacks = []
        if callback not in _spawn_callbacks:
            _spawn_callbacks.append(callback)

    @staticmethod
    def remove_spawn_callback(callback: Callable[[Greenlet], object]) -> None:
        """Removes a callback added with `add_spawn_callback` (nothing happens if it is not registered)."""
        global _spawn_callbacks
        if _spawn_callbacks is not None and callback in _spawn_callbacks:
            _spawn_callbacks.remove(callback)
            if not _spawn_callbacks:
                _spawn_callbacks = None

    @property
    def name(self) -> str:
        """The greenlet's name: ``Greenlet-N`` unless one was assigned."""
        return getattr(self, "_name", None) or f"Greenlet-{self.minimal_ident}"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __repr__(self):
        named = getattr(self, "_name", None) is not None or getattr(self, "_ident", None) is not None
        name = f' "{self.name}" ' if named else " "
        info = self._formatinfo()
        return f"<{type(self).__name__}{name}at {hex(id(self))}{': ' + info if info else ''}>"

    def _formatinfo(self):
        cached = getattr(self, "_formatted_info", None)
        if cached is not None:
            return cached
        func = self._function or self._run
        bound_to = getattr(func, "__self__", None)
        if bound_to is self:
            result = "_run"
        elif bound_to is not None:
            result = repr(func)
        else:
            result = getattr(func, "__name__", "") or repr(func)
        args = [repr(a)[:50] for a in self.args]
        args.extend(f"{k}={repr(v)[:50]}" for k, v in (self._kwargs or {}).items())
        if args:
            result += "(" + ", ".join(args) + ")"
        self._formatted_info = result
        return result

    # -- starting ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Schedules it to run in this loop iteration, after everything already ready. Does nothing if it was
        already started (or killed)."""
        if self._start_state is None:
            if _spawn_callbacks is not None:
                _call_spawn_callbacks(self)
            self._start_state = _SCHEDULED
            self.parent.loop.start(self)

    def start_later(self, seconds: float) -> None:
        """Schedules it to run ``seconds`` from now. Does nothing if it was already started (or killed)."""
        if self._start_state is None:
            if _spawn_callbacks is not None:
                _call_spawn_callbacks(self)
            self._start_state = _SCHEDULED
            self._start_timer = self.parent.loop.call_later(seconds, self.switch)

    # ``spawn(*args, **kwargs)``: creates a greenlet of this class with these arguments (``run`` first), starts it
    # and returns it. Rust (rust/greenlet_spawn.rs): ``cls(*args, **kwargs)`` then its ``start()``, without a
    # Python frame or a repacking of the arguments.
    spawn = classmethod(spawn_greenlet)

    @classmethod
    def spawn_later(cls, seconds: float, *args: Any, **kwargs: Any) -> Self:
        """Creates a greenlet of this class and starts it ``seconds`` from now; returns it at once.

        Raises ``TypeError`` if this is ``Greenlet`` itself and no function is given.
        """
        if cls is Greenlet and not args and "run" not in kwargs:
            raise TypeError("spawn_later needs a function to run")
        g = cls(*args, **kwargs)
        g.start_later(seconds)
        return g

    def _cancel_start(self):
        """Makes sure a scheduled start never happens. True if it had not happened yet."""
        if self._start_state is _RAN or self._start_state is _CANCELLED:
            return False
        if self._start_state is _SCHEDULED:
            loop = self.parent.loop
            if self._start_timer is not None:
                loop.cancel_timer(self._start_timer)
            else:
                loop.unpark(self)
        self._start_state = _CANCELLED
        self._free()
        return True

    # -- running ----------------------------------------------------------------------------------------

    # run() is Rust (rust/greenlet_run.rs), one callable shared by all Greenlets that works on the current one: it
    # calls _begin(), then the function with args and kwargs, then _returned(result) or _raised(exc_info). A
    # subclass may define its own run() and call this one with super().run().
    run = greenlet_run

    def _begin(self):
        self._start_state = _RAN
        return self._function or self._run

    def _returned(self, result):
        # Records the success, then frees as _free does, in one frame: every Greenlet that returns ends here, and one
        # killed with GreenletExit (a success, the exception its value).
        self._exc_info = _SUCCESS
        self.value = result
        self._finish_order = next(_finish_counter)
        try:
            if self._links:
                self._schedule_links()
        finally:
            self._function = None
            self.args = ()
            if self._kwargs:
                self._kwargs.clear()

    def _raised(self, exc_info):
        if isinstance(exc_info[1], GreenletExit):
            self._returned(exc_info[1])
            return
        try:
            self._exc_info = exc_info
            self._finish_order = next(_finish_counter)
            self._schedule_links()
            self.parent.handle_error(self, *exc_info)
        finally:
            self._free()

    def _run(self):
        """Subclasses may override this; by default the greenlet does nothing."""
        return None

    def _free(self):
        self._function = None
        self.args = ()
        if self._kwargs:
            self._kwargs.clear()

    # -- killing ----------------------------------------------------------------------------------------

    def throw(self, *args: Any) -> None:
        """Raises an exception (greenlet's ``throw`` arguments) in it right now; call from the hub. Use ``kill()``
        from anywhere else. One not started yet never runs and dies of that exception."""
        killed_early = self._cancel_start()
        try:
            if not killed_early and not self.dead:
                greenlet.throw(self, *args)
        finally:
            if killed_early:
                self._die_before_start(_exception_args(args[0] if len(args) == 1 else args or GreenletExit))

    def _die_before_start(self, exception):
        if self._exc_info is None:
            self._raised((type(exception), exception, None))

    def kill(self, exception: KillException = GreenletExit, block: bool = True, timeout: float | None = None) -> None:
        """Raises ``exception`` in it and, if ``block``, waits (up to ``timeout`` seconds) until it is dead.

        ``exception`` is a class, an instance or a ``sys.exc_info()`` triple. The exception is delivered by the hub,
        so a non-blocking kill returns before it lands. Killing a finished greenlet does nothing; one killed before
        it started never runs, and its links still fire. Passing the timeout does not raise: check ``dead``.
        """
        exc = _exception_args(exception)
        if self._cancel_start():
            self._die_before_start(exc)
            return
        if self.ready():
            return
        self.parent.loop.throw(self, exc)
        if block:
            self.join(timeout)

    # -- waiting ----------------------------------------------------------------------------------------

    def join(self, timeout: float | Timeout | None = None) -> None:
        """Waits until it finishes or ``timeout`` (seconds, or a Timeout instance) passes. Returns None either way,
        and never raises the greenlet's exception (``get()`` does)."""
        if isinstance(timeout, Timeout):
            wait_bounded_by(timeout, self._wait_finished_forever, False)
        else:
            self._wait_finished(timeout)

    def get(self, block: bool = True, timeout: float | Timeout | None = None) -> Any:
        """Returns its value, or re-raises its exception with the original traceback.

        If it is not finished: with ``block`` false raises ``Timeout`` at once; else waits, raising ``Timeout``
        after ``timeout`` seconds (or the given ``Timeout`` instance when it expires).
        """
        if not self.ready():
            if not block:
                raise Timeout()
            if isinstance(timeout, Timeout):
                wait_bounded_by(timeout, self._wait_finished_forever)
            elif not self._wait_finished(timeout):
                raise Timeout(timeout)
        if self.successful():
            return self.value
        self._raise_exception()

    def __await__(self):
        """``await greenlet`` in a coroutine waits for it (``ferrovent.asyncio.wait_greenlet``)."""
        from ferrovent.asyncio import wait_greenlet  # imported late: only asyncio users need it

        return wait_greenlet(self).__await__()

    def _wait_finished(self, timeout):
        """Parks until it has finished (True) or ``timeout`` passes (False). A wake meant for something else
        does not end the wait."""
        if self.ready():
            return True
        waiter = getcurrent()
        self._add_link(waiter)
        park = self.parent.loop.park
        try:
            if timeout is None:
                while not self.ready():
                    park()
                return True
            deadline = time.monotonic() + timeout
            while not self.ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or park(remaining) is TIMEOUT:
                    return self.ready()
            return True
        finally:
            self._unlink_waiter(waiter)

    def _wait_finished_forever(self):
        return self._wait_finished(None)

    def _raise_exception(self):
        _, value, tb = self._exc_info
        raise value.with_traceback(tb)

    def _add_link(self, link):
        if self._links:
            self._links.append(link)
        else:
            self._links = [link]

    def _unlink_waiter(self, waiter):
        links = self._links
        if links:  # else () (never linked, or unlink_all): nothing to remove
            try:
                links.remove(waiter)
            except ValueError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        if t is None:
            try:
                self.join()
            finally:
                self.kill()
        else:
            self.kill((t, v, tb))

    # -- links ------------------------------------------------------------------------------------------

    def has_links(self) -> int:
        """How many callbacks and waiters are linked (true if any)."""
        return len(self._links)

    def rawlink(self, callback: Callable[[Greenlet], object]) -> None:
        """Calls ``callback(self)`` in the hub when it finishes (at once if it already has). Must not block."""
        if not callable(callback):
            raise TypeError(f"Expected callable: {callback!r}")
        self._add_link(callback)
        if self.ready():
            self._schedule_links()

    def link(self, callback: Callable[[Greenlet], object]) -> None:
        """Calls ``callback(self)`` in a new greenlet when it finishes (at once if it already has); the callback
        may block. Raises ``TypeError`` if ``callback`` is not callable."""
        self.rawlink(_SpawnedLink(callback))

    def link_value(self, callback: Callable[[Greenlet], object]) -> None:
        """As link(), only if it finishes successfully."""
        self.rawlink(_SuccessLink(callback))

    def link_exception(self, callback: Callable[[Greenlet], object]) -> None:
        """As link(), only if it dies with an exception."""
        self.rawlink(_FailureLink(callback))

    def unlink(self, callback: Callable[[Greenlet], object]) -> None:
        """Removes a callback added by ``link()``, ``link_value()``, ``link_exception()`` or ``rawlink()``; nothing
        happens if it is not linked."""
        self._unlink_waiter(callback)

    def unlink_all(self) -> None:
        """Removes every linked callback (and wakes no waiter: a greenlet in ``join()`` keeps waiting)."""
        self._links = ()

    def _schedule_links(self):
        if self._links and not self._links_scheduled:
            self._links_scheduled = True
            self.parent.loop.run_callback(self._notify_links)

    def _notify_links(self):
        self._links_scheduled = False
        links = self._links
        loop = self.parent.loop
        while links:
            link = links.pop(0)
            if isinstance(link, greenlet):  # a greenlet blocked in join()/get()
                loop.wake(link, self)
                continue
            try:
                link(self)
            except BaseException:
                self.parent.handle_error((link, self), *sys.exc_info())


_greenlet_dead_property = Greenlet.dead  # what ready() inlines

# Greenlet.spawn builds and starts a greenlet of a class vouched for here without calling it or its start method
# (rust/greenlet_new.rs): it stores what Greenlet.__init__ and Greenlet.start assign straight into the slots. These
# are the names they call, set or read on the new greenlet; each must resolve on the class as it did on Greenlet
# when this module was imported.
_SPAWN_NAMES = (
    "__new__",
    "__init__",
    "start",
    "__setattr__",
    "__getattribute__",
    "parent",
    "_function",
    "args",
    "_kwargs",
    "value",
    "_exc_info",
    "_start_state",
    "_start_timer",
    "_links",
    "_links_scheduled",
    "_finish_order",
    "spawning_greenlet",
)
# The Python versions whose slot descriptors and class version tags the Rust build was checked against.
_BUILD_PYTHONS = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))


def _class_lookup(cls, name):
    """What ``name`` resolves to on ``cls`` itself (its MRO's first definition), without calling a descriptor."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


_AS_IMPORTED = {name: _class_lookup(Greenlet, name) for name in _SPAWN_NAMES}


def _assigns_as_greenlet(cls: type) -> bool:
    """Whether ``cls.__init__`` and ``start``, run on a new ``cls``, do exactly what Greenlet's do on a new Greenlet,
    so that Rust may do it instead: a plain class (metaclass ``type``) deriving from Greenlet, keeping Greenlet's
    ``__new__``, ``__init__``, ``start`` and attribute access, every attribute they assign one of Greenlet's slots,
    and no spawning stack to take. Rust asks again whenever the class, or one of its bases, changes."""
    if type(cls) is not type or not issubclass(cls, Greenlet):
        return False
    limit = _class_lookup(cls, "spawning_stack_limit")
    if type(limit) not in (int, bool) or limit:
        return False
    return all(_class_lookup(cls, name) is _AS_IMPORTED[name] for name in _SPAWN_NAMES)


def _build_in_rust_allowed() -> bool:
    free_threaded = "t" in getattr(sys, "abiflags", "")
    return (
        not switched_off("FERROVENT_GREENLET_FAST")
        and sys.implementation.name == "cpython"
        and not free_threaded
        and sys.version_info[:2] in _BUILD_PYTHONS
        and greenlet.__module__ == "greenlet"
        and _greenlet_version_major() == 3
    )


def _greenlet_version_major() -> int:
    import greenlet as greenlet_module  # the package, for its version (this module's `greenlet` is the class)

    return int(greenlet_module.__version__.split(".")[0])


#: Whether Greenlet.spawn builds and starts greenlets without running Greenlet.__init__ and start (see
#: _assigns_as_greenlet).
BUILT_IN_RUST = _build_in_rust_allowed() and build_greenlets_in_rust(Greenlet, globals())

_spawn_callbacks = None  # the callbacks of Greenlet.add_spawn_callback, in the order added; None when there are none


def _call_spawn_callbacks(starting):
    for callback in list(_spawn_callbacks):
        callback(starting)


def _tree_locals_of_spawner(spawner):
    """The spawn-tree dict a greenlet made by ``spawner`` shares (a new one if ``spawner`` is a main greenlet or
    gone); a plain greenlet spawner gets it as its attribute, as a Greenlet has it as a property."""
    if spawner is None or spawner.parent is None:
        return {}
    try:
        return spawner.spawn_tree_locals
    except AttributeError:
        shared = spawner.spawn_tree_locals = {}
        return shared


def _stack_summary(frame, limit):
    import traceback  # imported late: only spawns that keep their spawner's stack need it

    return traceback.StackSummary.extract(traceback.walk_stack(frame), limit=limit, lookup_lines=False)


def spawn_raw(function: Callable[..., object], *args: Any, **kwargs: Any) -> greenlet:
    """Schedules ``function(*args, **kwargs)`` in a plain greenlet (no result kept, no links) and returns it: the
    cheapest spawn. What the function raises is printed by the hub. Raises ``TypeError`` if it is not callable."""
    if not callable(function):
        raise TypeError("function must be callable")
    hub = get_hub()
    if args or kwargs:
        g = greenlet(lambda: function(*args, **kwargs), hub)
    else:
        g = greenlet(function, hub)
    spawner = getcurrent()
    g.spawning_greenlet = ref(spawner)
    g.spawn_tree_locals = _tree_locals_of_spawner(spawner)
    hub.loop.start(g)
    return g


_TIMED_OUT = object()  # what iwait's timer hands its waiter


class _ReadyIterator:
    """What `iwait` returns: an iterator that is also a context manager, whose exit stops the waiting (unlinks
    every object) even if the iteration was left early."""

    __slots__ = ("_items",)

    def __init__(self, items: Generator[Any, None, None]) -> None:
        self._items = items

    def __iter__(self) -> _ReadyIterator:
        return self

    def __next__(self) -> Any:
        return next(self._items)

    def __enter__(self) -> _ReadyIterator:
        return self

    def __exit__(self, t: object, v: object, tb: object) -> None:
        self._items.close()


def iwait(objects: Iterable[Any] | None, timeout: float | None = None, count: int | None = None) -> _ReadyIterator:
    """Yields each of ``objects`` (greenlets, events, anything with ``rawlink``/``unlink``) as it becomes ready.

    Stops after ``count`` objects, or when ``timeout`` seconds have passed since the first call, silently (no
    ``Timeout`` is raised). Usable as a context manager (``with iwait(objects) as ready: ...``), whose exit stops
    waiting for the rest. With ``objects`` None, waits for the loop to run out of work, as ``wait(None)``.
    """
    return _ReadyIterator(_iter_ready(objects, timeout, count))


def _iter_ready(objects, timeout, count):
    if objects is None:
        yield get_hub().join(timeout=timeout)
        return
    objects = list(objects)
    count = len(objects) if count is None else min(count, len(objects))
    if count <= 0:
        return
    hub = get_hub()
    # Every object is linked, ready or not, so they arrive in the order the hub notifies them; each notification
    # resumes the iterating greenlet at once, from the hub, as gevent's does.
    arrivals = MultipleWaiter(hub)
    arrive = arrivals.switch
    for obj in objects:
        obj.rawlink(arrive)
    timer = None if timeout is None else hub.loop.call_later(timeout, arrive, _TIMED_OUT)
    try:
        for _ in range(count):
            obj = arrivals.get()
            arrivals.clear()
            if obj is _TIMED_OUT:
                return
            yield obj
    finally:
        if timer is not None:
            hub.loop.cancel_timer(timer)
        for obj in objects:
            obj.unlink(arrive)


def wait(
    objects: Iterable[Any] | None = None, timeout: float | None = None, count: int | None = None
) -> list[Any] | bool:
    """Waits for ``objects`` as ``iwait`` does and returns the list of those that became ready, in that order.

    With ``objects`` None, waits (up to ``timeout``) for the loop to have nothing left to run and returns whether
    it did (``Hub.join``).
    """
    if objects is None:
        return get_hub().join(timeout=timeout)
    return list(iwait(objects, timeout, count))


def joinall(
    greenlets: Iterable[Greenlet], timeout: float | None = None, raise_error: bool = False, count: int | None = None
) -> list[Greenlet]:
    """Waits for the greenlets to finish (all, or the first ``count``); returns those that did, in the order they
    finished, those already finished first.

    Passing ``timeout`` seconds is not an error: the list is shorter. With ``raise_error``, re-raises the first
    failure as soon as it is seen.
    """
    greenlets = list(greenlets)
    if raise_error or count is not None or not all(map(isinstance, greenlets, itertools.repeat(Greenlet))):
        return _join_as_they_finish(greenlets, timeout, raise_error, count)
    # Joining each in turn parks at most once per greenlet still running, with no link per greenlet. The result
    # is put in iwait's order: those finished before the call first, as given, then the rest by finish time.
    finished_before = []
    running = []
    for g in greenlets:
        (finished_before if g.ready() else running).append(g)
    if timeout is None:
        for g in running:
            # Most finish while an earlier one is joined: a finished one is seen without a call.
            if g._exc_info is None and not g.ready():
                g.join()
        finished_since = running
    else:
        deadline = time.monotonic() + timeout
        for g in running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            g.join(remaining)
        finished_since = [g for g in running if g.ready()]
    return finished_before + sorted(finished_since, key=_finish_order)


def _join_as_they_finish(greenlets, timeout, raise_error, count):
    if not raise_error:
        return wait(greenlets, timeout=timeout, count=count)
    done = []
    for g in iwait(greenlets, timeout=timeout, count=count):
        if getattr(g, "exception", None) is not None:
            if hasattr(g, "_raise_exception"):
                g._raise_exception()
            raise g.exception
        done.append(g)
    return done


def killall(
    greenlets: Iterable[greenlet],
    exception: KillException = GreenletExit,
    block: bool = True,
    timeout: float | None = None,
) -> None:
    """Kills every greenlet in ``greenlets`` (as ``Greenlet.kill``); with ``block``, waits (up to ``timeout``
    seconds) until all are dead.

    Raises ``Timeout`` if ``timeout`` passes with some still alive.
    """
    greenlets = list(greenlets)
    if not greenlets:
        return
    exc = _exception_args(exception)
    loop = get_hub().loop
    alive = []
    for g in greenlets:
        if isinstance(g, Greenlet) and g._cancel_start():
            g._die_before_start(exc)
        elif not g.dead:
            loop.throw(g, exc)
            if isinstance(g, Greenlet):
                alive.append(g)
    if block and alive:
        t = Timeout._start_new_or_dummy(timeout)
        try:
            joinall(alive)
        finally:
            t.cancel()
