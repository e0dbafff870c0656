//! The HTTP/1.x request head (request line and header fields, up to the empty line), parsed in place.
//!
//! `parse` reads a buffer that may hold part of a head, a whole head, or a head followed by body bytes or more
//! pipelined requests. It borrows every slice from the buffer (no copies) and answers one of three ways: more bytes
//! are needed, here is the head and how many bytes it took, or the request is bad and this is the status to send.
//!
//! The parser walks the buffer once, left to right, and every verdict depends only on the bytes up to the position
//! where it is reached: a limit is a position (byte 8192 of the request line, byte 65536 of the head, the first
//! byte of the 101st field line), never a length measured after the fact. So feeding a request in pieces gives
//! "need more" for every prefix that stops short of the decisive byte, and then exactly what the whole buffer gives.
//! The property tests and the fuzz target check that for arbitrary input.
//!
//! Strictness follows RFC 9112 where it matters for request smuggling: one SP between the request-line parts,
//! no whitespace before the colon, no obs-fold, no bare CR, no control characters in values, Content-Length and
//! Transfer-Encoding checked for every conflict, and an HTTP/1.1 request must carry a Host field (section 3.2).
//! A bare LF is accepted as a line end, as RFC 9112 section 2.2 allows and as gevent (through Python's readline)
//! does; so are up to `MAX_LEADING_EMPTY_LINES` empty lines before the request line (more: 400).

use super::names::{self, Known};

/// Longest request line, CR LF excluded (longer: 414).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest head, from the first byte (leading empty lines included) to the final LF (longer: 431).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields (more: 431).
pub const MAX_HEADERS: usize = 100;
/// Most empty lines ignored before a request line (more: 400), so that they are never scanned again and again.
pub const MAX_LEADING_EMPTY_LINES: usize = 4;

/// A request that cannot be served: the status to answer with and a short reason for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    pub status: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> ParseError {
    ParseError { status: 400, reason }
}

const LINE_TOO_LONG: ParseError = ParseError { status: 414, reason: "request line too long" };
const HEAD_TOO_LARGE: ParseError = ParseError { status: 431, reason: "request head too large" };
const TOO_MANY_FIELDS: ParseError = ParseError { status: 431, reason: "too many header fields" };
const BARE_CR: ParseError = bad("CR not followed by LF");

/// The request's HTTP version; anything else is answered 505 (or 400 if it is not a version at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Neither Content-Length nor Transfer-Encoding: no body.
    Absent,
    /// `Content-Length: n` (n may be 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One header field; `value` has its leading and trailing whitespace removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The name's index in `names::NAMES`, if it is a name we know.
    pub known: Option<Known>,
}

/// A complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub version: Version,
    pub headers: Vec<Header<'a>>,
    pub body: Body,
    /// Whether the connection may carry another request after this one (version default and Connection).
    pub keep_alive: bool,
    /// Bytes of the buffer the head took, leading empty lines and the final empty line included.
    pub consumed: usize,
}

/// Parses the request head at the start of `buf`: `Ok(None)` if `buf` holds only part of a head so far.
pub fn parse(buf: &[u8]) -> Result<Option<Head<'_>>, ParseError> {
    match (Parser { buf }).head() {
        Ok(head) => Ok(Some(head)),
        Err(Halt::More) => Ok(None),
        Err(Halt::Fail(err)) => Err(err),
    }
}

/// Why parsing stopped short of a head.
enum Halt {
    More,
    Fail(ParseError),
}

impl From<ParseError> for Halt {
    fn from(err: ParseError) -> Self {
        Halt::Fail(err)
    }
}

/// A set of bytes: `table[b]` says whether `b` is in it.
struct Class {
    table: [bool; 256],
    /// If not 0, every byte in `wide..0x7f` and `0x80..=0xff` is in the set, so runs of such bytes can be skipped
    /// eight at a time (`wide_run`).
    wide: u8,
}

pub(crate) const fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        )
}

/// The membership table of the byte set named by `kind` (a `const fn` cannot take a closure).
const fn class(kind: u8) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match kind {
            TOKEN_KIND => is_tchar(c),
            VERSION_KIND => is_tchar(c) || c == b'/',
            // Visible ASCII and, leniently, bytes >= 0x80 (clients send raw UTF-8 paths).
            TARGET_KIND => (c > 0x20 && c < 0x7f) || c >= 0x80,
            // Visible ASCII, SP, HTAB and obs-text.
            VALUE_KIND => (c >= 0x20 && c != 0x7f) || c == b'\t',
            _ => c == b' ' || c == b'\t',
        };
        b += 1;
    }
    table
}

const TOKEN_KIND: u8 = 0;
const VERSION_KIND: u8 = 1;
const TARGET_KIND: u8 = 2;
const VALUE_KIND: u8 = 3;
const OWS_KIND: u8 = 4;

/// Field names and methods: RFC 9110 token characters.
const TOKEN: Class = Class { table: class(TOKEN_KIND), wide: 0 };
/// The version field's bytes: enough to take in "HTTP/1.1" and any garbage of token characters.
const VERSION: Class = Class { table: class(VERSION_KIND), wide: 0 };
/// Request-target bytes.
const TARGET: Class = Class { table: class(TARGET_KIND), wide: 0x21 };
/// Field-value bytes.
const VALUE: Class = Class { table: class(VALUE_KIND), wide: 0x20 };
/// Optional whitespace.
const OWS: Class = Class { table: class(OWS_KIND), wide: 0 };

/// How many leading bytes of `bytes`, in whole 8-byte words, are all in `wide..0x7f` or `0x80..=0xff`
/// (`0 < wide <= 0x80`). Uses the exact word tests "has a byte below n" and "has a zero byte" of the bit-twiddling
/// folklore: a borrow between bytes only starts at a byte that makes the test true anyway.
#[inline]
fn wide_run(bytes: &[u8], wide: u8) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // High bit of each byte that is below `wide` or is DEL (0x7f), possibly with false alarms only in bytes above
    // one that is: so zero exactly when every byte is wide.
    let narrow = |word: &[u8]| {
        let mut le = [0u8; 8];
        le.copy_from_slice(word);
        let x = u64::from_le_bytes(le);
        let below = x.wrapping_sub(ONES * u64::from(wide)) & !x;
        let del = x ^ (ONES * 0x7f);
        (below | (del.wrapping_sub(ONES) & !del)) & HIGHS
    };
    let mut run = 0;
    // Four words per step while they are all wide, then word by word.
    for block in bytes.chunks_exact(32) {
        if block.chunks_exact(8).fold(0, |flags, word| flags | narrow(word)) != 0 {
            break;
        }
        run += 32;
    }
    for word in bytes[run..].chunks_exact(8) {
        if narrow(word) != 0 {
            break;
        }
        run += 8;
    }
    run
}

/// `bytes` without leading and trailing SP and HTAB.
pub fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The request line's parts and where the next line starts.
struct RequestLine<'a> {
    method: &'a [u8],
    target: &'a [u8],
    version: Version,
    next: usize,
}

struct Parser<'a> {
    buf: &'a [u8],
}

impl<'a> Parser<'a> {
    /// The byte at `i`: `More` if the buffer ends before it, 431 if it lies past the head limit.
    #[inline]
    fn at(&self, i: usize) -> Result<u8, Halt> {
        if i >= MAX_HEAD {
            return Err(HEAD_TOO_LARGE.into());
        }
        self.buf.get(i).copied().ok_or(Halt::More)
    }

    /// The first position at or after `from` whose byte is not in `class`, looking no further than `limit` nor
    /// the buffer's end (the position returned then is where the look stopped; `at` tells what lies there).
    #[inline]
    fn skip(&self, from: usize, class: &Class, limit: usize) -> usize {
        let end = self.buf.len().min(limit);
        if from >= end {
            return from;
        }
        let bytes = &self.buf[from..end];
        let outside = |b: &u8| !class.table[usize::from(*b)];
        if class.wide == 0 {
            return bytes.iter().position(outside).map_or(end, |n| from + n);
        }
        let mut i = 0;
        loop {
            i += wide_run(&bytes[i..], class.wide);
            // One word byte by byte: it holds a byte outside the class, or one the word test is too coarse for
            // (HTAB in a value), after which the fast path resumes.
            let word_end = bytes.len().min(i + 8);
            if let Some(n) = bytes[i..word_end].iter().position(outside) {
                return from + i + n;
            }
            if word_end == bytes.len() {
                return end;
            }
            i = word_end;
        }
    }

    /// The position after the line end (CR LF or LF) that starts at `pos`, whose byte is CR or LF.
    #[inline]
    fn line_end(&self, pos: usize) -> Result<usize, Halt> {
        if self.at(pos)? == b'\r' {
            if self.at(pos + 1)? != b'\n' {
                return Err(BARE_CR.into());
            }
            return Ok(pos + 2);
        }
        Ok(pos + 1)
    }

    fn head(&self) -> Result<Head<'a>, Halt> {
        let mut pos = 0;
        // RFC 9112 section 2.2: a few empty lines before the request line are ignored.
        let mut empty_lines = 0;
        while let b'\r' | b'\n' = self.at(pos)? {
            empty_lines += 1;
            if empty_lines > MAX_LEADING_EMPTY_LINES {
                return Err(bad("too many empty lines before the request line").into());
            }
            pos = self.line_end(pos)?;
        }
        let RequestLine { method, target, version, next: mut pos } = self.request_line(pos)?;
        let mut headers = Vec::with_capacity(16);
        let mut framing = Framing::default();
        loop {
            if let b'\r' | b'\n' = self.at(pos)? {
                pos = self.line_end(pos)?;
                break;
            }
            if headers.len() == MAX_HEADERS {
                return Err(TOO_MANY_FIELDS.into());
            }
            let (header, next) = self.field_line(pos)?;
            framing.note(&header)?;
            headers.push(header);
            pos = next;
        }
        let body = framing.body(version)?;
        if version == Version::Http11 && !framing.host {
            return Err(bad("HTTP/1.1 request without Host").into()); // RFC 9112 section 3.2
        }
        let keep_alive = match version {
            Version::Http11 => !framing.close,
            Version::Http10 => framing.keep_alive && !framing.close,
        };
        Ok(Head { method, target, version, headers, body, keep_alive, consumed: pos })
    }

    /// Method SP request-target SP HTTP-version, then the line end.
    fn request_line(&self, start: usize) -> Result<RequestLine<'a>, Halt> {
        // From `limit` on, a request line byte may only be its end.
        let limit = start + MAX_REQUEST_LINE;
        let window = limit.min(MAX_HEAD);
        let byte = |pos: usize| -> Result<u8, Halt> {
            let b = self.at(pos)?;
            if pos >= limit && b != b'\r' && b != b'\n' {
                return Err(LINE_TOO_LONG.into());
            }
            Ok(b)
        };

        let method_end = self.skip(start, &TOKEN, window);
        if byte(method_end)? != b' ' || method_end == start {
            return Err(bad("invalid method").into());
        }
        let target_start = method_end + 1;
        let target_end = self.skip(target_start, &TARGET, window);
        match byte(target_end)? {
            _ if target_end == target_start => return Err(bad("missing request target").into()),
            b' ' => {}
            b'\r' | b'\n' => return Err(bad("missing HTTP version").into()),
            _ => return Err(bad("invalid request target").into()),
        }
        let version_start = target_end + 1;
        let version_end = self.skip(version_start, &VERSION, window);
        if !matches!(byte(version_end)?, b'\r' | b'\n') {
            return Err(bad("invalid HTTP version").into());
        }
        let next = self.line_end(version_end)?;
        let version = parse_version(&self.buf[version_start..version_end])?;
        Ok(RequestLine {
            method: &self.buf[start..method_end],
            target: &self.buf[target_start..target_end],
            version,
            next,
        })
    }

    /// One `name: value` line starting at `start`; returns the field and the next line's start.
    fn field_line(&self, start: usize) -> Result<(Header<'a>, usize), Halt> {
        let name_end = self.skip(start, &TOKEN, MAX_HEAD);
        match self.at(name_end)? {
            b':' if name_end > start => {}
            b' ' | b'\t' if name_end == start => return Err(bad("obs-fold or whitespace before a field name").into()),
            b' ' | b'\t' => return Err(bad("whitespace between field name and colon").into()),
            _ => return Err(bad("invalid field name").into()),
        }
        let value_start = self.skip(name_end + 1, &OWS, MAX_HEAD);
        let value_end = self.skip(value_start, &VALUE, MAX_HEAD);
        if !matches!(self.at(value_end)?, b'\r' | b'\n') {
            return Err(bad("control character in field value").into());
        }
        let next = self.line_end(value_end)?;
        let name = &self.buf[start..name_end];
        let value = trim_ows(&self.buf[value_start..value_end]);
        Ok((Header { name, value, known: names::lookup(name) }, next))
    }
}

fn parse_version(field: &[u8]) -> Result<Version, ParseError> {
    match field {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(ParseError { status: 505, reason: "HTTP version not supported" })
        }
        _ => Err(bad("invalid HTTP version")),
    }
}

/// What the fields say about framing and the connection, gathered as each field is parsed.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// The last transfer coding listed so far is `chunked`.
    chunked_last: bool,
    /// A transfer coding other than `chunked` was listed.
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    host: bool,
}

impl Framing {
    fn note(&mut self, header: &Header<'_>) -> Result<(), ParseError> {
        let Some(known) = header.known else { return Ok(()) };
        let elements = header.value.split(|&b| b == b',').map(trim_ows);
        match known {
            names::CONTENT_LENGTH => {
                for element in elements {
                    let length = parse_length(element)?;
                    if self.content_length.is_some_and(|seen| seen != length) {
                        return Err(bad("conflicting Content-Length values"));
                    }
                    self.content_length = Some(length);
                }
            }
            names::TRANSFER_ENCODING => {
                self.transfer_encoding = true;
                // RFC 9110 section 5.6.1: empty list elements are ignored.
                for coding in elements.filter(|e| !e.is_empty()) {
                    if self.chunked_last {
                        return Err(bad("chunked is not the final transfer coding"));
                    }
                    self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                    self.other_coding |= !self.chunked_last;
                }
            }
            names::CONNECTION => {
                for option in elements {
                    self.close |= option.eq_ignore_ascii_case(b"close");
                    self.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            names::HOST => {
                if self.host {
                    return Err(bad("more than one Host field"));
                }
                self.host = true;
            }
            _ => {}
        }
        Ok(())
    }

    fn body(&self, version: Version) -> Result<Body, ParseError> {
        if !self.transfer_encoding {
            return Ok(self.content_length.map_or(Body::Absent, Body::Length));
        }
        if self.content_length.is_some() {
            return Err(bad("both Content-Length and Transfer-Encoding"));
        }
        if version == Version::Http10 {
            // RFC 9112 section 6.1: the framing of an HTTP/1.0 message with Transfer-Encoding is faulty.
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !self.chunked_last {
            return Err(bad("chunked is not the final transfer coding"));
        }
        if self.other_coding {
            return Err(ParseError { status: 501, reason: "transfer coding not implemented" });
        }
        Ok(Body::Chunked)
    }
}

/// `1*DIGIT`, at most `i64::MAX` (so it fits a Python int and a file offset alike).
fn parse_length(digits: &[u8]) -> Result<u64, ParseError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad("invalid Content-Length"));
    }
    digits
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or(bad("Content-Length too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Err(err) => err.status,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        }
    }

    fn assert_status(requests: &[&[u8]], want: u16) {
        for request in requests {
            assert_eq!(status(request), want, "{}", String::from_utf8_lossy(request));
        }
    }

    fn head(buf: &[u8]) -> Head<'_> {
        parse(buf).expect("valid").expect("complete")
    }

    const BROWSER: &[u8] = b"GET /search?q=rust%20http HTTP/1.1\r\n\
        Host: example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
        Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
        Accept-Language: en-US,en;q=0.5\r\n\
        Accept-Encoding: gzip, deflate, br\r\n\
        Connection: keep-alive\r\n\
        Cookie: session=abc123; theme=dark\r\n\r\n";

    #[test]
    fn word_skipping_agrees_with_the_byte_tables() {
        for class in [&TARGET, &VALUE] {
            let wide = |b: u8| (b >= class.wide && b != 0x7f) || b >= 0x80;
            for b in 0..=255u8 {
                assert!(!wide(b) || class.table[usize::from(b)], "{b:#x} skipped but outside the class");
                // In the four-word blocks, in the single words after them, and in the tail too short for either.
                for at in 0..70 {
                    let mut bytes = [b'a'; 70];
                    bytes[at] = b;
                    let want = if wide(b) { 64 } else { at / 8 * 8 };
                    assert_eq!(wide_run(&bytes, class.wide), want, "byte {b:#x} at {at}");
                }
            }
            // Every pair of bytes: a borrow from one must never hide or invent the other's verdict.
            for x in 0..=255u8 {
                for y in 0..=255u8 {
                    let word = [b'a', x, y, b'a', b'a', b'a', b'a', b'a'];
                    assert_eq!(wide_run(&word, class.wide) == 8, wide(x) && wide(y), "{x:#x} {y:#x}");
                }
            }
        }
    }

    #[test]
    fn parses_a_browser_request() {
        let h = head(BROWSER);
        assert_eq!(h.method, b"GET");
        assert_eq!(h.target, b"/search?q=rust%20http");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers.len(), 7);
        assert_eq!(h.headers[0], Header { name: b"Host", value: b"example.com", known: Some(names::HOST) });
        assert_eq!(h.headers[6].value, b"session=abc123; theme=dark");
        assert_eq!(h.body, Body::Absent);
        assert!(h.keep_alive);
        assert_eq!(h.consumed, BROWSER.len());
    }

    #[test]
    fn reports_consumed_bytes_before_a_body_or_the_next_request() {
        let mut buf = b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n".to_vec();
        let len = buf.len();
        buf.extend_from_slice(b"helloGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let h = head(&buf);
        assert_eq!((h.consumed, h.body), (len, Body::Length(5)));
        assert_eq!(head(&buf[len + 5..]).target, b"/");
    }

    #[test]
    fn every_prefix_needs_more() {
        for end in 0..BROWSER.len() {
            assert_eq!(parse(&BROWSER[..end]), Ok(None), "prefix of {end} bytes");
        }
    }

    #[test]
    fn bare_lf_and_leading_empty_lines_are_accepted() {
        let h = head(b"\r\n\nGET / HTTP/1.0\nHost: a\n\n");
        assert_eq!((h.version, h.consumed, h.headers.len()), (Version::Http10, 27, 1));
        assert_eq!(parse(b"\r\n\r\n"), Ok(None));
    }

    #[test]
    fn values_lose_surrounding_whitespace_only() {
        let h = head(b"GET / HTTP/1.1\r\nHost: h\r\nX-A:  \t a  b \t\r\nX-B:\r\nX-C: caf\xe9\r\n\r\n");
        assert_eq!(h.headers[1].value, b"a  b");
        assert_eq!(h.headers[2].value, b"");
        assert_eq!(h.headers[3].value, b"caf\xe9");
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let cases: [(&[u8], bool); 7] = [
            (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n", false),
        ];
        for (request, keep_alive) in cases {
            assert_eq!(head(request).keep_alive, keep_alive, "{}", String::from_utf8_lossy(request));
        }
    }

    #[test]
    fn body_framing() {
        let cases: [(&[u8], Body); 6] = [
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", Body::Length(0)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", Body::Length(7)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\ncontent-length: 3, 3\r\n\r\n", Body::Length(3)),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", Body::Chunked),
            (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,Chunked ,\r\n\r\n", Body::Chunked),
            (
                b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n",
                Body::Length(i64::MAX as u64),
            ),
        ];
        for (request, body) in cases {
            assert_eq!(head(request).body, body, "{}", String::from_utf8_lossy(request));
        }
    }

    #[test]
    fn request_line_over_8k_is_414_at_byte_8192() {
        let exact = [b"GET /".as_slice(), &[b'a'; MAX_REQUEST_LINE - 14], b" HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
        assert_eq!(status(&exact), 200);
        let over = [b"GET /".as_slice(), &[b'a'; MAX_REQUEST_LINE - 13], b" HTTP/1.1\r\nHost: h\r\n\r\n"].concat();
        assert_eq!(status(&over), 414);
        // Decided as soon as byte 8192 arrives, without waiting for a line end.
        let partial = [b"GET /".as_slice(), &[b'a'; MAX_REQUEST_LINE]].concat();
        assert_eq!(status(&partial[..MAX_REQUEST_LINE]), 0);
        assert_eq!(status(&partial[..=MAX_REQUEST_LINE]), 414);
        // A CR at byte 8192 may still be the line end.
        let cr = [&exact[..MAX_REQUEST_LINE], b"\r"].concat();
        assert_eq!(status(&cr), 0);
        // A syntax error inside the first 8192 bytes wins over the length.
        let early = [b"GET /\x01".as_slice(), &[b'a'; 2 * MAX_REQUEST_LINE]].concat();
        assert_eq!(status(&early), 400);
    }

    #[test]
    fn too_many_fields_is_431() {
        let fields = |n: usize| {
            let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
            for i in 1..n {
                buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            buf.extend_from_slice(b"\r\n");
            buf
        };
        assert_eq!(status(&fields(MAX_HEADERS)), 200);
        assert_eq!(status(&fields(MAX_HEADERS + 1)), 431);
        assert_eq!(parse(&fields(MAX_HEADERS + 1)), Err(TOO_MANY_FIELDS));
    }

    #[test]
    fn head_over_64k_is_431_even_before_it_ends() {
        let big = |value_len: usize| {
            [b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".as_slice(), &vec![b'v'; value_len], b"\r\n\r\n"].concat()
        };
        let fixed = big(0).len();
        assert_eq!(status(&big(MAX_HEAD - fixed)), 200);
        assert_eq!(status(&big(MAX_HEAD - fixed + 1)), 431);
        // Decided once byte 65536 would be needed: a head that has not ended by then never fits.
        assert_eq!(status(&big(MAX_HEAD)[..MAX_HEAD - 1]), 0);
        assert_eq!(status(&big(MAX_HEAD)[..MAX_HEAD]), 431);
    }

    #[test]
    fn a_few_leading_empty_lines_are_ignored_more_are_400() {
        let request = |empty: usize| [b"\r\n".repeat(empty).as_slice(), b"GET / HTTP/1.0\r\n\r\n"].concat();
        assert_eq!(status(&request(MAX_LEADING_EMPTY_LINES)), 200);
        assert_eq!(status(&request(MAX_LEADING_EMPTY_LINES + 1)), 400);
        // Decided as soon as the extra line starts, however the flood continues.
        assert_eq!(status(&[b'\n'; MAX_LEADING_EMPTY_LINES]), 0);
        assert_eq!(status(&[b'\n'; MAX_LEADING_EMPTY_LINES + 1]), 400);
    }

    #[test]
    fn malformed_syntax_is_400() {
        let cases: [&[u8]; 27] = [
            b"GET\r\n\r\n",
            b"GET /\r\n\r\n",
            b"GET / \r\n\r\n",
            b" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\x7fb HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1.1.1\r\n\r\n",
            b"GET / HTTP/11\r\n\r\n",
            b"GET / HTTP/1.1\rX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\rZ",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n X: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX(Y): a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x1bb\r\n\r\n",
            b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"GET / HTTP/1.1\r\nHost: h\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        assert_status(&cases, 400);
    }

    #[test]
    fn unsupported_versions_are_505() {
        for version in ["HTTP/0.9", "HTTP/2.0", "HTTP/9.9", "HTTP/1.2", "HTTP/3.0"] {
            assert_eq!(status(format!("GET / {version}\r\n\r\n").as_bytes()), 505, "{version}");
        }
    }

    #[test]
    fn smuggling_attempts_are_400() {
        let cases: [&[u8]; 15] = [
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        assert_status(&cases, 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    }

    #[test]
    fn request_targets_of_every_form_are_accepted() {
        for target in ["/", "*", "http://example.com/a?b", "example.com:443", "/caf\u{e9}/%41", "/a#frag"] {
            let request = format!("OPTIONS {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            assert_eq!(head(request.as_bytes()).target, target.as_bytes());
        }
    }
}
