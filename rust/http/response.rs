//! `response_head`: the WSGI server's `start_response` for the common case, one call instead of a Python loop over
//! the headers. It only ever answers for responses it can build exactly as the Python code would (a `str` status
//! starting with three digits, a list or tuple of `(str, str)` pairs, everything Latin-1, no CR or LF, not a 204
//! or 304); for anything else it returns `None` and the handler's Python path, which is the specification and
//! raises gevent's errors, runs instead. So it never raises for what the application gave. The server's `Date`
//! line is `date`'s, also returned, for the handler's `provided_date` to take out of the head.
//!
//! The core (`Head`) is plain Rust over byte slices; the edge reads the `str` objects' Latin-1 bytes in place.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyStringData, PyTuple};

use super::date;

/// What the server needs to know of the headers the application gave.
#[derive(Default, Debug, PartialEq, Eq)]
struct Steering {
    /// Index of the last Content-Length header (the last one counts, as in the Python path).
    length: Option<usize>,
    /// Index of the last Date header.
    date: Option<usize>,
    /// The last Connection header's value, lower-cased, is `close`.
    close: bool,
    /// A Connection header was given at all.
    connection: bool,
    /// A Content-Length or Transfer-Encoding header frames the body.
    framed: bool,
}

/// The head as the handler sends it (without the framing header and the final blank line), or None where the
/// Python path must decide. `date` is the server's `Date: ...\r\n` line, added when the application gave none;
/// `close` is whether the connection will close after this response, said in the head when the application's
/// headers say nothing about the connection (and always said, either way, to an HTTP/1.0 client).
fn build(
    status: &[u8],
    headers: &[(&[u8], &[u8])],
    date: &[u8],
    http11: bool,
    close: bool,
) -> Option<(Vec<u8>, u16, Steering)> {
    let code = match status {
        [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => return None,
    };
    if code == 204 || code == 304 || has_line_break(status) {
        return None;
    }
    let size: usize = headers.iter().map(|(name, value)| name.len() + value.len() + 4).sum();
    let mut head = Vec::with_capacity(status.len() + size + date.len() + 64);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status);
    head.extend_from_slice(b"\r\n");
    let mut steering = Steering::default();
    for (index, &(name, value)) in headers.iter().enumerate() {
        if has_line_break(name) || has_line_break(value) {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            steering.length = Some(index);
            steering.framed = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            steering.connection = true;
            steering.close = value.eq_ignore_ascii_case(b"close");
        } else if name.eq_ignore_ascii_case(b"date") {
            steering.date = Some(index);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            steering.framed = true;
        }
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if steering.date.is_none() {
        head.extend_from_slice(date);
    }
    if !steering.connection {
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if !http11 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
    }
    Some((head, code, steering))
}

fn has_line_break(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == b'\r' || b == b'\n')
}

/// The Latin-1 bytes of an exact `str` whose code points all fit in one byte; None for anything else.
fn latin1_bytes<'a>(object: &'a Bound<'_, PyAny>) -> Option<&'a [u8]> {
    let text = object.cast_exact::<PyString>().ok()?;
    // SAFETY: `text` is a live exact str borrowed for 'a; its canonical data stays put and unchanged while it is
    // alive (str objects are immutable), and the slice is not used past 'a.
    match unsafe { text.data() }.ok()? {
        PyStringData::Ucs1(bytes) => Some(bytes),
        _ => None,
    }
}

/// The application's headers as `(name, value)` objects.
type Pairs<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

/// The `(name, value)` of each of `items` (`count` of them), or None if one is not an exact 2-tuple. Read straight
/// from the list or tuple, without a first copy of its items.
fn pairs_of<'py>(count: usize, items: impl Iterator<Item = Bound<'py, PyAny>>) -> PyResult<Option<Pairs<'py>>> {
    let mut pairs = Vec::with_capacity(count);
    for item in items {
        let Ok(pair) = item.cast_exact::<PyTuple>() else { return Ok(None) };
        if pair.len() != 2 {
            return Ok(None);
        }
        pairs.push((pair.get_item(0)?, pair.get_item(1)?));
    }
    Ok(Some(pairs))
}

/// What `response_head` returns: (head, code, Content-Length or None, Date or None, framed, says close, the
/// server's Date line in the head or "").
type Answer<'py> =
    (Bound<'py, PyBytes>, u16, Option<Bound<'py, PyAny>>, Option<Bound<'py, PyAny>>, bool, bool, Bound<'py, PyString>);

/// `response_head(status, headers, http11, close)`: the response head for a common `start_response` call, or None
/// when the handler's Python path must build it (see the module doc).
#[pyfunction]
pub fn response_head<'py>(
    py: Python<'py>,
    status: &Bound<'py, PyAny>,
    headers: &Bound<'py, PyAny>,
    http11: bool,
    close: bool,
) -> PyResult<Option<Answer<'py>>> {
    let date_line = date::line(py);
    let (Some(status_bytes), Some(date)) = (latin1_bytes(status), latin1_bytes(&date_line)) else { return Ok(None) };
    let pairs = if let Ok(list) = headers.cast_exact::<PyList>() {
        pairs_of(list.len(), list.iter())?
    } else if let Ok(tuple) = headers.cast_exact::<PyTuple>() {
        pairs_of(tuple.len(), tuple.iter())?
    } else {
        None
    };
    let Some(pairs) = pairs else { return Ok(None) };
    let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(pairs.len());
    for (name, value) in &pairs {
        let (Some(name), Some(value)) = (latin1_bytes(name), latin1_bytes(value)) else { return Ok(None) };
        fields.push((name, value));
    }
    let Some((head, code, steering)) = build(status_bytes, &fields, date, http11, close) else { return Ok(None) };
    let length = steering.length.map(|index| pairs[index].1.clone());
    let provided_date = steering.date.map(|index| pairs[index].1.clone());
    let date_line = if provided_date.is_some() { PyString::new(py, "") } else { date_line };
    Ok(Some((PyBytes::new(py, &head), code, length, provided_date, steering.framed, steering.close, date_line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &[u8] = b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n";

    fn head(status: &[u8], headers: &[(&[u8], &[u8])], http11: bool, close: bool) -> Option<Vec<u8>> {
        build(status, headers, DATE, http11, close).map(|(head, _, _)| head)
    }

    #[test]
    fn plain_head_gets_the_date() {
        let (head, code, steering) = build(b"200 OK", &[(b"Content-Type", b"text/plain")], DATE, true, false).unwrap();
        assert_eq!(head, [&b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"[..], DATE].concat());
        assert_eq!(code, 200);
        assert_eq!(steering, Steering::default());
    }

    #[test]
    fn steering_headers_are_found_in_any_case() {
        let headers: [(&[u8], &[u8]); 4] =
            [(b"content-LENGTH", b"5"), (b"DATE", b"x"), (b"Connection", b"Close"), (b"Content-Length", b"6")];
        let (head, _, steering) = build(b"200 OK", &headers, DATE, true, false).unwrap();
        assert_eq!(steering.length, Some(3));
        assert_eq!(steering.date, Some(1));
        assert!(steering.close && steering.connection && steering.framed);
        assert!(!head.ends_with(DATE));
    }

    #[test]
    fn connection_lines_follow_the_protocol() {
        let bare = |http11, close| head(b"200 OK", &[], http11, close).unwrap();
        assert!(bare(true, false).ends_with(DATE));
        assert!(bare(true, true).ends_with(b"Connection: close\r\n"));
        assert!(bare(false, true).ends_with(b"Connection: close\r\n"));
        assert!(bare(false, false).ends_with(b"Connection: keep-alive\r\n"));
        let given = head(b"200 OK", &[(b"Connection", b"keep-alive")], true, true).unwrap();
        assert!(given.ends_with(DATE));
    }

    #[test]
    fn unusual_responses_go_to_the_python_path() {
        assert!(head(b"20 OK", &[], true, false).is_none());
        assert!(head(b"2x0 OK", &[], true, false).is_none());
        assert!(head(b"204 No Content", &[], true, false).is_none());
        assert!(head(b"304 Not Modified", &[], true, false).is_none());
        assert!(head(b"200 OK\r\nX: y", &[], true, false).is_none());
        assert!(head(b"200 OK", &[(b"X", b"a\nb")], true, false).is_none());
        assert!(head(b"200 OK", &[(b"X\r", b"ab")], true, false).is_none());
    }
}
