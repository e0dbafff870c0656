//! `sock_send_pair(sock, head, body, timeout)`: a response's head and its first body bytes sent as one stream
//! with `writev`, for the WSGI server. Python would join the two (a copy of the body) or send them apart (two
//! segments on the wire for a small response); here neither happens, and the call costs the handler no Python
//! frames for the send.
//!
//! The timeout bounds each wait for buffer space, not the whole call (the server's `io_timeout`: a client that
//! keeps reading is never cut off, one that stops is); errors are as `sock_sendall`'s, or what `wrap` raises for
//! them: the server's own error kinds without a Python frame around the call to translate them.

use std::os::raw::c_int;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{check_signals, cooperative, outcome, with_buffer, Patience};
use crate::fdtable::Direction;

/// Sends all of `head`, then all of `body`, each wait for the socket to take more bounded by `timeout`. An error
/// is passed to `wrap` (unless None), which raises the exception to raise instead. `wrap` comes second so that
/// `functools.partial` can bind it with the socket without keywords (a partial's keywords cost a dict per call).
#[pyfunction]
pub fn sock_send_pair(
    sock: &Bound<'_, PyAny>,
    wrap: Option<&Bound<'_, PyAny>>,
    head: &Bound<'_, PyAny>,
    body: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<()> {
    // A mutable buffer (a bytearray body) is sent from a copy, as a joined head and body was: another greenlet
    // may change it, or try to resize it, while this one waits for the client.
    let sent = if body.is_exact_instance_of::<PyBytes>() {
        send_both(sock, head, body, timeout)
    } else {
        let copy = with_buffer(
            body,
            false,
            |err| err,
            |at, len| {
                // SAFETY: the view holds `len` readable bytes at `at` for the duration of this closure.
                Ok(PyBytes::new(sock.py(), unsafe { std::slice::from_raw_parts(at.cast::<u8>(), len) }))
            },
        )?;
        send_both(sock, head, copy.as_any(), timeout)
    };
    match (sent, wrap) {
        (Err(err), Some(wrap)) => match wrap.call1((err.value(sock.py()),)) {
            Err(raised) => Err(raised),
            Ok(_) => Err(err), // a `wrap` that did not raise: the error as it was
        },
        (sent, _) => sent,
    }
}

/// All of `head`, then all of `body`, in `writev` calls; each wait for the socket to take more bounded by `timeout`.
pub(crate) fn send_both(
    sock: &Bound<'_, PyAny>,
    head: &Bound<'_, PyAny>,
    body: &Bound<'_, PyAny>,
    timeout: Option<f64>,
) -> PyResult<()> {
    with_buffer(
        head,
        false,
        |err| err,
        |head_at, head_len| {
            with_buffer(
                body,
                false,
                |err| err,
                |body_at, body_len| {
                    let total = head_len + body_len;
                    let mut sent = 0;
                    while sent < total {
                        // A new patience per round: each round makes progress, and each wait gets the whole timeout.
                        let mut patience = Patience::new(timeout, 0);
                        let from = sent;
                        sent += cooperative(sock, Direction::Write, &mut patience, |fd| {
                            Ok(outcome(write_from(fd, [(head_at.cast(), head_len), (body_at.cast(), body_len)], from)))
                        })?;
                        check_signals(sock.py())?; // as sendall: a signal handler that raises ends the call
                    }
                    Ok(())
                },
            )
        },
    )
}

/// One `writev` of the two buffers' bytes from offset `skip` of their concatenation on.
fn write_from(fd: c_int, parts: [(*const u8, usize); 2], mut skip: usize) -> isize {
    let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; 2];
    let mut count = 0;
    for (at, len) in parts {
        if skip >= len {
            skip -= len;
            continue;
        }
        // SAFETY: `skip < len`, so `at + skip` is inside the buffer of `len` bytes at `at`.
        iov[count] = libc::iovec { iov_base: unsafe { at.add(skip) }.cast_mut().cast(), iov_len: len - skip };
        skip = 0;
        count += 1;
    }
    // SAFETY: the first `count` iovecs describe live, unmoved buffers (the views held by the caller) for the call;
    // writev only reads them. `count` is 1 or 2, since the caller has bytes left to send.
    unsafe { libc::writev(fd, iov.as_ptr(), c_int::try_from(count).unwrap_or(2)) }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::write_from;

    fn sent_from(skip: usize) -> Vec<u8> {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (head, body) = (b"head:", b"body");
        let parts = [(head.as_ptr(), head.len()), (body.as_ptr(), body.len())];
        let wrote = usize::try_from(write_from(ours.as_raw_fd(), parts, skip)).unwrap();
        drop(ours);
        let mut got = Vec::new();
        (&theirs).read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), wrote);
        got
    }

    #[test]
    fn writes_the_rest_of_the_two_parts_from_any_offset() {
        assert_eq!(sent_from(0), b"head:body");
        assert_eq!(sent_from(3), b"d:body");
        assert_eq!(sent_from(5), b"body");
        assert_eq!(sent_from(7), b"dy");
    }
}
