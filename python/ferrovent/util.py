"""Small utilities: ``wrap_errors`` (return chosen exceptions instead of raising them); for debugging a stuck
program, ``format_run_info`` / ``print_run_info`` (every thread's stack, and every greenlet as a `GreenletTree`:
who spawned whom, parents, stacks, spawn-tree and greenlet locals); ``assert_switches`` (fail a block of code that
does not yield to other greenlets); ``clear_stack_frames``."""

from __future__ import annotations

import functools
import gc
import pprint
import sys
import threading
import traceback
from _thread import get_ident
from time import perf_counter
from types import TracebackType
from typing import IO, Any, Callable, Optional, Union

from greenlet import getcurrent, greenlet

__all__ = [
    "wrap_errors",
    "format_run_info",
    "print_run_info",
    "GreenletTree",
    "assert_switches",
    "clear_stack_frames",
]

_RULE = "*" * 80


class wrap_errors:
    """Wraps ``func`` so that the exceptions in ``errors`` are returned instead of raised.

    Useful for a greenlet whose expected failures should not be reported as errors by the hub:
    ``spawn(wrap_errors((OSError, ValueError), fetch), url)``. ``str``, ``repr`` and other attributes are the
    wrapped function's.
    """

    def __init__(
        self, errors: Union[type[BaseException], tuple[type[BaseException], ...]], func: Callable[..., Any]
    ) -> None:
        self.__errors = errors
        self.__func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__func(*args, **kwargs)
        except self.__errors as ex:
            return ex

    def __str__(self) -> str:
        return str(self.__func)

    def __repr__(self) -> str:
        return repr(self.__func)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func, name)


def _describe(glet: Any) -> str:
    try:
        return repr(glet)
    except Exception:  # a broken __repr__ must not stop the dump
        return object.__repr__(glet)


def _format_threads(lines: list[str], thread_stacks: bool, limit: Optional[int], current_ident: int) -> None:
    lines += [_RULE, "* Threads"]
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        current = ") (CURRENT" if ident == current_ident else ""
        lines += [_RULE, f"Thread 0x{ident:x} ({names.get(ident)}{current})\n"]
        lines.append("".join(traceback.format_stack(frame, limit)) if thread_stacks else "\t...stack elided...")


def format_run_info(
    thread_stacks: bool = True,
    greenlet_stacks: bool = True,
    limit: Optional[int] = None,
    current_thread_ident: Optional[int] = None,
) -> list[str]:
    """Lines describing every OS thread (with its stack) and every greenlet (state, parent and stack).

    Greenlets are found through the garbage collector, so none is missed. ``limit`` is passed to
    ``traceback.format_stack``. The output is for people; its exact form may change.
    """
    lines: list[str] = []
    _format_threads(lines, thread_stacks, limit, get_ident() if current_thread_ident is None else current_thread_ident)
    lines += [_RULE, "* Greenlets", _RULE]
    for tree in sorted(GreenletTree.forest(), key=lambda tree: "" if tree.is_current_tree else repr(tree.greenlet)):
        lines.append("---- Thread boundary")
        running = greenlet_stacks and tree.is_current_tree  # another thread's stacks are not ours to read
        lines.extend(tree.format_lines({"running_stacks": running, "running_stack_limit": limit}))
    return lines


def print_run_info(
    thread_stacks: bool = True,
    greenlet_stacks: bool = True,
    limit: Optional[int] = None,
    file: Optional[IO[str]] = None,
) -> None:
    """Prints ``format_run_info()`` to ``file`` (default: stderr)."""
    stream = sys.stderr if file is None else file
    for line in format_run_info(thread_stacks, greenlet_stacks, limit):
        print(line, file=stream)


def _finished() -> bool:
    return False


class _Layout:
    """What one node of a GreenletTree says: its label, then its data lines (kept only when details are shown).
    `GreenletTree._render` places them, with the rails and columns of the node's ancestry in front."""

    def __init__(self, details: dict, locals_by_greenlet: Optional[dict] = None) -> None:
        self.lines: list[str] = []
        self.details = details
        #: Every greenlet's `local` dicts, by id, gathered once for the whole tree (one heap walk, not one per node).
        self.locals_by_greenlet = locals_by_greenlet

    def label(self, text: str) -> None:
        self.lines.append(text)

    def data(self, text: str) -> None:
        if self.details:
            self.lines.append(text)

    def multidata(self, text: str) -> None:
        for line in text.splitlines():
            self.data(line)


class GreenletTree:
    """The greenlets of a thread arranged by who spawned whom (``spawning_greenlet``; a greenlet with no known
    spawner hangs from its thread's main greenlet). ``str()`` is the bare tree; `format` adds details (parents,
    running and spawning stacks, spawn-tree locals, greenlet locals). `forest` has a tree per thread, and
    `current_tree` the calling thread's. The output is for people; its exact form may change.
    """

    #: What `format` shows, unless told otherwise.
    DEFAULT_DETAILS = {"running_stacks": True, "running_stack_limit": None, "spawning_stacks": True, "locals": True}

    is_current_tree = False

    def __init__(self, glet: Any) -> None:
        self.greenlet = glet
        self.child_trees: list[GreenletTree] = []

    def add_child(self, tree: GreenletTree) -> None:
        """Adds ``tree`` below this one (a tree is never its own child)."""
        if tree is not self:
            self.child_trees.append(tree)

    @property
    def root(self) -> bool:
        """True for a thread's main greenlet."""
        return self.greenlet.parent is None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.greenlet, name)

    def format_lines(self, details: Union[bool, dict] = True) -> list[str]:
        """The tree's lines; ``details`` true for `DEFAULT_DETAILS`, a dict to override some, false for none."""
        if isinstance(details, dict):
            details = {**self.DEFAULT_DETAILS, **details}
        else:
            details = dict(self.DEFAULT_DETAILS) if details else {}
        found_locals = None
        if details.get("locals"):
            from ferrovent.local import local_dicts_by_greenlet  # imported late: a debugging path

            found_locals = local_dicts_by_greenlet()
        return self._render(details, found_locals)

    def format(self, details: Union[bool, dict] = True) -> str:
        """`format_lines` as one string."""
        return "\n".join(self.format_lines(details))

    def __str__(self) -> str:
        return self.format(False)

    def _label(self) -> str:
        glet = self.greenlet
        label = _describe(glet)
        if not glet:  # not running: finished or never started
            if getattr(glet, "ready", _finished)():
                label += "; finished"
                if getattr(glet, "value", None) is not None:
                    label += " with value " + repr(glet.value)[:30]
                elif getattr(glet, "exception", None) is not None:
                    label += " with exception " + repr(glet.exception)
            else:
                label += "; not running"
        return label

    def _render(self, details: dict, locals_by_greenlet: Optional[dict]) -> list[str]:
        # Pre-order with a list of pending nodes, not recursion: a chain of spawners deeper than the recursion
        # limit still renders. A child's label hangs from a "+---" after its ancestors' rails ("|" while an
        # ancestor has later siblings); data lines are indented a column per level, and the top level's column
        # is ":" while that top-level branch has later siblings.
        lines = []
        pending = [(self, 0, "", "", ":")]  # (tree, depth, before its label, its rails, its top-level column)
        while pending:
            tree, depth, before_label, rails, column = pending.pop()
            node = _Layout(details, locals_by_greenlet)
            tree._render_node(node)
            label, *data = node.lines
            lines.append(before_label + label)
            data_prefix = f" {column}    " + "      " * depth
            lines.extend(data_prefix + text for text in data)
            children = tree._sorted_children()
            for index in reversed(range(len(children))):
                last = index == len(children) - 1
                child_column = (" " if last else ":") if depth == 0 else column
                child_rails = rails + f" {' ' if last else '|'}   "
                pending.append((children[index], depth + 1, rails + " +--- ", child_rails, child_column))
        return lines

    def _render_node(self, layout: _Layout) -> None:
        """This node's label and data lines, without its children."""
        glet = self.greenlet
        details = layout.details
        layout.label(self._label())
        layout.data("Parent: " + _describe(glet.parent))
        if glet and details.get("running_stacks") and glet.gr_frame is not None:
            layout.data("Running:")
            layout.multidata("".join(traceback.format_stack(glet.gr_frame, details.get("running_stack_limit"))))
        spawning_stack = getattr(glet, "spawning_stack", None)
        if spawning_stack and details.get("spawning_stacks"):
            layout.data("Spawned at:")
            layout.multidata("".join(spawning_stack.format()))
        tree_locals = getattr(glet, "spawn_tree_locals", None)
        if tree_locals and tree_locals is not getattr(_spawner(glet), "spawn_tree_locals", None):
            layout.data("Spawn Tree Locals")
            layout.multidata(pprint.pformat(tree_locals))
        if details.get("locals"):
            self._render_locals(layout)

    def _sorted_children(self) -> list:
        return sorted(
            self.child_trees,
            key=lambda tree: (
                getattr(tree.greenlet, "minimal_ident", -1),
                getattr(tree.greenlet, "ready", _finished)(),
            ),
        )

    def _render_locals(self, layout: _Layout) -> None:
        by_greenlet = layout.locals_by_greenlet or {}
        found = [(kind, values) for kind, values in by_greenlet.get(id(self.greenlet), []) if values]
        if found:
            layout.data("Greenlet Locals:")
            for (kind, ident), values in found:
                layout.data(f"  Local {kind} at {hex(ident)}")
                layout.multidata("    " + pprint.pformat(values))

    @classmethod
    def _forest(cls) -> tuple[dict, GreenletTree]:
        main = _tree_root(getcurrent())
        trees = {main: cls(main)}
        roots = {main: trees[main]}
        trees[main].is_current_tree = True
        for glet in _reachable_greenlets():
            spawner = _spawner(glet)
            if spawner is None:
                spawner = _tree_root(glet)
            if spawner not in trees:
                trees[spawner] = cls(spawner)
                if spawner is _tree_root(spawner):
                    roots[spawner] = trees[spawner]
            if glet not in trees:
                trees[glet] = cls(glet)
            trees[spawner].add_child(trees[glet])
        return roots, trees[main]

    @classmethod
    def forest(cls) -> list[GreenletTree]:
        """One tree per thread that has greenlets."""
        return list(cls._forest()[0].values())

    @classmethod
    def current_tree(cls) -> GreenletTree:
        """The calling thread's tree."""
        return cls._forest()[1]


def _spawner(glet: Any) -> Any:
    spawning = getattr(glet, "spawning_greenlet", None)
    return spawning() if spawning is not None else None


def _tree_root(glet: Any) -> Any:
    """A thread's main greenlet, or the nearest ancestor marked ``greenlet_tree_is_root``."""
    while glet.parent is not None and not getattr(glet, "greenlet_tree_is_root", False):
        glet = glet.parent
    return glet


def _reachable_greenlets() -> list:
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, greenlet) and not getattr(obj, "greenlet_tree_is_ignored", False)
    ]


class _FailedToSwitch(AssertionError):
    """Raised by `assert_switches` when its block did not switch as required."""


class assert_switches:
    """A context manager that fails (AssertionError) if its block does not let other greenlets run.

    With no ``max_blocking_time``, the block must switch at least once. With one, the block may run that many
    seconds without switching: between any two switches (``hub_only`` false) or between visits to the hub
    (``hub_only`` true). An exception from the block passes through unchanged. The tracer used is ``.tracer``.
    """

    def __init__(self, max_blocking_time: Optional[float] = None, hub_only: bool = False) -> None:
        self.max_blocking_time = max_blocking_time
        self.hub_only = hub_only
        self.hub = None
        self.tracer = None
        self._entered = None

    def __enter__(self) -> assert_switches:
        from ferrovent import _tracer
        from ferrovent.hub import get_hub

        self.hub = hub = get_hub()
        if not self.max_blocking_time:
            self.tracer = _tracer.GreenletTracer()
        elif self.hub_only:
            self.tracer = _tracer.HubSwitchTracer(hub, self.max_blocking_time)
        else:
            self.tracer = _tracer.MaxSwitchTracer(hub, self.max_blocking_time)
        self._entered = perf_counter()
        self.tracer.monitor_current_greenlet_blocking()
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        tracer, hub = self.tracer, self.hub
        tracer.kill()
        self.tracer = self.hub = None
        if t is not None:
            return
        blocked = tracer.did_block_hub(hub)
        if not blocked:
            return
        elapsed = perf_counter() - self._entered
        message = "To the hub" if self.hub_only else "To any greenlet"
        message += f" in {elapsed:.4f} seconds"
        if self.max_blocking_time:
            message += f" (max allowed {self.max_blocking_time:.4f} seconds)"
        report = tracer.did_block_hub_report(hub, blocked[1], {})
        raise _FailedToSwitch(message + "\n" + "\n".join(report))


def clear_stack_frames(frame: Any) -> None:
    """Clears the local variables of ``frame`` and every frame below it, as far as Python allows (a frame still
    executing keeps its locals), to break reference cycles through them."""
    while frame is not None:
        try:
            frame.clear()
        except RuntimeError:  # still executing
            pass
        frame.f_locals.clear()
        frame = frame.f_back
