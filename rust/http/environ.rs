//! `parse_request`: one call per request head that parses it and builds its WSGI environ (PEP 3333).
//!
//! The keys are Python strings made once per process; values are Latin-1 decoded straight from the buffer (PEP
//! 3333's "native strings"). Fields are added the way gevent's pywsgi adds them: `HTTP_` plus the upper-cased name
//! with dashes turned into underscores, names containing an underscore dropped (they would collide with the dashed
//! spelling), a repeated field joined to the value already in the environ with "," (a cookie field, any key
//! containing "COOKIE", with "; ").

use std::borrow::Cow;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};

use super::head::{self, Body, Head, Version, MAX_HEAD};
use super::names::{self, NAMES};
use super::{with_bytes, HttpParseError};

/// `body` value returned for a chunked request body.
pub const CHUNKED: i64 = -1;

/// Python strings made once: environ keys and common values.
struct Strings {
    request_method: Py<PyString>,
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    query_string: Py<PyString>,
    server_protocol: Py<PyString>,
    request_uri: Py<PyString>,
    raw_uri: Py<PyString>,
    content_type: Py<PyString>,
    content_length: Py<PyString>,
    server_name: Py<PyString>,
    empty: Py<PyString>,
    http10: Py<PyString>,
    http11: Py<PyString>,
    /// Common methods and their strings.
    methods: Vec<(&'static [u8], Py<PyString>)>,
    /// `HTTP_...` key of each name in `names::NAMES`.
    field_keys: Vec<Py<PyString>>,
}

static STRINGS: PyOnceLock<Strings> = PyOnceLock::new();

/// The environ key for a field name: `HTTP_` and the name upper-cased, dashes turned into underscores.
fn field_key(name: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"HTTP_");
    out.extend(name.iter().map(|&b| if b == b'-' { b'_' } else { b.to_ascii_uppercase() }));
}

impl Strings {
    fn get(py: Python<'_>) -> &Strings {
        STRINGS.get_or_init(py, || {
            let s = |text: &str| PyString::intern(py, text).unbind();
            let mut key = Vec::new();
            let field_keys = NAMES
                .iter()
                .map(|name| {
                    field_key(name.as_bytes(), &mut key);
                    s(&String::from_utf8_lossy(&key))
                })
                .collect();
            let methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"];
            Strings {
                request_method: s("REQUEST_METHOD"),
                script_name: s("SCRIPT_NAME"),
                path_info: s("PATH_INFO"),
                query_string: s("QUERY_STRING"),
                server_protocol: s("SERVER_PROTOCOL"),
                request_uri: s("REQUEST_URI"),
                raw_uri: s("RAW_URI"),
                content_type: s("CONTENT_TYPE"),
                content_length: s("CONTENT_LENGTH"),
                server_name: s("SERVER_NAME"),
                empty: s(""),
                http10: s("HTTP/1.0"),
                http11: s("HTTP/1.1"),
                methods: methods.iter().map(|m| (m.as_bytes(), s(m))).collect(),
                field_keys,
            }
        })
    }
}

/// A `str` holding `bytes` decoded as Latin-1 (every byte is one code point, so this cannot fail on content).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = ffi::Py_ssize_t::try_from(bytes.len())?;
    // SAFETY: the pointer and length describe `bytes`, alive for the call; CPython copies them into a new str. A
    // NULL `errors` selects strict mode, irrelevant for Latin-1. The result is a new reference or NULL with an
    // exception set, which `from_owned_ptr_or_err` turns into an error; a non-NULL result is a str.
    unsafe {
        let raw = ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        Ok(Bound::from_owned_ptr_or_err(py, raw)?.cast_into_unchecked())
    }
}

/// `%XX` escapes decoded, anything else (a lone `%` included) kept as is: `urllib.parse.unquote`'s rules.
fn percent_decode(path: &[u8]) -> Cow<'_, [u8]> {
    if !path.contains(&b'%') {
        return Cow::Borrowed(path);
    }
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(path.len());
    let mut rest = path;
    while let [first, tail @ ..] = rest {
        if let (b'%', [hi, lo, after @ ..]) = (first, tail) {
            if let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo)) {
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).unwrap_or_default());
                rest = after;
                continue;
            }
        }
        out.push(*first);
        rest = tail;
    }
    Cow::Owned(out)
}

/// A request target's path part split from its authority: an absolute-form target (`http://host/p`) gives
/// `(Some(b"host"), b"/p")`, any other `(None, path)`.
fn split_target(path: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(colon) = path.iter().position(|&b| b == b':') else { return (None, path) };
    let (scheme, rest) = path.split_at(colon);
    let is_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    match rest.strip_prefix(b"://") {
        Some(authority_and_path) if is_scheme => {
            let start = authority_and_path.iter().position(|&b| b == b'/').unwrap_or(authority_and_path.len());
            let (authority, path) = authority_and_path.split_at(start);
            (Some(authority).filter(|a| !a.is_empty()), if path.is_empty() { b"/" } else { path })
        }
        _ => (None, path),
    }
}

/// An authority without its user info: `host[:port]`.
fn authority_host_port(authority: &[u8]) -> &[u8] {
    authority.rsplit(|&b| b == b'@').next().unwrap_or(authority)
}

/// The host of `host[:port]` (`[v6]:port` too): without the port.
fn host_without_port(host_port: &[u8]) -> &[u8] {
    let port_from = host_port.iter().rposition(|&b| b == b']').unwrap_or(0);
    match host_port[port_from..].iter().rposition(|&b| b == b':') {
        Some(colon) => &host_port[..port_from + colon],
        None => host_port,
    }
}

/// Puts `value` under `key` unless a value is there already, which then gets `, value` (`; value` for Cookie).
fn add_field(
    env: &Bound<'_, PyDict>,
    key: &Bound<'_, PyString>,
    value: Bound<'_, PyString>,
    cookie: bool,
) -> PyResult<()> {
    let py = env.py();
    // SAFETY: `env`, `key` and `value` are live objects of the right types. PyDict_SetDefault returns a borrowed
    // reference to the value now stored under `key` (ours, or the one already there), or NULL with an exception set.
    // The borrowed pointer is used at once, while `env` still holds it, and turned into an owned reference.
    let stored = unsafe {
        let raw = PyDict_SetDefault(env.as_ptr(), key.as_ptr(), value.as_ptr());
        Bound::from_borrowed_ptr_or_err(py, raw)?
    };
    if stored.is(&value) {
        return Ok(());
    }
    let joined = stored.add(if cookie { "; " } else { "," })?.add(value)?;
    env.set_item(key, joined)
}

extern "C" {
    // Not in pyo3-ffi: CPython's dict.setdefault, stable in the full (non-limited) C API since 3.4.
    fn PyDict_SetDefault(
        dict: *mut ffi::PyObject,
        key: *mut ffi::PyObject,
        default: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// The environ of a parsed head: a copy of `base` plus the request's keys.
fn build_environ<'py>(py: Python<'py>, head: &Head<'_>, base: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    let s = Strings::get(py);
    let env = base.copy()?;
    let method = match s.methods.iter().find(|(m, _)| *m == head.method) {
        Some((_, cached)) => cached.bind(py).clone(),
        None => latin1(py, head.method)?,
    };
    env.set_item(&s.request_method, method)?;
    env.set_item(&s.script_name, &s.empty)?;
    let (path, query) = match head.target.iter().position(|&b| b == b'?') {
        Some(q) => (&head.target[..q], &head.target[q + 1..]),
        None => (head.target, &b""[..]),
    };
    let (authority, path) = split_target(path);
    env.set_item(&s.path_info, latin1(py, &percent_decode(path))?)?;
    env.set_item(&s.query_string, if query.is_empty() { s.empty.bind(py).clone() } else { latin1(py, query)? })?;
    let protocol = match head.version {
        Version::Http10 => &s.http10,
        Version::Http11 => &s.http11,
    };
    env.set_item(&s.server_protocol, protocol)?;
    let uri = latin1(py, head.target)?;
    env.set_item(&s.request_uri, &uri)?;
    env.set_item(&s.raw_uri, uri)?;
    if let Body::Length(length) = head.body {
        env.set_item(&s.content_length, length.to_string())?;
    }

    let mut content_type = false;
    let mut key = Vec::new();
    for field in &head.headers {
        match field.known {
            Some(names::CONTENT_LENGTH) => {}
            Some(names::CONTENT_TYPE) => {
                // The first Content-Type counts, as with gevent.
                if !content_type {
                    env.set_item(&s.content_type, latin1(py, field.value)?)?;
                    content_type = true;
                }
            }
            Some(known) => {
                let key = s.field_keys[usize::from(known)].bind(py);
                add_field(&env, key, latin1(py, field.value)?, known == names::COOKIE)?;
            }
            None if field.name.contains(&b'_') => {}
            None => {
                field_key(field.name, &mut key);
                // As gevent: every key naming a cookie (Cookie2, ...) joins with "; ".
                let cookie = key.windows(6).any(|w| w == b"COOKIE");
                add_field(&env, &latin1(py, &key)?, latin1(py, field.value)?, cookie)?;
            }
        }
    }
    if let Some(authority) = authority {
        // RFC 9112 section 3.2.2: an absolute-form target's authority replaces the Host field.
        let host_port = authority_host_port(authority);
        env.set_item(s.field_keys[usize::from(names::HOST)].bind(py), latin1(py, host_port)?)?;
        env.set_item(&s.server_name, latin1(py, host_without_port(host_port))?)?;
    }
    Ok(env)
}

/// What `parse_request` returns for a complete head: (environ, consumed, keep_alive, body).
pub(super) type Parsed<'py> = (Bound<'py, PyDict>, usize, bool, i64);

/// `parse_request(buf, base_environ)`: `None` while `buf` holds only part of a head, else
/// `(environ, consumed, keep_alive, body)` where `body` is the Content-Length (0 without a body) or `CHUNKED`.
/// Raises `HttpParseError` for a request to refuse.
#[pyfunction]
pub fn parse_request<'py>(
    py: Python<'py>,
    buf: &Bound<'py, PyAny>,
    base_environ: &Bound<'py, PyDict>,
) -> PyResult<Option<Parsed<'py>>> {
    // The parser never looks past MAX_HEAD bytes, so a copied buffer is cut there.
    with_bytes(buf, MAX_HEAD, |bytes| {
        let head = match head::parse(bytes) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(None),
            Err(err) => return Err(HttpParseError::err(py, err)),
        };
        let body = match head.body {
            Body::Absent => 0,
            // `head` caps Content-Length at i64::MAX.
            Body::Length(length) => i64::try_from(length).unwrap_or(i64::MAX),
            Body::Chunked => CHUNKED,
        };
        let environ = build_environ(py, &head, base_environ)?;
        Ok(Some((environ, head.consumed, head.keep_alive, body)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_matches_unquote() {
        assert_eq!(&*percent_decode(b"/a%20b%2Fc%zz%4%"), b"/a b/c%zz%4%");
        assert_eq!(&*percent_decode(b"%e9%E9%00"), b"\xe9\xe9\x00");
        assert!(matches!(percent_decode(b"/plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn absolute_form_targets_split_into_authority_and_path() {
        assert_eq!(split_target(b"http://example.com/a/b"), (Some(&b"example.com"[..]), &b"/a/b"[..]));
        assert_eq!(split_target(b"HTTPS://example.com:8443"), (Some(&b"example.com:8443"[..]), &b"/"[..]));
        assert_eq!(split_target(b"/a:b://c"), (None, &b"/a:b://c"[..]));
        assert_eq!(split_target(b"*"), (None, &b"*"[..]));
        assert_eq!(split_target(b"example.com:443"), (None, &b"example.com:443"[..]));
    }

    #[test]
    fn authority_hosts_lose_user_info_and_port() {
        assert_eq!(authority_host_port(b"user:pw@example.com:80"), b"example.com:80");
        assert_eq!(host_without_port(b"example.com:8080"), b"example.com");
        assert_eq!(host_without_port(b"example.com"), b"example.com");
        assert_eq!(host_without_port(b"[::1]:80"), b"[::1]");
        assert_eq!(host_without_port(b"[::1]"), b"[::1]");
    }

    #[test]
    fn field_keys_are_cgi_style() {
        let mut key = Vec::new();
        field_key(b"X-Forwarded-For", &mut key);
        assert_eq!(key, b"HTTP_X_FORWARDED_FOR");
    }
}
