//! The chunked transfer coding of a request body (RFC 9112 section 7.1), decoded incrementally.
//!
//! A `Decoder` is fed the bytes that follow the head, in pieces of any size; it hands out the chunk data as slices
//! of the input (no copies) and says how many input bytes it used. Once the last chunk and the trailer section are
//! read it is done and uses no more bytes: what follows belongs to the next request on the connection.
//!
//! Framing is strict, since a lenient chunk parser is a classic request-smuggling hole: hex digits only, optional
//! whitespace only before an extension, CR LF (never a bare LF) after the size line, the data and every trailer
//! line; an extension needs a name (a token) after its `;`, and a trailer line is `name:value` (anything else,
//! such as a pipelined request after `0 CR LF`, is refused, never skipped). Extensions and trailer fields are
//! otherwise skipped, the trailer section bounded.

use super::head::{is_tchar, ParseError};

/// Longest chunk-size line (size and extensions, CR LF excluded).
pub const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section, its line ends included.
pub const MAX_TRAILERS: usize = 16 * 1024;

const fn bad(reason: &'static str) -> ParseError {
    ParseError { status: 400, reason }
}

const INVALID_SIZE: ParseError = bad("invalid chunk size");
const SIZE_TOO_LARGE: ParseError = bad("chunk size too large");
const SIZE_LINE_TOO_LONG: ParseError = bad("chunk size line too long");
const INVALID_EXTENSION: ParseError = bad("invalid chunk extension");
const NO_CRLF: ParseError = bad("chunk line not ended by CR LF");
const DATA_NOT_ENDED: ParseError = bad("chunk data not followed by CR LF");
const INVALID_TRAILER: ParseError = bad("invalid trailer field");
const TRAILERS_TOO_LARGE: ParseError = bad("trailer section too large");

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the chunk size's hex digits.
    Size,
    /// Whitespace after the size: an extension must follow.
    SizeSpace,
    /// After a `;`: the extension's name must start here.
    ExtensionName,
    /// Inside chunk extensions, up to the CR.
    Extension,
    /// After the size line's CR.
    SizeLf,
    /// Inside chunk data; `Decoder::remaining` bytes to go.
    Data,
    /// After the data, expecting CR.
    DataCr,
    /// After the data's CR.
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field's name.
    TrailerName,
    /// Inside a trailer field's value.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final empty line's CR.
    EndLf,
    /// The body is complete.
    Done,
    /// A framing error was found; it is reported again on every later call.
    Failed(ParseError),
}

/// Incremental decoder of one chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    state: State,
    /// The size being read, then the data bytes left in the current chunk.
    remaining: u64,
    /// Bytes of the current size line so far.
    line: usize,
    /// Bytes of the trailer section so far.
    trailers: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Size, remaining: 0, line: 0, trailers: 0 }
    }
}

fn hex_value(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

impl Decoder {
    /// Whether the last chunk and the trailer section have been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as it can, passing each run of chunk data to `emit` in order, and returns how
    /// many bytes of `input` it used: all of them, unless the body ended inside `input`.
    pub fn decode<'a>(&mut self, input: &'a [u8], mut emit: impl FnMut(&'a [u8])) -> Result<usize, ParseError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Failed(err) => return Err(err),
                State::Data => {
                    let left = &input[pos..];
                    let take = usize::try_from(self.remaining).map_or(left.len(), |r| r.min(left.len()));
                    emit(&left[..take]);
                    pos += take;
                    // `take` is at most `remaining`, so this cannot underflow.
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    if let Err(err) = self.step(input[pos]) {
                        self.state = State::Failed(err);
                        return Err(err);
                    }
                    pos += 1;
                }
            }
        }
        match self.state {
            State::Failed(err) => Err(err),
            _ => Ok(pos),
        }
    }

    /// Advances over one framing byte.
    fn step(&mut self, b: u8) -> Result<(), ParseError> {
        if matches!(
            self.state,
            State::TrailerStart | State::TrailerName | State::Trailer | State::TrailerLf | State::EndLf
        ) {
            self.trailers += 1;
            if self.trailers > MAX_TRAILERS {
                return Err(TRAILERS_TOO_LARGE);
            }
        }
        self.state = match (self.state, b) {
            (State::Size | State::SizeSpace | State::ExtensionName | State::Extension, _) => return self.size_line(b),
            (State::TrailerStart | State::TrailerName | State::Trailer, _) => return self.trailer(b),
            (State::SizeLf, b'\n') if self.remaining == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.line = 0;
                State::Size
            }
            (State::DataCr | State::DataLf, _) => return Err(DATA_NOT_ENDED),
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::SizeLf | State::TrailerLf | State::EndLf, _) => return Err(NO_CRLF),
            // `decode` never steps in these states.
            (State::Data | State::Done | State::Failed(_), _) => self.state,
        };
        Ok(())
    }

    /// One byte of `1*HEXDIG *( BWS ";" BWS token ... ) CR`: whitespace may come before a `;`, a name after it.
    fn size_line(&mut self, b: u8) -> Result<(), ParseError> {
        self.line += 1;
        if self.line > MAX_SIZE_LINE && b != b'\r' {
            return Err(SIZE_LINE_TOO_LONG);
        }
        self.state = match (self.state, b, hex_value(b)) {
            (State::Size, _, Some(digit)) => {
                self.remaining = self
                    .remaining
                    .checked_mul(16)
                    .and_then(|r| r.checked_add(digit))
                    .filter(|&r| i64::try_from(r).is_ok())
                    .ok_or(SIZE_TOO_LARGE)?;
                State::Size
            }
            (State::Size, _, _) if self.line == 1 => return Err(INVALID_SIZE),
            (State::Size | State::SizeSpace, b' ' | b'\t', _) => State::SizeSpace,
            (State::Size | State::SizeSpace, b';', _) => State::ExtensionName,
            (State::ExtensionName, b' ' | b'\t', _) => State::ExtensionName,
            (State::ExtensionName, _, _) if is_tchar(b) => State::Extension,
            (State::ExtensionName, _, _) => return Err(INVALID_EXTENSION),
            (State::Size | State::Extension, b'\r', _) => State::SizeLf,
            (State::Size | State::SizeSpace, _, _) => return Err(INVALID_SIZE),
            (_, b'\t' | 0x20..=0x7e | 0x80..=0xff, _) => State::Extension,
            _ => return Err(INVALID_EXTENSION),
        };
        Ok(())
    }

    /// One byte of the trailer section: field lines (`token ":" value`), each ended by CR LF, then an empty line.
    /// A line that is not a field (no colon: the next request, say) is refused, never skipped.
    fn trailer(&mut self, b: u8) -> Result<(), ParseError> {
        self.state = match (self.state, b) {
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, b':') => State::Trailer,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::Trailer, b'\t' | 0x20..=0x7e | 0x80..=0xff) => State::Trailer,
            _ => return Err(INVALID_TRAILER),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` whole: (data, bytes used, done).
    fn run(input: &[u8]) -> Result<(Vec<u8>, usize, bool), ParseError> {
        let mut decoder = Decoder::default();
        let mut data = Vec::new();
        let used = decoder.decode(input, |piece| data.extend_from_slice(piece))?;
        Ok((data, used, decoder.done()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"5\r\nhello\r\n6;name=value;x\r\n world\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\nNEXT";
        let (data, used, done) = run(body).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(used, body.len() - 4);
        assert!(done);
        assert_eq!(run(b"0\r\n\r\n").unwrap(), (Vec::new(), 5, true));
        assert_eq!(run(b"A \t;ext\r\n0123456789\r\n00\r\n\r\n").unwrap().0, b"0123456789");
        // RFC 9112 section 7.1.1: bad whitespace around the ";" is allowed, an extension without a name is not.
        assert_eq!(run(b"5\t;x\r\nhello\r\n0\r\n\r\n").unwrap().0, b"hello");
        assert_eq!(run(b"5; \tx=1\r\nhello\r\n0\r\n\r\n").unwrap().0, b"hello");
        assert_eq!(run(b"7fffffffffffffff\r\n").unwrap(), (Vec::new(), 18, false));
    }

    #[test]
    fn every_split_gives_the_same_data() {
        let body = b"3\r\nabc\r\n10;e=1\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\nrest";
        let whole = run(body).unwrap();
        for cut in 0..=body.len() {
            for second in cut..=body.len() {
                let mut decoder = Decoder::default();
                let mut data = Vec::new();
                let mut used = 0;
                for piece in [&body[..cut], &body[cut..second], &body[second..]] {
                    used += decoder.decode(piece, |p| data.extend_from_slice(p)).unwrap();
                    if decoder.done() {
                        break;
                    }
                }
                assert_eq!((data, used, decoder.done()), whole.clone(), "cuts at {cut} and {second}");
            }
        }
    }

    #[test]
    fn bad_framing_is_400_and_sticks() {
        let cases: [&[u8]; 22] = [
            b"\r\n",
            b"5;\r\n",
            b"5; \r\n",
            b"5;=x\r\n",
            b"0\r\nGET /second HTTP/1.1\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nX : 1\r\n\r\n",
            b"x\r\n",
            b"-1\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b"5 \r\n",
            b"5\n",
            b"5\rX",
            b"5\r\nhelloX",
            b"5\r\nhello\n",
            b"5;a\x00b\r\n",
            b"10000000000000000\r\n",
            b"8000000000000000\r\n",
            b"0\r\nX: 1\n",
            b"0\r\n X: 1\r\n\r\n",
        ];
        for body in cases {
            let mut decoder = Decoder::default();
            let err = decoder.decode(body, |_| ()).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(body));
            assert_eq!(decoder.decode(b"0\r\n\r\n", |_| ()), Err(err));
        }
    }

    #[test]
    fn long_size_lines_and_trailers_are_bounded() {
        let at_limit = [b"1;".as_slice(), &[b'e'; MAX_SIZE_LINE - 2], b"\r\nx\r\n"].concat();
        assert_eq!(run(&at_limit).unwrap().0, b"x");
        let over = [b"1;".as_slice(), &[b'e'; MAX_SIZE_LINE - 1]].concat();
        assert_eq!(run(&over), Err(SIZE_LINE_TOO_LONG));
        let zeros = vec![b'0'; MAX_SIZE_LINE + 1];
        assert_eq!(run(&zeros), Err(SIZE_LINE_TOO_LONG));
        let trailers = [b"0\r\n".as_slice(), &b"X: y\r\n".repeat(MAX_TRAILERS / 6 + 1)].concat();
        assert_eq!(run(&trailers), Err(TRAILERS_TOO_LARGE));
    }
}
