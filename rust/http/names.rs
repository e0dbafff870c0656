//! Header names the server meets all the time, so their environ keys can be built once and the few that steer
//! framing (Content-Length, Transfer-Encoding, Connection, Host) are recognised while parsing, at no extra pass.
//!
//! Names are lower-case and sorted by length: `lookup` only compares a name with the ones of its own length.

/// Field names we recognise, lower-case, sorted by length (a unit test checks the order).
pub const NAMES: [&str; 52] = [
    "te",
    "dnt",
    "via",
    "host",
    "range",
    "accept",
    "cookie",
    "expect",
    "origin",
    "pragma",
    "referer",
    "upgrade",
    "if-match",
    "if-range",
    "priority",
    "sec-ch-ua",
    "forwarded",
    "x-real-ip",
    "connection",
    "keep-alive",
    "user-agent",
    "x-csrftoken",
    "content-type",
    "x-request-id",
    "authorization",
    "cache-control",
    "if-none-match",
    "accept-charset",
    "content-length",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "accept-encoding",
    "accept-language",
    "x-forwarded-for",
    "content-encoding",
    "sec-ch-ua-mobile",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-requested-with",
    "if-modified-since",
    "sec-websocket-key",
    "transfer-encoding",
    "x-forwarded-proto",
    "sec-ch-ua-platform",
    "if-unmodified-since",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "upgrade-insecure-requests",
    "access-control-request-method",
];

/// Longest name in `NAMES`, plus one (so `STARTS[len + 1]` exists for every length we look up).
const SLOTS: usize = 30;

/// `STARTS[len]` is the index in `NAMES` of the first name of length `len` or longer.
const STARTS: [usize; SLOTS + 1] = starts();

const fn starts() -> [usize; SLOTS + 1] {
    let mut out = [0; SLOTS + 1];
    let mut len = 0;
    while len <= SLOTS {
        let mut shorter = 0;
        let mut i = 0;
        while i < NAMES.len() {
            if NAMES[i].len() < len {
                shorter += 1;
            }
            i += 1;
        }
        out[len] = shorter;
        len += 1;
    }
    out
}

const fn index_of(name: &str) -> u8 {
    let mut i = 0;
    while i < NAMES.len() {
        let candidate = NAMES[i].as_bytes();
        let wanted = name.as_bytes();
        if candidate.len() == wanted.len() {
            let mut j = 0;
            while j < wanted.len() && candidate[j] == wanted[j] {
                j += 1;
            }
            if j == wanted.len() {
                // NAMES has fewer than 256 entries (checked by a test), so the index fits.
                return i as u8;
            }
        }
        i += 1;
    }
    panic!("name missing from NAMES");
}

/// Index of a name in `NAMES`.
pub type Known = u8;

pub const CONNECTION: Known = index_of("connection");
pub const CONTENT_LENGTH: Known = index_of("content-length");
pub const CONTENT_TYPE: Known = index_of("content-type");
pub const COOKIE: Known = index_of("cookie");
pub const HOST: Known = index_of("host");
pub const TRANSFER_ENCODING: Known = index_of("transfer-encoding");

/// The `NAMES` index of `name`, compared ASCII-case-insensitively, if it is one we know.
#[inline]
pub fn lookup(name: &[u8]) -> Option<Known> {
    let len = name.len();
    if len >= SLOTS {
        return None;
    }
    (STARTS[len]..STARTS[len + 1])
        .find(|&i| NAMES[i].as_bytes().eq_ignore_ascii_case(name))
        .and_then(|i| Known::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_sorted_unique_and_fit() {
        assert!(NAMES.len() < 256);
        for pair in NAMES.windows(2) {
            assert!(pair[0].len() <= pair[1].len(), "{} before {}", pair[0], pair[1]);
            assert_ne!(pair[0], pair[1]);
        }
        for name in NAMES {
            assert_eq!(name, name.to_ascii_lowercase());
            assert!(name.len() < SLOTS, "{name} longer than SLOTS allows");
        }
        assert_eq!(SLOTS, NAMES.iter().map(|n| n.len()).max().unwrap() + 1);
    }

    #[test]
    fn lookup_finds_every_name_in_any_case_and_nothing_else() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(lookup(name.as_bytes()), Some(i as u8));
            assert_eq!(lookup(name.to_ascii_uppercase().as_bytes()), Some(i as u8));
        }
        assert_eq!(lookup(b"content-lengths"), None);
        assert_eq!(lookup(b"content_length"), None);
        assert_eq!(lookup(b""), None);
        assert_eq!(lookup(&[b'a'; 200]), None);
        assert_eq!(NAMES[usize::from(CONTENT_LENGTH)], "content-length");
        assert_eq!(NAMES[usize::from(HOST)], "host");
    }
}
