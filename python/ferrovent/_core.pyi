"""Type stubs for ferrovent._core, the Rust reactor."""

import _socket
from collections.abc import Iterable
from typing import Any, Callable, Final, Optional, final

from greenlet import greenlet
from typing_extensions import Self

__all__ = [
    "__version__",
    "Loop",
    "sleep",
    "small_frame_stacks",
    "arena_cache",
    "ThreadsafeHandle",
    "Heartbeat",
    "POLLER",
    "WaitQueue",
    "LinkCore",
    "ItemQueue",
    "AioLoop",
    "aio_handle_class",
    "AioReadReady",
    "AioSelector",
    "install_aio_transport",
    "AIO_TRANSPORT_STATE",
    "TIMEOUT",
    "BlockingSwitchOutError",
    "InvalidSwitchError",
    "InvalidThreadUseError",
    "ConcurrentObjectUseError",
    "run_current_greenlet",
    "GreenletRun",
    "greenlet_run",
    "spawn_greenlet",
    "build_greenlets_in_rust",
    "retire_hub",
    "adopt_hub",
    "parse_request",
    "response_head",
    "http_date_line",
    "serve_requests",
    "CHUNKED",
    "ChunkedDecoder",
    "HttpParseError",
    "http_load",
    "LoadReport",
    "callback",
    "watch_io",
    "watch_phase",
    "unwatch",
    "watch_pending",
    "watch_timer",
    "unwatch_timer",
    "READ",
    "WRITE",
    "ERROR",
    "sock_recv",
    "sock_recv_into",
    "sock_send",
    "sock_sendall",
    "sock_send_pair",
    "sock_accept",
    "sock_wait",
]
__version__: Final[str]

class _TimedOut: ...

#: Returned by ``Loop.park`` when its timeout expires.
TIMEOUT: Final[_TimedOut]
#: The system poller behind the loop: "epoll", "kqueue" or "poll".
POLLER: Final[str]

class BlockingSwitchOutError(AssertionError): ...
class InvalidSwitchError(AssertionError): ...
class ConcurrentObjectUseError(AssertionError): ...
class InvalidThreadUseError(RuntimeError): ...

def sleep(seconds: float = 0.0, ref: bool = ...) -> None:
    """Park the current greenlet for ``seconds`` in the calling thread's loop; 0 yields."""

def retire_hub(loop: Loop) -> None:
    """Drop what a destroyed hub queued or parked for its greenlets; the loop's watchers and timers stay."""

def adopt_hub(loop: Loop, hub: greenlet) -> None:
    """Make ``hub`` the greenlet ``loop`` runs in, once its previous hub has ended (else RuntimeError)."""

def small_frame_stacks() -> Optional[bool]:
    """Whether started Greenlets get small frame stacks (CPython 3.11-3.13, unless ``FERROVENT_SMALL_STACKS=0``);
    None until a Greenlet has started on a fresh stack and the layout was learnt."""

def arena_cache() -> bool:
    """Whether CPython's 16 KiB frame-stack chunks are recycled through ferrovent's cache (CPython 3.11-3.13,
    unless ``FERROVENT_ARENA_CACHE=0``, and while ferrovent's arena allocator is the installed one)."""

def sock_recv(sock: _socket.socket, bufsize: int, flags: int, timeout: Optional[float]) -> bytes:
    """``recv`` of a cooperative socket: the system call, waiting on EAGAIN within ``timeout`` (None: forever)."""

def sock_recv_into(sock: _socket.socket, buffer: Any, nbytes: int, flags: int, timeout: Optional[float]) -> int:
    """``recv_into`` of a cooperative socket; as `sock_recv`."""

def sock_send(sock: _socket.socket, data: Any, flags: int, timeout: Optional[float]) -> int:
    """``send`` of a cooperative socket; as `sock_recv`."""

def sock_sendall(sock: _socket.socket, data: Any, flags: int, timeout: Optional[float]) -> None:
    """``sendall`` of a cooperative socket: ``timeout`` bounds the whole call."""

def sock_send_pair(
    sock: _socket.socket, wrap: Optional[Callable[[BaseException], Any]], head: Any, body: Any, timeout: Optional[float]
) -> None:
    """``head`` then ``body`` on a cooperative socket in one ``writev``; ``timeout`` bounds each wait for space. An
    error goes to ``wrap`` (unless None), which raises what to raise instead."""

def sock_accept(sock: _socket.socket, timeout: Optional[float]) -> tuple[int, Any]:
    """``_accept`` of a cooperative socket: the new fd and the peer's address, waiting within ``timeout``."""

def sock_wait(sock: _socket.socket, writable: bool, timeout: Optional[float], exclusive: bool) -> bool:
    """Parks until the socket is writable (or readable); False if ``timeout`` passed first."""

def run_current_greenlet() -> None:
    """``Greenlet.run``: runs the current Greenlet's function and records how it ended."""

@final
class GreenletRun:
    """The descriptor behind ``Greenlet.run``; it gives out ``run_current_greenlet``."""

greenlet_run: GreenletRun

def spawn_greenlet(cls: type[greenlet], /, *args: Any, **kwargs: Any) -> Any:
    """``Greenlet.spawn``: ``cls(*args, **kwargs)``, started; returns it."""

def build_greenlets_in_rust(greenlet_class: type[greenlet], globals: dict[str, Any]) -> bool:
    """Lets ``spawn_greenlet`` build and start the classes ``ferrovent.greenlet`` (whose globals are ``globals``)
    vouches for without running their ``__init__`` and ``start``; True if installed (only the first call is)."""

@final
class Heartbeat:
    @property
    def iterations(self) -> int:
        """The loop's completed iterations; readable from any thread."""

@final
class ThreadsafeHandle:
    def run_callback(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in the loop's thread; safe from any thread."""

class Loop:
    def __new__(cls, hub: greenlet) -> Loop: ...
    @property
    def hub(self) -> greenlet: ...
    def make_current(self) -> None: ...
    @staticmethod
    def forget_current() -> None: ...
    def run(self) -> None: ...
    def stop(self) -> None: ...
    def now(self) -> float: ...
    def update_now(self) -> None: ...
    # scheduling (from any greenlet of the loop's thread)
    def start(self, greenlet: greenlet) -> None: ...
    def unpark(self, greenlet: greenlet) -> bool: ...
    def is_parked(self, greenlet: greenlet) -> bool: ...
    def wake(self, greenlet: greenlet, value: Any = None) -> bool: ...
    def wake_raise(self, greenlet: greenlet, exc: BaseException) -> bool: ...
    def throw(self, greenlet: greenlet, exc: BaseException) -> None: ...
    def run_callback(self, func: Callable[..., Any], *args: Any) -> callback: ...
    def call_later(self, seconds: float, func: Callable[..., Any], *args: Any, ref: bool = ...) -> int: ...
    def throw_later(self, seconds: float, greenlet: greenlet, exc: BaseException, ref: bool = ...) -> int: ...
    def cancel_timer(self, id: int) -> bool: ...
    def timer_pending(self, id: int) -> bool: ...
    def timer_fired(self, id: int) -> bool: ...
    # waits (from a greenlet that is not the hub)
    def sleep(self, seconds: float = 0.0, ref: bool = ...) -> None: ...
    def park(self, timeout: Optional[float] = None, ref: bool = ...) -> Any: ...
    def park_until_idle(self) -> None: ...
    def wait_read(
        self, fd: int, timeout: Optional[float] = None, timeout_exc: Optional[BaseException] = None, ref: bool = ...
    ) -> bool: ...
    def wait_write(
        self, fd: int, timeout: Optional[float] = None, timeout_exc: Optional[BaseException] = None, ref: bool = ...
    ) -> bool: ...
    def wait_fd(
        self,
        fd: int,
        writable: bool,
        timeout: Optional[float] = None,
        timeout_exc: Optional[BaseException] = None,
        ref: bool = ...,
        exclusive: bool = False,
        persistent: bool = True,
    ) -> bool: ...
    def closing_fd(self, fd: int) -> None: ...
    def cancel_wait(self, fd: int, exc: BaseException) -> None: ...
    # liveness and threads
    def add_ref(self) -> None: ...
    def remove_ref(self) -> None: ...
    def ref(self) -> None: ...
    def unref(self) -> None: ...
    @property
    def activecnt(self) -> int: ...
    def destroy(self) -> bool: ...
    @property
    def destroyed(self) -> bool: ...
    def threadsafe(self) -> ThreadsafeHandle: ...
    def heartbeat(self) -> Heartbeat: ...
    def reinit(self) -> None: ...
    @property
    def ready_count(self) -> int: ...
    @property
    def timer_count(self) -> int: ...
    @property
    def parked_count(self) -> int: ...
    @property
    def fd_waiter_count(self) -> int: ...
    @property
    def registered_fd_count(self) -> int: ...
    @property
    def iteration(self) -> int: ...
    @property
    def alive_now(self) -> bool: ...

# --- callback watchers (rust/watchers.rs; the Python face is ferrovent._watchers) ---

READ: Final[int]
WRITE: Final[int]
#: Passed to an io watcher's callback, with READ | WRITE, when its fd was closed; the watcher is then stopped.
ERROR: Final[int]

@final
class callback:
    """The handle ``Loop.run_callback`` returns: true while the call is still to run."""

    def __new__(cls, func: Callable[..., Any], *args: Any) -> callback: ...
    def __call__(self, *args: Any, **kwargs: Any) -> None:
        """Run the call now if it is still pending (once)."""
    def stop(self) -> None: ...
    def close(self) -> None: ...
    def __bool__(self) -> bool: ...
    @property
    def pending(self) -> bool: ...
    @property
    def callback(self) -> Optional[Callable[..., Any]]: ...
    @property
    def args(self) -> Optional[tuple]: ...

def watch_io(loop: Loop, fd: int, events: int, callback: Callable[[int], Any], priority: int = 0) -> int:
    """Call ``callback(revents)`` in the hub while ``fd`` is ready for ``events`` (level-triggered); an id."""

def watch_phase(loop: Loop, phase: str, callback: Callable[[], Any], priority: int = 0) -> int:
    """Call ``callback()`` in the hub at ``phase`` ("prepare", "check" or "idle") of every iteration; an id."""

def unwatch(loop: Loop, id: int) -> bool:
    """Stop what ``watch_io``/``watch_phase`` started; False if already stopped."""

def watch_pending(loop: Loop, id: int) -> bool:
    """Whether the callback of what ``watch_io``/``watch_phase`` started was collected and has not run yet."""

def watch_timer(loop: Loop, seconds: float, callback: Callable[[], Any], priority: int = 0) -> int:
    """Call ``callback()`` in the hub after ``seconds`` (an unreferenced timer), by ``priority``; a timer id."""

def unwatch_timer(loop: Loop, id: int) -> bool:
    """Cancel what ``watch_timer`` started; False if it already ran or was cancelled."""

# --- HTTP/1.x request parsing for the WSGI server (rust/http.rs) ---

#: ``body`` value of ``parse_request`` for a ``Transfer-Encoding: chunked`` request body.
CHUNKED: Final[int]

@final
class HttpParseError(ValueError):
    """A request the server must refuse: answer ``status`` (400, 414, 431, 501 or 505) and close the connection.

    ``reason`` says what was wrong, for the error log. ``str(exc)`` is ``"<status> <reason>"``."""

    status: int
    reason: str
    def __new__(cls, status: int, reason: str) -> HttpParseError: ...

def parse_request(
    buf: bytes | bytearray | memoryview, base_environ: dict[str, Any]
) -> tuple[dict[str, Any], int, bool, int] | None:
    """Parse the request head at the start of ``buf`` and build its WSGI environ, in one call.

    ``buf`` may hold part of a head, a whole head, or a head followed by body bytes or further pipelined requests.
    Returns ``None`` while the head is incomplete (call again once more bytes have arrived; each call reads the
    buffer from its start, in time linear in its length). Otherwise returns ``(environ, consumed, keep_alive, body)``:

    - ``environ``: a copy of ``base_environ`` (put SERVER_NAME/PORT, REMOTE_ADDR/PORT, ``wsgi.*`` there) plus
      REQUEST_METHOD, SCRIPT_NAME (``''``), PATH_INFO (percent-decoded, Latin-1; from an absolute-form target only
      its path), QUERY_STRING, SERVER_PROTOCOL, REQUEST_URI and RAW_URI (the target as sent), CONTENT_TYPE and
      CONTENT_LENGTH when sent, and ``HTTP_<NAME>`` for every other field (names with ``_`` are dropped; a repeated
      field is joined to the value already there with ``","``, Cookie with ``"; "``). Values are ``str`` decoded as
      Latin-1, stripped of surrounding whitespace.
    - ``consumed``: bytes of ``buf`` the head took (leading empty lines included); the body starts there.
    - ``keep_alive``: whether the connection may carry another request (HTTP/1.1 unless ``Connection: close``;
      HTTP/1.0 only with ``Connection: keep-alive``).
    - ``body``: the Content-Length, 0 when the request has no body, or ``CHUNKED``.

    Raises ``HttpParseError``: 400 for malformed syntax (bad method, target or version, bare CR, obs-fold,
    invalid field names, control characters in values, several Host fields) and for unsafe framing (invalid or
    conflicting Content-Length, Content-Length with Transfer-Encoding, chunked not the final coding, any
    Transfer-Encoding in HTTP/1.0); 414 for a request line over 8 KiB; 431 for more than 100 fields or a head over
    64 KiB (raised as soon as the limit is passed, even before the head ends); 501 for a transfer coding other than
    chunked; 505 for a version other than HTTP/1.0 and HTTP/1.1.

    ``bytes`` and read-only buffers are read in place; a bytearray has at most its first 64 KiB copied first.
    """

def response_head(
    status: object, headers: object, http11: bool, close: bool
) -> tuple[bytes, int, str | None, str | None, bool, bool, str] | None:
    """The WSGI server's response head for a common ``start_response(status, headers)``, in one call.

    Returns ``(head, code, content_length, date, framed, says_close, date_line)``: the status line and the headers
    (``http_date_line()`` added unless the application gave a Date; ``Connection: close`` if ``close`` and the
    application gave no Connection header; ``Connection: keep-alive`` otherwise to an HTTP/1.0 client), without the
    framing header and the final blank line; the status code; the last Content-Length and Date values given (or
    None); whether a Content-Length or Transfer-Encoding header frames the body; whether the Connection header
    given says close; the Date line added ("" if none). Returns None, never raising, for anything but a ``str``
    status of three digits (not 204 or 304) and a list or tuple of ``(str, str)`` pairs, all Latin-1 without CR or
    LF: the caller's own code handles those.
    """

def serve_requests(handler: Any, conn: Any, application: Any, base_environ: dict, empty_input: Any) -> None:
    """The WSGI server's keep-alive loop for a connection of ``WSGIHandler`` itself (a plain socket, dict
    environs): serves its requests until it ends. A whole head without a body, the application's usual
    ``start_response`` and a list of one bytes object are answered here, and their access-log line written to
    ``server.log`` as the handler's ``log_request`` writes it; everything else is handed to the handler's own
    methods (``_head_from``, ``_make_input``, ``handle_one_request``, ``_adopt`` then ``start_response``, ``write``
    and ``handle_one_response``), so what the client sees and the log gets is theirs. ``empty_input`` is the
    ``wsgi.input`` of a request without a body.
    """

def http_date_line() -> str:
    """``"Date: <IMF-fixdate of now>\\r\\n"`` (``email.utils.formatdate(int(time.time()), usegmt=True)``), made
    at most once a second."""

@final
class ChunkedDecoder:
    """Incremental decoder of one ``Transfer-Encoding: chunked`` request body.

    Feed it the bytes after the head, in pieces of any size. Chunk extensions are ignored; trailer fields are read
    and dropped (16 KiB at most). Framing is strict (CR LF line ends, hex sizes below 2**63, size lines of at most
    4 KiB): anything else raises ``HttpParseError`` (400), and so does every later call.
    """

    def __init__(self) -> None: ...
    def decode(self, data: bytes | bytearray | memoryview) -> tuple[bytes, int]:
        """Return ``(payload, used)``: the chunk data found in ``data`` and how many bytes of ``data`` were read.

        ``used`` is ``len(data)`` unless the body ended inside ``data``; the bytes from ``used`` on belong to the
        next request. Once ``done``, it returns ``(b"", 0)``. When ``data`` has good chunk data and then bad
        framing, that data comes first (``used`` stops where it ends) and the next call raises."""

    @property
    def done(self) -> bool:
        """Whether the last chunk and the trailer section have been read."""

# --- the load generator (rust/loadgen.rs) ---

def http_load(
    host: str,
    port: int,
    path: str = "/",
    *,
    connections: int = 50,
    duration: float = 5.0,
    threads: int = 1,
) -> LoadReport:
    """Keep ``connections`` HTTP/1.1 keep-alive connections to ``host:port`` busy with ``GET path`` for
    ``duration`` seconds, one request in flight on each (no pipelining), on ``threads`` OS threads with the GIL
    released; then wait up to 2 s for the requests in flight.

    Responses may be framed by Content-Length, chunked, or the server's close; a closed connection is replaced.
    Raises OSError (ConnectionRefusedError, ...) when a first connection cannot be opened, ValueError for bad
    arguments; later failures are counted in ``LoadReport.errors``."""

@final
class LoadReport:
    """What a run of ``http_load`` measured."""

    @property
    def requests(self) -> int:
        """Requests answered with a 2xx or 3xx status."""
    @property
    def errors(self) -> int:
        """Failed connections, malformed or cut responses, other statuses, requests unanswered in the grace."""
    @property
    def first_error(self) -> Optional[str]:
        """What the first error was, if any."""
    @property
    def seconds(self) -> float:
        """The run's length: the duration, or up to the last answer within the grace."""
    @property
    def requests_per_second(self) -> float: ...
    @property
    def p50_ms(self) -> Optional[float]:
        """Median latency of the answered requests (None if none was)."""
    @property
    def p99_ms(self) -> Optional[float]: ...
    @property
    def max_ms(self) -> Optional[float]: ...
    @property
    def cpu_seconds(self) -> float:
        """CPU time the generator's threads used."""
    @property
    def cpu_use(self) -> float:
        """``cpu_seconds`` over the threads' wall time: near 1.0 the generator was saturated and measured itself."""
    @property
    def threads(self) -> int: ...
    @property
    def connections(self) -> int: ...

@final
class WaitQueue:
    """A FIFO line of greenlets parked in a loop, and of links (callbacks), woken with no Python call per greenlet."""
    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def __eq__(self, value: object, /) -> bool: ...
    def append(self, link: Any) -> None: ...
    def appendleft(self, link: Any) -> None: ...
    def remove(self, obj: Any) -> bool: ...
    def pop_all(self) -> list[Any]: ...
    def wait(
        self,
        loop: Loop,
        timeout: Optional[float] = None,
        front: bool = False,
        item: Any = None,
        on_lost: Optional[Callable[[], Any]] = None,
    ) -> bool: ...
    def wake_all(self, loop: Optional[Loop], schedule: Callable[[Any], Any]) -> int: ...
    def wake_one(self, loop: Optional[Loop], schedule: Optional[Callable[[Any], Any]] = None) -> bool: ...
    def take_item(self, loop: Loop) -> Any: ...

class LinkCore:
    """Rust base of ferrovent._linkable.Linkable: the line, the owner's loop, Event's flag and its methods."""
    def __new__(cls, *_args: Any, **_kwargs: Any) -> Self: ...

    _links: WaitQueue
    _loop: Optional[Loop]
    _flag: bool
    _dispatching: bool
    def _must_notify(self) -> bool: ...
    def _flag_is_set(self) -> bool: ...
    def _set_flag(self) -> None: ...
    def _clear_flag(self) -> None: ...
    def _wait_for_flag(self, timeout: Optional[Any] = None) -> bool: ...

@final
class AioLoop:
    """The asyncio loop's hot paths: call_soon's handles, and one iteration of the loop (timers, select, callbacks)."""
    def __new__(
        cls,
        aio_loop: Any,
        ready: Any,
        selector: AioSelector,
        handle_type: type,
        timer_handle_type: type,
        made_type: type,
        handle_init: Any,
        handle_run: Any,
        slow_call_soon: Any,
        slow_run_once: Any,
        report: Any,
        dispatches_events: bool,
        state_in_dict: bool,
        flags_kept: bool,
    ) -> Self: ...
    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> Any: ...
    def run_once(self) -> None: ...
    def create_future(self) -> Any: ...
    def create_task(self, coro: Any, *, name: Any = None, context: Any = None) -> Any: ...
    def get_debug(self) -> Any: ...
    def check_closed(self) -> None: ...
    def time(self) -> Any: ...
    def flag_stored(self, name: str, value: Any) -> None: ...

def aio_handle_class(base: type, slots: list[str]) -> type:
    """``base``'s (asyncio.Handle's) subclass whose handles the collector traverses without walking the MRO."""

@final
class AioReadReady:
    """A socket transport's reader callback: recv through a reused buffer, then the protocol's data_received."""
    def __new__(cls, transport: Any) -> Self: ...
    def __call__(self, *args: Any, **kwargs: Any) -> None: ...

AIO_TRANSPORT_STATE: Final[tuple[str, ...]]

def install_aio_transport(cls: type) -> None:
    """Makes ``cls.write`` and ``cls.is_closing`` (a stdlib socket transport subclass) Rust methods: the write sends
    at once when nothing is buffered, else the inherited write; ``is_closing`` gives ``_closing``. ``cls`` keeps the
    state they read in ``__slots__`` of its own (TypeError if not), read in place while its lookup finds them."""

@final
class AioSelector:
    """The asyncio loop's selector state: registered fds with their keys (in an epoll instance on Linux), level-truth
    polls, parking in the loop."""
    def __new__(cls, loop: Loop) -> Self: ...
    def set(self, fd: int, events: int, key: Any) -> None: ...
    def remove(self, fd: int) -> None: ...
    def close(self) -> None: ...
    def select(self, timeout: Optional[float]) -> list[tuple[Any, int]]: ...
    def wake(self) -> None: ...
    def __len__(self) -> int: ...

class ItemQueue:
    """Rust base of ferrovent.queue.SimpleQueue: its state and every call that does not wait."""
    def __new__(cls, *_args: Any, **_kwargs: Any) -> Self: ...

    queue: Any
    _maxsize: int
    unfinished_tasks: int
    _plain: bool
    is_shutdown: bool
    _woken_box: Optional[list]
    _loop: Optional[Loop]
    @property
    def getters(self) -> WaitQueue: ...
    @property
    def putters(self) -> WaitQueue: ...
    def __len__(self) -> int: ...
    def qsize(self) -> int: ...
    def empty(self) -> bool: ...
    def full(self) -> bool: ...
    def put(self, item: Any, block: object = ..., timeout: Optional[float] = None) -> None: ...
    def put_nowait(self, item: Any) -> None: ...
    def get(self, block: object = ..., timeout: Optional[float] = None) -> Any: ...
    def get_nowait(self) -> Any: ...
    def _add(self, item: Any) -> None: ...
    def _pop(self) -> Any: ...
    def _wake_putter(self) -> None: ...
    def _put_waiting(self, item: Any, timeout: Optional[float] = None) -> None: ...
    def _hold(self, items: Iterable[Any]) -> None: ...
    def _front(self) -> Any: ...
