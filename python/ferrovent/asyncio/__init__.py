"""asyncio on ferrovent's reactor: one loop for greenlets and asyncio tasks, and bridges between the two.

``asyncio.run(main(), loop_factory=ferrovent.asyncio.new_event_loop)`` (Python 3.12+), or
``asyncio.set_event_loop_policy(ferrovent.asyncio.EventLoopPolicy())`` (3.11), runs asyncio code on the hub's Rust
loop: a greenlet blocked on a socket and a task awaiting a socket wait in the same poll, on one thread.

Why it is built this way. `EventLoop` is the stdlib's ``SelectorEventLoop`` with one part replaced: its selector
(`HubSelector`) does not wait by itself. Its registrations live in Rust, its ``select()`` answers with one
zero-timeout question to the kernel (epoll_wait on its own epoll instance on Linux, poll(2) elsewhere), and only
when nothing is ready does it park the greenlet running the asyncio loop in the hub, as a waiter in the hub's fd
table (on the epoll fd, or on each fd), until an fd is ready, a timer is due, or another greenlet calls
``call_soon``. So every transport, server, TLS, subprocess and signal path is the stdlib's own, tested by
CPython's test_asyncio, and ferrovent owns waiting, plus the hot paths: ``call_soon`` and each loop iteration
run in Rust (``_core.AioLoop``, see ``_loop.py``) on asyncio's own handles, ready deque and timer heap, and the
socket transport's reads and unbuffered writes (``_transport.py``). The costs of this choice: those stay Python
objects (uvloop has its own in C), the rest of the transports is the stdlib's Python, and a
busy asyncio loop lets the hub run when the hub has greenlets queued or once per switch interval (see
``_selector.py``).

What holds, and how:

- asyncio's running loop and async-generator hooks are per thread, greenlets are not: while the loop's greenlet
  waits in ``select``, other greenlets see no running loop (so ``asyncio.run()`` works in another greenlet, its
  loop parking in turn), and the loop's own are restored when it resumes.
- contextvars: greenlet gives each greenlet its own context; tasks run in their own contexts as in asyncio.
- A running loop holds one reference on the hub, as a blocked greenlet would; a loop that is not running holds
  none, whatever it has registered. `await_`'s background loop holds none even while running.
- Blocking (patched) code called directly inside a coroutine, say ``time.sleep(1)`` or a patched socket's
  ``recv``, does not deadlock: it parks the loop's greenlet in the hub like any greenlet, other greenlets run,
  and when it returns the coroutine continues. That loop's other tasks and callbacks wait meanwhile (as with any
  blocking call in a coroutine), and other greenlets then still see the loop as running. `await_` called in that
  situation, from the greenlet running the loop it would use, raises RuntimeError rather than deadlock.

Bridges: `await_` (from a greenlet, wait for an awaitable), `greenlet` and `wait_greenlet` (from a coroutine, wait
for a greenlet or ``AsyncResult``; ``await greenlet_or_async_result`` does the same). Cancellation crosses both
ways: a greenlet killed in `await_` cancels the task; a task cancelled while awaiting a greenlet kills it.
"""

from __future__ import annotations

from ._bridges import await_, greenlet, wait_greenlet
from ._loop import EventLoop, EventLoopPolicy, new_event_loop
from ._selector import HubSelector

__all__ = ["EventLoop", "EventLoopPolicy", "HubSelector", "await_", "greenlet", "new_event_loop", "wait_greenlet"]
