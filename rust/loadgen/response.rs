//! The framing of one HTTP/1.x response, read incrementally: where its head ends, its status, and where its body
//! ends (Content-Length, chunked, or the connection's close), so the load generator knows when the next request
//! may go out on a keep-alive connection. Plain Rust, no Python and no I/O.
//!
//! Invariant: `Reader::feed` never uses a byte past the end of the response it is reading; whatever follows is
//! left to the caller (with one request in flight per connection, that is a server error).

use crate::http::chunked::Decoder;

/// The largest response head accepted.
pub const MAX_HEAD: usize = 64 * 1024;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// No body at all (204, 304, and a response without one).
    Empty,
    /// This many bytes left to read.
    Length(u64),
    Chunked(Decoder),
    /// Everything up to the server's close.
    UntilClose,
}

/// A response read to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Complete {
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
}

/// The part of a response being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Head,
    Body { body: Body, complete: Complete },
}

/// Reads one response after another, fed the bytes as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader {
    part: Part,
}

impl Default for Reader {
    fn default() -> Self {
        Reader { part: Part::Head }
    }
}

impl Reader {
    /// Whether no byte of the current response has been used yet.
    pub fn at_start(&self) -> bool {
        self.part == Part::Head
    }

    /// Uses what it can of `input` (the bytes not used by earlier calls) and returns how many bytes it used, with
    /// the response if it ended within them. After a complete response the reader starts on the next one.
    /// Interim (1xx) responses are skipped.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Complete>), &'static str> {
        let mut used = 0;
        loop {
            match self.part {
                Part::Head => {
                    let Some((head_len, status, body, keep_alive)) = parse_head(&input[used..])? else {
                        return Ok((used, None));
                    };
                    used += head_len;
                    if (100..200).contains(&status) {
                        continue;
                    }
                    self.part = Part::Body { body, complete: Complete { status, keep_alive } };
                }
                Part::Body { body, complete } => {
                    let left = &input[used..];
                    let (take, body) = match body {
                        Body::Empty => (0, Body::Empty),
                        Body::Length(remaining) => {
                            let take = usize::try_from(remaining).map_or(left.len(), |r| r.min(left.len()));
                            // `take` is at most `remaining`.
                            (take, Body::Length(remaining - take as u64))
                        }
                        Body::Chunked(mut decoder) => {
                            let take = decoder.decode(left, |_| {}).map_err(|err| err.reason)?;
                            (take, if decoder.done() { Body::Empty } else { Body::Chunked(decoder) })
                        }
                        Body::UntilClose => (left.len(), Body::UntilClose),
                    };
                    used += take;
                    if matches!(body, Body::Empty | Body::Length(0)) {
                        self.part = Part::Head;
                        return Ok((used, Some(complete)));
                    }
                    self.part = Part::Body { body, complete };
                    return Ok((used, None));
                }
            }
        }
    }

    /// The server closed the connection: the response it ends, if its body runs to the close.
    pub fn closed(&mut self) -> Option<Complete> {
        match self.part {
            Part::Body { body: Body::UntilClose, complete } => {
                self.part = Part::Head;
                Some(complete)
            }
            _ => None,
        }
    }
}

/// The head at the start of `buf`, if it is all there: its length, status, body framing and keep-alive.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, u16, Body, bool)>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Err("response head too large") } else { Ok(None) };
    };
    let mut lines = buf[..end].split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let status_line = lines.next().unwrap_or_default();
    let (version, status) = parse_status_line(status_line).ok_or("malformed status line")?;
    let mut keep_alive = version == b"HTTP/1.1";
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let colon = line.iter().position(|&b| b == b':').ok_or("malformed header line")?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let text = std::str::from_utf8(value).map_err(|_| "invalid Content-Length")?;
            let parsed: u64 = text.parse().map_err(|_| "invalid Content-Length")?;
            if length.is_some_and(|known| known != parsed) {
                return Err("conflicting Content-Length headers");
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().map(trim).unwrap_or_default();
            chunked = last.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == b"HTTP/1.0" {
                    keep_alive = true;
                }
            }
        }
    }
    let body = if (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Empty
    } else if chunked {
        Body::Chunked(Decoder::default())
    } else if let Some(length) = length {
        Body::Length(length)
    } else {
        keep_alive = false;
        Body::UntilClose
    };
    Ok(Some((end + 4, status, body, keep_alive)))
}

/// `HTTP/1.x SSS reason`: the version and the status.
fn parse_status_line(line: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let version = parts.next().filter(|v| *v == b"HTTP/1.1" || *v == b"HTTP/1.0")?;
    let code = parts.next().filter(|c| c.len() == 3 && c.iter().all(u8::is_ascii_digit))?;
    let status = code.iter().fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    Some((version, status))
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes, as a socket might deliver it; returns the responses completed and
    /// the bytes left unused at the end.
    fn feed_in_pieces(input: &[u8], step: usize) -> (Vec<Complete>, usize) {
        let mut reader = Reader::default();
        let mut done = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (used, complete) = reader.feed(&pending).expect("valid response");
                pending.drain(..used);
                match complete {
                    Some(complete) => done.push(complete),
                    None => break,
                }
            }
        }
        (done, pending.len())
    }

    const OK: Complete = Complete { status: 200, keep_alive: true };

    #[test]
    fn content_length_ends_the_body_in_any_split() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length:  2 \r\n\r\nhi";
        for step in 1..two.len() {
            assert_eq!(feed_in_pieces(two, step), (vec![OK, OK], 0), "step {step}");
        }
    }

    #[test]
    fn chunked_body_ends_after_the_last_chunk_and_trailers() {
        let response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..response.len() {
            assert_eq!(feed_in_pieces(response, step), (vec![OK], 0), "step {step}");
        }
    }

    #[test]
    fn interim_responses_are_skipped_and_bodiless_statuses_end_at_the_head() {
        let input = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n";
        let statuses: Vec<u16> = feed_in_pieces(input, 7).0.iter().map(|c| c.status).collect();
        assert_eq!(statuses, [204, 304]);
    }

    #[test]
    fn a_body_without_length_runs_to_the_close() {
        let mut reader = Reader::default();
        let input = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nsome body";
        assert_eq!(reader.feed(input), Ok((input.len(), None)));
        assert_eq!(reader.closed(), Some(Complete { status: 200, keep_alive: false }));
        assert!(reader.at_start());
        assert_eq!(reader.closed(), None);
    }

    #[test]
    fn connection_header_decides_keep_alive() {
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let old_keep = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
        let old = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let keep = |input: &[u8]| Reader::default().feed(input).map(|(_, c)| c.map(|c| c.keep_alive));
        assert_eq!(keep(close), Ok(Some(false)));
        assert_eq!(keep(old_keep), Ok(Some(true)));
        assert_eq!(keep(old), Ok(Some(false)));
    }

    #[test]
    fn bytes_after_a_response_are_left_unused() {
        let input = b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nxEXTRA";
        let (used, complete) = Reader::default().feed(input).expect("valid");
        assert_eq!((used, complete.map(|c| c.status)), (input.len() - 5, Some(404)));
    }

    #[test]
    fn malformed_responses_are_refused() {
        let cases: [&[u8]; 5] = [
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        ];
        for input in cases {
            assert!(Reader::default().feed(input).is_err(), "{:?}", String::from_utf8_lossy(input));
        }
        let bad_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(Reader::default().feed(bad_chunk).is_err());
        let huge = [b'a'; MAX_HEAD + 1];
        assert_eq!(Reader::default().feed(&huge), Err("response head too large"));
    }
}
