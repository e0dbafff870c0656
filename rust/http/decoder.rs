//! `ChunkedDecoder`: the chunked-body decoder as a small Python class for the server's `wsgi.input`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::chunked::Decoder;
use super::{with_bytes, HttpParseError};

/// Decodes one chunked request body from the bytes fed to it, in pieces of any size.
#[pyclass(module = "ferrovent._core")]
#[derive(Default)]
pub struct ChunkedDecoder {
    state: Decoder,
}

#[pymethods]
impl ChunkedDecoder {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// `decode(data) -> (payload, used)`: the chunk data found in `data` and how many bytes of `data` were used
    /// (all of them unless the body ended inside `data`; the rest belongs to the next request). Raises
    /// `HttpParseError` (400) on bad framing, and again on every later call; but chunk data before the bad framing
    /// is handed out first (`used` then stops where that data ends), so that a reader gets every good byte, as
    /// gevent's reads do, and meets the error only when it reads on.
    fn decode<'py>(slf: &Bound<'py, Self>, data: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        let py = slf.py();
        // The state is copied out and back so no borrow of `slf` is held while Python allocates.
        let mut state = slf.try_borrow()?.state;
        let decoded = with_bytes(data, usize::MAX, |bytes| {
            let mut pieces: Vec<&[u8]> = Vec::new();
            let used = match state.decode(bytes, |piece| pieces.push(piece)) {
                Ok(used) => used,
                // Each piece is a slice of `bytes`: the last one ends where the good data does.
                Err(_) if !pieces.is_empty() => {
                    pieces.last().map_or(0, |last| last.as_ptr() as usize + last.len() - bytes.as_ptr() as usize)
                }
                Err(err) => return Err(HttpParseError::err(py, err)),
            };
            let total = pieces.iter().map(|piece| piece.len()).sum();
            let payload = PyBytes::new_with(py, total, |out| {
                let mut at = 0;
                for piece in &pieces {
                    out[at..at + piece.len()].copy_from_slice(piece);
                    at += piece.len();
                }
                Ok(())
            })?;
            Ok((payload, used))
        });
        slf.try_borrow_mut()?.state = state;
        decoded
    }

    /// Whether the last chunk and the trailers have been read.
    #[getter]
    fn done(&self) -> bool {
        self.state.done()
    }
}
