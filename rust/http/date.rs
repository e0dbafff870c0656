//! The `Date: ...\r\n` line of the WSGI server's responses (RFC 9110's IMF-fixdate, as `email.utils.formatdate(t,
//! usegmt=True)` writes it), made at most once per second of the system clock and shared by every response.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;
use pyo3::types::PyString;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The line for `seconds` since the epoch (UTC).
fn format_line(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    // Days to a civil date (the proleptic Gregorian calendar), counting in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both indexes are in range: rem_euclid(7) is 0..7 and month is 1..=12.
    let weekday = DAYS[usize::try_from(days.rem_euclid(7)).unwrap_or_default()];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or_default()];
    let (hour, minute, second) = (in_day / 3600, in_day / 60 % 60, in_day % 60);
    format!("Date: {weekday}, {day:02} {month_name} {year:04} {hour:02}:{minute:02}:{second:02} GMT\r\n")
}

/// The second the cached line is for, and the line.
static CACHE: Mutex<Option<(i64, Py<PyString>)>> = Mutex::new(None);

/// The line for the current second (the system clock's whole seconds, as `int(time.time())`).
pub fn line(py: Python<'_>) -> Bound<'_, PyString> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    // Held only with the GIL and never across Python code (making or dropping a str runs none): never contended.
    let mut cache = CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match &*cache {
        Some((second, text)) if *second == now => text.bind(py).clone(),
        _ => {
            let text = PyString::new(py, &format_line(now));
            *cache = Some((now, text.clone().unbind()));
            text
        }
    }
}

/// `http_date_line()`: the server's ``Date`` header line for now, with its CR LF.
#[pyfunction]
pub fn http_date_line(py: Python<'_>) -> Bound<'_, PyString> {
    line(py)
}

#[cfg(test)]
mod tests {
    use super::format_line;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(format_line(0), "Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
        assert_eq!(format_line(951_782_400), "Date: Tue, 29 Feb 2000 00:00:00 GMT\r\n");
        assert_eq!(format_line(1_796_440_099), "Date: Sat, 05 Dec 2026 03:08:19 GMT\r\n");
        assert_eq!(format_line(4_133_980_799), "Date: Fri, 31 Dec 2100 23:59:59 GMT\r\n");
        assert_eq!(format_line(-1), "Date: Wed, 31 Dec 1969 23:59:59 GMT\r\n");
    }
}
