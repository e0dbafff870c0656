"""Greenlet switch tracers behind ``ferrovent.util.assert_switches``: each is installed with ``greenlet.settrace``
(chaining to the tracer that was there), counts switches and remembers the greenlet switched to, and tells at the
end whether the watched greenlet blocked: never switched, or ran too long without switching.
"""

from __future__ import annotations

import sys
import time
import traceback
from time import perf_counter

from greenlet import getcurrent, settrace

__all__ = ["GreenletTracer", "HubSwitchTracer", "MaxSwitchTracer", "blocking_report"]


class GreenletTracer:
    """Counts switches; `did_block_hub` is true when the watched greenlet never switched away."""

    def __init__(self) -> None:
        self.greenlet_switch_counter = 0
        self.active_greenlet = None
        self.previous_trace_function = settrace(self)
        self._killed = False

    def kill(self) -> None:
        """Uninstalls this tracer, putting back the one it replaced."""
        if not self._killed:
            self._killed = True
            settrace(self.previous_trace_function)
            self.previous_trace_function = None

    def _trace(self, event, args) -> None:
        self.greenlet_switch_counter += 1
        self.active_greenlet = args[1] if event in ("switch", "throw") else None
        if self.previous_trace_function is not None:
            self.previous_trace_function(event, args)

    def __call__(self, event, args) -> None:
        self._trace(event, args)

    def monitor_current_greenlet_blocking(self) -> None:
        self.active_greenlet = getcurrent()

    def ignore_current_greenlet_blocking(self) -> None:
        self.active_greenlet = None

    def did_block_hub(self, hub):
        """``(True, greenlet)`` if no switch happened since the last call while a greenlet other than the hub ran;
        else False. Resets the count."""
        switched = self.greenlet_switch_counter != 0
        self.greenlet_switch_counter = 0
        active = self.active_greenlet
        if switched or active is None or active is hub:
            return False
        return True, active

    def did_block_hub_report(self, hub, active_greenlet, format_kwargs) -> list[str]:
        """Lines describing the block: which greenlet, the hub thread's stack, and the run info."""
        return blocking_report(hub, active_greenlet, self, format_kwargs)


def blocking_report(hub, active_greenlet, reporter, format_kwargs) -> list[str]:
    """The lines of gevent's blocked-loop report: which greenlet, who noticed (``reporter``), the stack of the
    hub's thread and `ferrovent.util.format_run_info` called with ``format_kwargs``."""
    from ferrovent.util import format_run_info  # imported late: util imports this module

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    lines = ["=" * 80, f"\n{stamp} : Greenlet {active_greenlet} appears to be blocked", f"    Reported by {reporter}"]
    ident = getattr(hub, "thread_ident", None)
    frame = sys._current_frames().get(ident)
    stack = traceback.format_stack(frame) if frame is not None else [f"Unknown: No thread found for hub {hub!r}\n"]
    lines.append(f"Blocked Stack (for thread id {hex(ident or 0)}):")
    lines.append("".join(stack))
    lines.append("Info:")
    lines.extend(format_run_info(**format_kwargs))
    return lines


class _HubTracer(GreenletTracer):
    def __init__(self, hub, max_blocking_time: float) -> None:
        GreenletTracer.__init__(self)
        self.max_blocking_time = max_blocking_time
        self.hub = hub

    def kill(self) -> None:
        self.hub = None
        GreenletTracer.kill(self)


class HubSwitchTracer(_HubTracer):
    """Blocked: more than ``max_blocking_time`` passed since the hub last ran."""

    def __init__(self, hub, max_blocking_time: float) -> None:
        _HubTracer.__init__(self, hub, max_blocking_time)
        self.last_entered_hub = 0.0

    def _trace(self, event, args) -> None:
        GreenletTracer._trace(self, event, args)
        if self.active_greenlet is self.hub:
            self.last_entered_hub = perf_counter()

    def did_block_hub(self, hub):
        if perf_counter() - self.last_entered_hub > self.max_blocking_time:
            return True, self.active_greenlet
        return False


class MaxSwitchTracer(_HubTracer):
    """Blocked: some greenlet other than the hub ran more than ``max_blocking_time`` without switching."""

    def __init__(self, hub, max_blocking_time: float) -> None:
        _HubTracer.__init__(self, hub, max_blocking_time)
        self.last_switch = perf_counter()
        self.max_blocking = 0.0

    def _trace(self, event, args) -> None:
        previous = self.active_greenlet
        GreenletTracer._trace(self, event, args)
        now = perf_counter()
        if previous is not self.hub and previous is not None:
            self.max_blocking = max(self.max_blocking, now - self.last_switch)
        self.last_switch = now

    def did_block_hub(self, hub):
        if self.max_blocking == 0:
            self.max_blocking = perf_counter() - self.last_switch
        if self.max_blocking > self.max_blocking_time:
            return True, self.active_greenlet
        return False
