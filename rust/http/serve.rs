//! `serve_requests`: the keep-alive request loop of the WSGI server's own handler class, in Rust, for the common
//! request: a head that arrives whole (and alone), no body, no upgrade, and an application that calls
//! `start_response` as usual and returns a list of one bytes object. The handler chooses it only where nothing can
//! tell it from its own Python steps (python/ferrovent/_wsgi/handler.py: the class itself, a plain socket, dict
//! environs). With an access log, the loop writes the line of each request it answers (access_log.rs) where the
//! handler's `handle_one_response` would, after the response; the handler's steps log the rest themselves.
//!
//! Everything else is handed to the handler's Python methods at a point where they take over exactly: a head that
//! is not all there or fails to parse (`_head_from`, which re-parses the same bytes), a request with a body or an
//! upgrade (`_make_input`, then `handle_one_response`), pipelined bytes (`handle_one_request`), and, once the
//! application runs, anything but the common calls: the handler first adopts the state its own steps would have
//! set (`_adopt`), then `start_response`, `write` and `handle_one_response` are its own. Errors and send failures
//! take the same path.
//!
//! No borrow of a `StartResponse`'s state is held across a call into Python (the application, or any handler
//! method, may switch greenlets): each access takes what it needs and lets go.

use std::cell::RefCell;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::access_log::{self, AccessLog};
use super::environ::{parse_request, Parsed};
use super::response::response_head;
use crate::sockops;

/// How much one receive asks for while reading a head (the handler's `_HEAD_READ`).
const HEAD_READ: usize = 16 * 1024;

/// `serve_requests(handler, conn, application, base_environ, empty_input)`: serves the connection's requests
/// until it ends (see the module doc); `empty_input` is the `wsgi.input` of a request without a body.
#[pyfunction]
pub fn serve_requests(
    handler: &Bound<'_, PyAny>,
    conn: &Bound<'_, PyAny>,
    application: &Bound<'_, PyAny>,
    base_environ: &Bound<'_, PyDict>,
    empty_input: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = handler.py();
    let server = handler.getattr(intern!(py, "server"))?;
    let sock = conn.getattr(intern!(py, "socket"))?;
    let io_timeout: Option<f64> = conn.getattr(intern!(py, "io_timeout"))?.extract()?;
    let log = AccessLog::of(handler)?;
    let mut started = Started(None);
    let mut first = true; // as the handler's `_first`: no head read yet
    loop {
        if conn.getattr(intern!(py, "buffer"))?.is_truthy()? {
            // Pipelined bytes: the handler's own step takes turns with the other connections first.
            started.sync(handler)?;
            if !handler.call_method0(intern!(py, "handle_one_request"))?.is_truthy()? {
                return Ok(());
            }
            continue;
        }
        if first {
            first = handler.getattr(intern!(py, "_first"))?.is_truthy()?;
        }
        let Some(parsed) = read_head(handler, &server, &sock, base_environ, first, &mut started)? else {
            return Ok(());
        };
        first = false;
        let (environ, _, keep_alive, body) = parsed;
        let upgrade = upgrades(&environ)?;
        let goes_on = if body == 0 && !upgrade {
            environ.set_item(intern!(py, "wsgi.input"), empty_input)?;
            let answer = Answer { handler, conn, sock: &sock, log: log.as_ref(), io_timeout };
            answer.respond(application, &environ, keep_alive, &mut started)?
        } else {
            // The handler's own steps for a request with a body (or an upgrade), from where the head is read.
            started.sync(handler)?;
            handler.setattr(intern!(py, "environ"), &environ)?;
            handler.setattr(intern!(py, "close_connection"), !keep_alive)?;
            let input = handler.call_method1(intern!(py, "_make_input"), (&environ, body, upgrade))?;
            handler.setattr(intern!(py, "_input"), &input)?;
            environ.set_item(intern!(py, "wsgi.input"), input)?;
            handler.call_method0(intern!(py, "handle_one_response"))?;
            goes_on(handler, conn)?
        };
        if !goes_on {
            return Ok(());
        }
    }
}

/// When the last request the loop answered itself started, while the handler does not have it as its
/// `time_start` (access log only): it needs it before its own steps run, as their log line of a refused head
/// reads it (as the previous request left it).
struct Started(Option<f64>);

impl Started {
    /// Gives the handler its `time_start`, if it does not have it yet.
    fn sync(&mut self, handler: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.0.take() {
            Some(start) => handler.setattr(intern!(handler.py(), "time_start"), start),
            None => Ok(()),
        }
    }
}

/// The next request head, received into an empty buffer; None when the connection ends (as the handler's
/// `_read_head`: a failed receive or the end of the stream ends it quietly, a refused head is answered).
fn read_head<'py>(
    handler: &Bound<'py, PyAny>,
    server: &Bound<'py, PyAny>,
    sock: &Bound<'py, PyAny>,
    base_environ: &Bound<'py, PyDict>,
    first: bool,
    last_start: &mut Started,
) -> PyResult<Option<Parsed<'py>>> {
    let py = handler.py();
    let timeout =
        server.getattr(if first { intern!(py, "header_timeout") } else { intern!(py, "keepalive_timeout") })?;
    let started =
        if first { py.import(intern!(py, "time"))?.call_method0(intern!(py, "monotonic"))?.extract()? } else { 0.0 };
    let data = match sockops::recv_bytes(sock, HEAD_READ, 0, timeout.extract()?) {
        Ok(data) => data,
        Err(err) if err.is_instance_of::<PyOSError>(py) => return Ok(None),
        Err(err) => return Err(err),
    };
    if data.as_bytes().is_empty() {
        return Ok(None);
    }
    if let Ok(Some(parsed)) = parse_request(py, data.as_any(), base_environ) {
        if parsed.1 == data.as_bytes().len() {
            if first {
                handler.setattr(intern!(py, "_first"), false)?;
            }
            return Ok(Some(parsed));
        }
    }
    // Not whole, not alone, or refused: the handler's step, from the same bytes.
    last_start.sync(handler)?;
    let parsed = handler.call_method1(intern!(py, "_head_from"), (data, started))?;
    if parsed.is_none() {
        return Ok(None);
    }
    Ok(Some(parsed.extract()?))
}

/// Whether the request asks for an upgrade (an Upgrade header, or "Connection: upgrade"): its input differs.
fn upgrades(environ: &Bound<'_, PyDict>) -> PyResult<bool> {
    let py = environ.py();
    if environ.contains(intern!(py, "HTTP_UPGRADE"))? {
        return Ok(true);
    }
    match environ.get_item(intern!(py, "HTTP_CONNECTION"))? {
        Some(connection) => connection.call_method0(intern!(py, "lower"))?.eq(intern!(py, "upgrade")),
        None => Ok(false),
    }
}

/// What answering a request without a body needs of its connection.
struct Answer<'a, 'py> {
    handler: &'a Bound<'py, PyAny>,
    conn: &'a Bound<'py, PyAny>,
    sock: &'a Bound<'py, PyAny>,
    log: Option<&'a AccessLog<'py>>,
    io_timeout: Option<f64>,
}

impl<'py> Answer<'_, 'py> {
    /// Runs the application for the request and sends its response; whether the connection goes on. With an
    /// access log, the request's start is the handler's `time_start` if its steps take over, else `started`'s.
    fn respond(
        &self,
        application: &Bound<'py, PyAny>,
        environ: &Bound<'py, PyDict>,
        keep_alive: bool,
        started: &mut Started,
    ) -> PyResult<bool> {
        let (handler, py) = (self.handler, self.handler.py());
        let start = self.log.map(|_| access_log::now().0);
        started.0 = None; // a hand-over gives the handler this request's start instead
        let answering = Bound::new(py, StartResponse::new(handler, environ, !keep_alive, start))?;
        let (result, error) = match application.call1((environ, &answering)) {
            Ok(result) => match answering.get().plain_response(&result)? {
                Some(response) => {
                    let sent = if response.bare { 0 } else { response.body.as_bytes().len() };
                    let outcome =
                        sockops::send_both(self.sock, response.head.as_any(), response.body.as_any(), self.io_timeout);
                    if outcome.as_ref().map_or_else(|err| err.is_instance_of::<PyOSError>(py), |()| true) {
                        answering.get().finish();
                    }
                    let goes_on = match outcome {
                        Ok(()) => !response.close,
                        Err(err) if sockops::is_timeout(py, &err) => {
                            // The handler's answer to a client that stopped reading: close, after a linger.
                            handler.setattr(intern!(py, "_linger"), true)?;
                            self.conn.setattr(intern!(py, "broken"), true)?;
                            false
                        }
                        Err(err) if err.is_instance_of::<PyOSError>(py) => {
                            self.conn.setattr(intern!(py, "broken"), true)?;
                            false
                        }
                        Err(err) => {
                            answering.get().hand_over(py, Some(sent))?;
                            return self
                                .handled(py.None().into_bound(py), err.into_value(py).into_any().into_bound(py));
                        }
                    };
                    if let (Some(log), Some(start)) = (self.log, start) {
                        started.0 = Some(start);
                        log.write(environ, &response.status, sent, start)?;
                    }
                    return Ok(goes_on);
                }
                None => {
                    answering.get().hand_over(py, None)?;
                    (result, py.None().into_bound(py))
                }
            },
            Err(err) => {
                answering.get().hand_over(py, None)?;
                (py.None().into_bound(py), err.into_value(py).into_any().into_bound(py))
            }
        };
        self.handled(result, error)
    }

    /// The handler's steps finish the request the application answered with `result` or failed with `error`.
    fn handled(&self, result: Bound<'py, PyAny>, error: Bound<'py, PyAny>) -> PyResult<bool> {
        let py = self.handler.py();
        self.handler.call_method1(intern!(py, "handle_one_response"), ((result, error),))?;
        goes_on(self.handler, self.conn)
    }
}

/// Whether the connection goes on after a response the handler's steps sent (as its `handle_one_request` says).
fn goes_on(handler: &Bound<'_, PyAny>, conn: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = handler.py();
    let closes = handler.getattr(intern!(py, "close_connection"))?.is_truthy()?
        || conn.getattr(intern!(py, "broken"))?.is_truthy()?;
    Ok(!closes)
}

/// The `start_response` of a request the loop serves. Its state is the loop's until something unusual happens;
/// then the handler adopts it, and every call goes to the handler's own methods.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct StartResponse {
    state: RefCell<Answering>,
}

// SAFETY: the state is only touched with the GIL held (every entry point is a Python call or the loop, which holds
// it), and no borrow of it is held across a call into Python or a GIL release, so the GIL serializes every access.
// ferrovent does not support free-threaded builds.
unsafe impl Sync for StartResponse {}

struct Answering {
    handler: Option<Py<PyAny>>,
    environ: Option<Py<PyDict>>,
    /// The handler's `close_connection` as its steps would have it now.
    close: bool,
    /// When the request started, for the access log (None: no log).
    start: Option<f64>,
    /// The last `start_response` call's response head.
    head: Option<Head>,
    /// The handler holds the request's state (or the response went out): calls go to its methods.
    handed_over: bool,
}

/// A `start_response` call's outcome, as the handler's `_use_head` takes it.
struct Head {
    status: Py<PyAny>,
    headers: Py<PyAny>,
    /// `response_head`'s tuple: (head, code, Content-Length, Date, framed, says close, Date line).
    built: Py<PyTuple>,
    http11: bool,
    /// A HEAD request: the response has no body.
    bare: bool,
    code: u16,
}

/// A response the loop sends itself.
struct Plain<'py> {
    /// The status the application gave (an exact str: `response_head` took it).
    status: Bound<'py, PyString>,
    head: Bound<'py, PyBytes>,
    body: Bound<'py, PyBytes>,
    bare: bool,
    close: bool,
}

impl StartResponse {
    fn new(handler: &Bound<'_, PyAny>, environ: &Bound<'_, PyDict>, close: bool, start: Option<f64>) -> Self {
        let answering = Answering {
            handler: Some(handler.clone().unbind()),
            environ: Some(environ.clone().unbind()),
            close,
            start,
            head: None,
            handed_over: false,
        };
        StartResponse { state: RefCell::new(answering) }
    }

    fn handler<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.state.borrow().handler {
            Some(handler) => Ok(handler.bind(py).clone()),
            None => Err(pyo3::exceptions::PyRuntimeError::new_err("the request is over")),
        }
    }

    /// The response went out (or its send failed on the socket): the request is over, and a later call (a kept
    /// `write`) goes to the handler as it is then.
    fn finish(&self) {
        let taken = {
            let mut state = self.state.borrow_mut();
            state.handed_over = true;
            (state.environ.take(), state.head.take())
        };
        drop(taken); // after the borrow: releasing them may run Python code
    }

    /// Lets the handler adopt the request's state (once): when it started (access log), the head of the last
    /// `start_response` call and, if the response's first send was made, how many body bytes it held.
    fn hand_over(&self, py: Python<'_>, sent: Option<usize>) -> PyResult<()> {
        let taken = {
            let mut state = self.state.borrow_mut();
            if state.handed_over {
                return Ok(());
            }
            state.handed_over = true;
            let head = state.head.take().map(|h| (h.status, h.headers, h.built, h.http11));
            (state.handler.as_ref().map(|h| h.clone_ref(py)), state.environ.take(), state.close, head, state.start)
        };
        if let (Some(handler), Some(environ), close, head, start) = taken {
            handler.call_method1(py, intern!(py, "_adopt"), (environ, close, head, sent, start))?;
        }
        Ok(())
    }

    /// Calls the handler's method `name` with the arguments given, after the handover.
    fn delegate<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.hand_over(py, None)?;
        self.handler(py)?.getattr(name)?.call(args, kwargs)
    }

    /// The response to send for the application's `result`, if the loop sends it itself: a list of one bytes
    /// object after a `start_response` the loop answered, with nothing for the handler's Python steps to decide
    /// (the framing is the head's own or the item's length; a Content-Length must be that length in digits).
    fn plain_response<'py>(&self, result: &Bound<'py, PyAny>) -> PyResult<Option<Plain<'py>>> {
        let py = result.py();
        let Ok(list) = result.cast_exact::<PyList>() else { return Ok(None) };
        if list.len() != 1 {
            return Ok(None);
        }
        let Ok(body) = list.get_item(0)?.cast_into_exact::<PyBytes>() else { return Ok(None) };
        let state = self.state.borrow();
        let close = state.close;
        let Some(head) = &state.head else { return Ok(None) };
        if state.handed_over || head.code < 200 {
            return Ok(None);
        }
        let built = head.built.bind(py);
        let length = built.get_item(2)?;
        let framed = built.get_item(4)?.is_truthy()?;
        if !head.bare && !length.is_none() && !is_length(&length, body.as_bytes().len()) {
            return Ok(None);
        }
        let start = built.get_item(0)?;
        let start = start.cast::<PyBytes>()?.as_bytes();
        let mut bytes = Vec::with_capacity(start.len() + 40);
        bytes.extend_from_slice(start);
        if !framed {
            bytes.extend_from_slice(format!("Content-Length: {}\r\n", body.as_bytes().len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let bare = head.bare;
        let status = head.status.bind(py).cast::<PyString>()?.clone();
        let head = PyBytes::new(py, &bytes);
        let body = if bare { PyBytes::new(py, b"") } else { body };
        Ok(Some(Plain { status, head, body, bare, close }))
    }
}

/// Whether a Content-Length the application gave is `length` written in ASCII digits (anything else: the
/// handler's steps decide, as they parse it with `int`).
fn is_length(value: &Bound<'_, PyAny>, length: usize) -> bool {
    let Ok(text) = value.cast_exact::<PyString>() else { return false };
    let Ok(text) = text.to_str() else { return false };
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<usize>() == Ok(length)
}

#[pymethods]
impl StartResponse {
    /// PEP 3333's `start_response(status, headers, exc_info=None)`, as the handler's.
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let usual =
            !this.state.borrow().handed_over && kwargs.is_none_or(|k| k.is_empty()) && matches!(args.len(), 2 | 3);
        if usual {
            if let Some(write) = this.answer(slf, args)? {
                return Ok(write);
            }
        }
        this.delegate(py, intern!(py, "start_response"), args, kwargs)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(state) = self.state.try_borrow() else { return Ok(()) };
        if let Some(handler) = &state.handler {
            visit.call(handler)?;
        }
        if let Some(environ) = &state.environ {
            visit.call(environ)?;
        }
        if let Some(head) = &state.head {
            visit.call(&head.status)?;
            visit.call(&head.headers)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = self.state.try_borrow_mut().map(|mut state| {
            state.handed_over = true;
            (state.handler.take(), state.environ.take(), state.head.take())
        });
        drop(taken); // after the borrow: releasing them may run Python code
    }
}

impl StartResponse {
    /// The loop's own `start_response(status, headers[, exc_info])`: the `write` callable, or None where the
    /// handler's must answer (an environ without the keys as it set them, a head `response_head` leaves to
    /// Python: unusual or wrong).
    fn answer<'py>(&self, slf: &Bound<'py, Self>, args: &Bound<'py, PyTuple>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = slf.py();
        if args.len() == 3 {
            // The headers are not sent while the application runs: exc_info has nothing to re-raise.
            args.get_item(2)?.is_truthy()?;
        }
        let (environ, close) = {
            let state = self.state.borrow();
            let Some(environ) = &state.environ else { return Ok(None) };
            (environ.clone_ref(py).into_bound(py), state.close)
        };
        let text = |key| -> PyResult<Option<Bound<'py, PyString>>> {
            Ok(environ.get_item(key)?.and_then(|value| value.cast_into_exact::<PyString>().ok()))
        };
        let (Some(protocol), Some(method)) =
            (text(intern!(py, "SERVER_PROTOCOL"))?, text(intern!(py, "REQUEST_METHOD"))?)
        else {
            return Ok(None);
        };
        let http11 = protocol.to_str()? == "HTTP/1.1";
        let (status, headers) = (args.get_item(0)?, args.get_item(1)?);
        let Some(built) = response_head(py, &status, &headers, http11, close)? else { return Ok(None) };
        let (code, says_close) = (built.1, built.5);
        let head = Head {
            status: status.unbind(),
            headers: headers.unbind(),
            built: built.into_pyobject(py)?.unbind(),
            http11,
            bare: method.to_str()? == "HEAD",
            code,
        };
        {
            let mut state = self.state.borrow_mut();
            state.close |= says_close;
            state.head = Some(head);
        }
        Ok(Some(Bound::new(py, Write { answering: slf.clone().unbind() })?.into_any()))
    }
}

/// The `write` callable a `StartResponse` gives out: the handler's `write`, once it adopted the request.
#[pyclass(frozen, module = "ferrovent._core")]
pub struct Write {
    answering: Py<StartResponse>,
}

#[pymethods]
impl Write {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.answering.get().delegate(py, intern!(py, "write"), args, kwargs)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.answering)
    }
}
