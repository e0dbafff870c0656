//! The access log of the keep-alive loop (serve.rs): the line `WSGIHandler.format_request` makes for a request the
//! loop answered itself, written with the server's `log.write` as the handler's `log_request` writes it:
//!
//! `client - - [YYYY-MM-DD HH:MM:SS] "METHOD URI PROTOCOL" status length seconds` and a newline.
//!
//! The time is the local time of the system clock's whole second (`datetime.now().replace(microsecond=0)`), from
//! the C library's `localtime_r` as CPython's `datetime` gets it, made once per second and thread. The start and
//! end of a request are read from the clock `time.time()` reads, and as it turns them into floats, so that a
//! request the handler's own steps finish (its `time_start` set from the loop's) measures the same.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::exceptions::PyKeyError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

/// The system clock now: `time.time()`'s float, and the whole second (rounded down) `datetime.now()` takes.
pub fn now() -> (f64, i64) {
    // A 64-bit nanosecond count, as CPython keeps its times.
    let nanos = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |nanos| -nanos),
    };
    seconds_of(nanos)
}

/// `now()` for a nanosecond count since the epoch. The float as CPython makes it of the count: exact whole
/// seconds, else the count (as a float) divided by 1e9.
fn seconds_of(nanos: i64) -> (f64, i64) {
    let seconds = if nanos % 1_000_000_000 == 0 { (nanos / 1_000_000_000) as f64 } else { nanos as f64 / 1e9 };
    (seconds, nanos.div_euclid(1_000_000_000))
}

/// `YYYY-MM-DD HH:MM:SS`, as `str()` of a `datetime` (a leap second shown as 59, as `datetime` clamps it).
fn stamp_of(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> String {
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{:02}", second.min(59))
}

/// The local time of `second` since the epoch, or None where the C library cannot tell it or `datetime` would
/// not (a year outside 1-9999).
fn local_stamp(second: i64) -> Option<String> {
    let time = libc::time_t::try_from(second).ok()?;
    let mut fields = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: both pointers are valid for the call (a live time_t, and a writable tm the function fills);
    // localtime_r is the reentrant form, touching no shared result buffer.
    let filled = unsafe { libc::localtime_r(&time, fields.as_mut_ptr()) };
    if filled.is_null() {
        return None;
    }
    // SAFETY: a non-null return means localtime_r filled `fields`; it was zeroed before in any case.
    let tm = unsafe { fields.assume_init() };
    let field = i64::from;
    let year = field(tm.tm_year) + 1900;
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(stamp_of(year, field(tm.tm_mon) + 1, field(tm.tm_mday), field(tm.tm_hour), field(tm.tm_min), field(tm.tm_sec)))
}

thread_local! {
    /// The second last asked for and its stamp (each thread's hub serves its own connections).
    static STAMP: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// Adds the local time of `second` to `out` as the log shows it, made once per second; false where the C
/// library cannot tell it (the caller asks Python's `datetime` then).
fn push_stamp(out: &mut String, second: i64) -> bool {
    STAMP.with_borrow_mut(|(cached, stamp)| {
        if *cached != second {
            let Some(made) = local_stamp(second) else { return false };
            (*cached, *stamp) = (second, made);
        }
        out.push_str(stamp);
        true
    })
}

/// Whether `c` is whitespace to Python's `str.split()`: Rust's whitespace and the four separators U+001C-U+001F.
fn splits(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The end of a line after its request line: `" status length seconds` and the newline. `status` is the
/// response's status as given (its first word is logged); `length` the body bytes sent ("-" for none); the
/// duration is "-" unless both times are set (non-zero), as the handler's `format_request` says.
fn tail(out: &mut String, status: &str, length: usize, start: f64, finish: f64) {
    out.push_str("\" ");
    out.push_str(status.trim_start_matches(splits).split(splits).next().unwrap_or(""));
    out.push(' ');
    if length == 0 {
        out.push('-');
    } else {
        push_decimal(out, length as u128);
    }
    out.push(' ');
    if start != 0.0 && finish != 0.0 {
        push_fixed6(out, finish - start);
    } else {
        out.push('-');
    }
    out.push('\n');
}

/// Adds `value` with six decimals to `out` as Python's `'%.6f'` writes it (and Rust's `{:.6}`): the exact binary
/// value rounded half to even, a minus sign whenever the sign bit is set. Done in integers where the value is a
/// 53-bit mantissa times 2 to at most 50 (every duration): the formatting machinery costs ten times more.
fn push_fixed6(out: &mut String, value: f64) {
    let bits = value.to_bits();
    let biased = i32::try_from((bits >> 52) & 0x7ff).unwrap_or_default();
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exponent) = if biased == 0 { (fraction, -1074) } else { (fraction | 1 << 52, biased - 1075) };
    if biased == 0x7ff || exponent > 50 {
        let _ = write!(out, "{value:.6}");
        return;
    }
    // value = mantissa * 2^exponent, so value * 10^6 = mantissa * 10^6 * 2^exponent (below 2^73 * 2^50).
    let scaled = u128::from(mantissa) * 1_000_000;
    let micros = if exponent >= 0 {
        scaled << exponent
    } else {
        let shift = exponent.unsigned_abs();
        if shift >= 127 {
            0 // below half a millionth
        } else {
            let (whole, rest, half) = (scaled >> shift, scaled & ((1 << shift) - 1), 1u128 << (shift - 1));
            whole + u128::from(rest > half || rest == half && whole % 2 == 1)
        }
    };
    if bits >> 63 == 1 {
        out.push('-');
    }
    push_decimal(out, micros / 1_000_000);
    out.push('.');
    let decimals = micros % 1_000_000;
    let mut digits = 100_000;
    while digits > 0 {
        out.push(char::from(b'0' + (decimals / digits % 10) as u8));
        digits /= 10;
    }
}

/// Adds `value` in decimal digits to `out` (without the formatting machinery: this runs for every request).
fn push_decimal(out: &mut String, mut value: u128) {
    let mut digits = [0u8; 39];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

/// The access log of one connection the loop serves: the server (whose `log` is read at each write, as the
/// handler reads it) and the client's part of the line.
pub struct AccessLog<'py> {
    server: Bound<'py, PyAny>,
    client: Bound<'py, PyString>,
}

impl<'py> AccessLog<'py> {
    /// The log of `handler`'s connection, None if its server logs no requests (`log=None`).
    pub fn of(handler: &Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        let py = handler.py();
        if !handler.getattr(intern!(py, "_log_requests"))?.is_truthy()? {
            return Ok(None);
        }
        let address = handler.getattr(intern!(py, "client_address"))?;
        let client = if address.is_instance_of::<PyTuple>() { address.get_item(0)? } else { address };
        let client = if !client.is_truthy()? {
            intern!(py, "-").clone()
        } else if let Ok(text) = client.cast_exact::<PyString>() {
            text.clone()
        } else {
            intern!(py, "{}").call_method1(intern!(py, "format"), (client,))?.cast_into::<PyString>()?
        };
        Ok(Some(AccessLog { server: handler.getattr(intern!(py, "server"))?, client }))
    }

    /// Writes the line of a request the loop answered: `environ` as the application left it, the `status` it
    /// gave (an exact `str`), the body bytes sent, and when the request started (`now().0` then).
    pub fn write(
        &self,
        environ: &Bound<'py, PyDict>,
        status: &Bound<'py, PyString>,
        length: usize,
        start: f64,
    ) -> PyResult<()> {
        let py = environ.py();
        let (finish, second) = now();
        let write = self.server.getattr(intern!(py, "log"))?.getattr(intern!(py, "write"))?;
        // The request line's parts as the handler's `requestline` reads them (none from an empty environ).
        let parts = if environ.is_empty() {
            None
        } else {
            let part = |key: &Bound<'py, PyString>| -> PyResult<Bound<'py, PyAny>> {
                environ.get_item(key)?.ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
            };
            Some([
                part(intern!(py, "REQUEST_METHOD"))?,
                part(intern!(py, "REQUEST_URI"))?,
                part(intern!(py, "SERVER_PROTOCOL"))?,
            ])
        };
        let texts = match &parts {
            None => Some(None),
            Some([method, uri, protocol]) => match (plain_text(method), plain_text(uri), plain_text(protocol)) {
                (Some(method), Some(uri), Some(protocol)) => Some(Some([method, uri, protocol])),
                _ => None,
            },
        };
        let status = status.to_str()?;
        let mut out = String::with_capacity(128);
        let line = match (self.client.to_str(), texts) {
            (Ok(client), Some(texts)) => {
                out.push_str(client);
                out.push_str(" - - [");
                self.push_stamp(&mut out, second)?;
                out.push_str("] \"");
                if let Some([method, uri, protocol]) = texts {
                    for (index, text) in [method, uri, protocol].into_iter().enumerate() {
                        if index > 0 {
                            out.push(' ');
                        }
                        out.push_str(text);
                    }
                }
                tail(&mut out, status, length, start, finish);
                PyString::new(py, &out)
            }
            // A part that is not a plain str (or holds lone surrogates) is formatted and joined by Python.
            _ => {
                let request = match parts {
                    None => PyString::new(py, "").into_any(),
                    Some(parts) => {
                        intern!(py, "{} {} {}").call_method1(intern!(py, "format"), PyTuple::new(py, parts)?)?
                    }
                };
                out.push_str(" - - [");
                self.push_stamp(&mut out, second)?;
                out.push_str("] \"");
                let mut end = String::new();
                tail(&mut end, status, length, start, finish);
                self.client.add(out)?.add(request)?.add(end)?.cast_into::<PyString>()?
            }
        };
        write.call1((line,))?;
        Ok(())
    }

    /// Adds the local time of `second` to `out`: from the cache, or from Python's `datetime` where the C library
    /// cannot tell it (which raises what the handler's own `format_request` would).
    fn push_stamp(&self, out: &mut String, second: i64) -> PyResult<()> {
        if push_stamp(out, second) {
            return Ok(());
        }
        let py = self.server.py();
        let datetime = py.import(intern!(py, "datetime"))?.getattr(intern!(py, "datetime"))?;
        out.push_str(&datetime.call_method1(intern!(py, "fromtimestamp"), (second,))?.str()?.to_string());
        Ok(())
    }
}

/// The text of an exact `str` that is valid UTF-8 (what the line takes as it is).
fn plain_text<'a>(part: &'a Bound<'_, PyAny>) -> Option<&'a str> {
    part.cast_exact::<PyString>().ok()?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_end(status: &str, length: usize, start: f64, finish: f64) -> String {
        let mut out = String::new();
        tail(&mut out, status, length, start, finish);
        out
    }

    #[test]
    fn the_tail_has_the_code_the_length_and_the_duration() {
        assert_eq!(line_end("200 OK", 13, 10.0, 10.25), "\" 200 13 0.250000\n");
        assert_eq!(line_end("404", 0, 10.0, 10.5), "\" 404 - 0.500000\n");
        assert_eq!(line_end("200 OK", 5, 0.0, 10.5), "\" 200 5 -\n");
        assert_eq!(line_end("200\u{1c}x", 5, 1.0, 0.0), "\" 200 5 -\n");
        assert_eq!(line_end("200\u{a0}OK", 1, 1.0, 1.0), "\" 200 1 0.000000\n");
    }

    #[test]
    fn durations_round_half_to_even_as_python() {
        // 1/128 s = 0.0078125 exactly: Python's '%.6f' gives 0.007812.
        assert_eq!(line_end("200", 1, 1.0, 1.0 + 1.0 / 128.0), "\" 200 1 0.007812\n");
        assert_eq!(line_end("200", 1, 1.0, 1.0 + 3.0 / 128.0), "\" 200 1 0.023438\n");
        assert_eq!(line_end("200", 1, 2.0, 1.0), "\" 200 1 -1.000000\n");
    }

    fn fixed6(value: f64) -> String {
        let mut out = String::new();
        push_fixed6(&mut out, value);
        out
    }

    #[test]
    fn six_decimals_as_the_formatting_machinery_writes_them() {
        let special = [0.0, -0.0, 1e-9, -1e-9, 5e-7, 1.5e-6, 2.5e-6, 0.5, 1.0 / 128.0, 3.0 / 128.0, 123.456_789_5];
        let large = [1e15, 2f64.powi(60), 1e300, f64::MIN_POSITIVE, 4.9e-324, f64::INFINITY, -f64::INFINITY];
        for value in special.into_iter().chain(large) {
            assert_eq!(fixed6(value), format!("{value:.6}"), "{value:e}");
        }
        // Durations as the loop makes them (differences of two clock floats), and values of every magnitude.
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let (start, _) = seconds_of(1_700_000_000_000_000_000 + (state % 10_000_000_000_000) as i64);
            let (finish, _) = seconds_of(1_700_000_000_000_000_000 + (state >> 20) as i64 % 10_000_000_000_000);
            let any = f64::from_bits(state);
            for value in [finish - start, any] {
                assert_eq!(fixed6(value), format!("{value:.6}"), "{value:e}");
            }
        }
    }

    #[test]
    fn stamps_are_zero_padded_and_clamp_a_leap_second() {
        assert_eq!(stamp_of(2026, 12, 5, 7, 8, 9), "2026-12-05 07:08:09");
        assert_eq!(stamp_of(999, 1, 1, 0, 0, 60), "0999-01-01 00:00:59");
    }

    fn stamp(second: i64) -> String {
        let mut out = String::new();
        assert!(push_stamp(&mut out, second));
        out
    }

    #[test]
    fn the_cache_is_exact_per_second() {
        let (_, second) = now();
        let first = stamp(second);
        assert_eq!(first, local_stamp(second).unwrap());
        assert_eq!(stamp(second), first);
        let next = stamp(second + 1);
        assert_eq!(next, local_stamp(second + 1).unwrap());
        assert_ne!(next, first);
        assert_eq!(stamp(second), first);
    }

    #[test]
    fn lengths_are_decimal() {
        for (length, text) in [(1, "1"), (10, "10"), (1_234_567, "1234567"), (usize::MAX, &usize::MAX.to_string())] {
            assert_eq!(line_end("200 OK", length, 0.0, 0.0), format!("\" 200 {text} -\n"));
        }
    }

    #[test]
    fn the_clock_reads_as_python_floats_it() {
        // float(t) / 1e9 and t // 10**9 in Python, for these nanosecond counts t.
        assert_eq!(seconds_of(1_796_440_099_123_456_789), (1_796_440_099.123_456_7, 1_796_440_099));
        assert_eq!(seconds_of(1_796_440_099_000_000_000), (1_796_440_099.0, 1_796_440_099));
        assert_eq!(seconds_of(-1), (-1e-9, -1));
        assert_eq!(seconds_of(-1_500_000_000), (-1.5, -2));
    }
}
