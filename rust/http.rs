//! HTTP/1.x for the WSGI server: the request-head parser, the WSGI environ built from it, the chunked-body decoder,
//! the common response head, and the keep-alive request loop (`serve`) with its access log (`access_log`). The parsing itself (`head`, `chunked`, `names`) is plain Rust with no Python in
//! it, so it can be unit tested, property tested and fuzzed on its own; `environ`, `decoder` and `response` are the
//! Python-facing layer.
//!
//! Python surface (see `_core.pyi`): `parse_request`, `response_head`, `http_date_line`, `serve_requests`, `CHUNKED`,
//! `ChunkedDecoder`, `HttpParseError`.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod access_log;
#[cfg(test)]
mod checks;
pub mod chunked;
mod date;
mod decoder;
mod environ;
pub mod head;
pub mod names;
#[cfg(test)]
mod props;
mod response;
mod serve;

/// A request the server must refuse: `status` is the HTTP status to answer with, `reason` says why (for the log).
#[pyclass(extends = PyValueError, frozen, module = "ferrovent._core")]
pub struct HttpParseError {
    #[pyo3(get)]
    status: u16,
    #[pyo3(get)]
    reason: String,
}

#[pymethods]
impl HttpParseError {
    #[new]
    fn new(status: u16, reason: String) -> Self {
        HttpParseError { status, reason }
    }

    fn __str__(&self) -> String {
        format!("{} {}", self.status, self.reason)
    }
}

impl HttpParseError {
    /// The Python exception for a parse error.
    fn err(py: Python<'_>, err: head::ParseError) -> PyErr {
        match py.get_type::<HttpParseError>().call1((err.status, err.reason)) {
            Ok(exc) => PyErr::from_value(exc),
            Err(failed) => failed,
        }
    }
}

/// Runs `f` on the bytes of a bytes-like object. `bytes` and read-only buffers are read in place; the first `keep`
/// bytes of a writable buffer (a bytearray) are copied first, because its owner may change them under us.
fn with_bytes<R>(data: &Bound<'_, PyAny>, keep: usize, f: impl FnOnce(&[u8]) -> PyResult<R>) -> PyResult<R> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return f(bytes.as_bytes());
    }
    let view = PyBuffer::<u8>::get(data)?;
    if !view.is_c_contiguous() {
        return Err(PyBufferError::new_err("the buffer must be C-contiguous"));
    }
    let len = view.len_bytes();
    if len == 0 {
        return f(&[]);
    }
    // SAFETY: `view` is a live export of a C-contiguous buffer of `len` bytes starting at `buf_ptr()` (len > 0, so
    // the pointer is valid). While exported, the memory stays allocated and cannot be resized (a bytearray refuses),
    // and `view` outlives every use of `all`. A read-only export promises no writes; a writable one is copied at
    // once, before any Python code can run, and `all` is not used after that.
    let all = unsafe { std::slice::from_raw_parts(view.buf_ptr().cast::<u8>(), len) };
    if view.readonly() {
        f(all)
    } else {
        let owned = all[..len.min(keep)].to_vec();
        f(&owned)
    }
}

/// Adds the HTTP functions and classes to `_core`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(environ::parse_request, m)?)?;
    m.add("CHUNKED", environ::CHUNKED)?;
    m.add_function(wrap_pyfunction!(response::response_head, m)?)?;
    m.add_function(wrap_pyfunction!(date::http_date_line, m)?)?;
    m.add_function(wrap_pyfunction!(serve::serve_requests, m)?)?;
    m.add_class::<decoder::ChunkedDecoder>()?;
    m.add("HttpParseError", m.py().get_type::<HttpParseError>())?;
    Ok(())
}
