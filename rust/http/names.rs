//! Header names the server meets all the time, so their environ keys can be built once and the few that steer
//! framing (Content-Length, Transfer-Encoding, Connection, Host) are recognised while parsing, at no extra pass.
//!
//! `lookup` hashes a name (case-insensitively) into a small open-addressing table built at compile time, so it
//! usually compares the name with one candidate at most.

/// Field names we recognise, lower-case.
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

/// Slots of the lookup table (a power of two, several times the number of names, so probes are short).
const SLOTS: usize = 256;

/// Case-insensitive hash of a non-empty name from its length and three of its bytes.
const fn hash(name: &[u8]) -> usize {
    let n = name.len();
    // `| 0x20` lower-cases letters and leaves the other token characters distinct enough.
    let mix = (n as u32)
        ^ ((name[0] | 0x20) as u32) << 8
        ^ ((name[n - 1] | 0x20) as u32) << 16
        ^ ((name[n / 2] | 0x20) as u32) << 24
        ^ ((name[n / 3] | 0x20) as u32) << 4;
    (mix.wrapping_mul(0x9e37_79b1) >> 24) as usize % SLOTS
}

/// Open-addressing table: `TABLE[slot]` is a `NAMES` index plus one, 0 for an empty slot.
const TABLE: [u8; SLOTS] = table();

const fn table() -> [u8; SLOTS] {
    let mut table = [0u8; SLOTS];
    let mut i = 0;
    while i < NAMES.len() {
        let mut slot = hash(NAMES[i].as_bytes());
        while table[slot] != 0 {
            slot = (slot + 1) % SLOTS;
        }
        // NAMES has fewer than 255 entries (checked by a test), so the index fits.
        table[slot] = (i + 1) as u8;
        i += 1;
    }
    table
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
                // NAMES has fewer than 255 entries (checked by a test), so the index fits.
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

/// Whether the token `name` equals the lower-case `lower` (letters and dashes only), ignoring ASCII case. For a
/// token byte `b` and such a `c`, `b | 0x20 == c` exactly when they match ignoring case; the loop has no early
/// exit, so it compiles to a few vector operations.
#[inline]
fn matches_lowercase(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len() && name.iter().zip(lower).fold(0, |diff, (&b, &c)| diff | ((b | 0x20) ^ c)) == 0
}

/// The `NAMES` index of the token `name` (as the parser checked it), compared ASCII-case-insensitively, if it is
/// one we know.
#[inline]
pub fn lookup(name: &[u8]) -> Option<Known> {
    if name.is_empty() {
        return None;
    }
    let mut slot = hash(name);
    loop {
        let entry = TABLE[slot];
        let index = usize::from(entry.checked_sub(1)?);
        if matches_lowercase(name, NAMES[index].as_bytes()) {
            return Known::try_from(index).ok();
        }
        slot = (slot + 1) % SLOTS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_unique_and_probes_short() {
        assert!(NAMES.len() < 255 && NAMES.len() * 4 <= SLOTS);
        for (i, name) in NAMES.iter().enumerate() {
            assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{name}");
            assert!(!NAMES[..i].contains(name), "{name} twice");
        }
        let longest_probe = NAMES
            .iter()
            .map(|name| {
                let home = hash(name.as_bytes());
                (0..SLOTS)
                    .find(|k| {
                        usize::from(TABLE[(home + k) % SLOTS]) == NAMES.iter().position(|n| n == name).unwrap() + 1
                    })
                    .unwrap()
            })
            .max();
        assert!(longest_probe <= Some(3), "probe chains too long: {longest_probe:?}");
    }

    #[test]
    fn lookup_finds_every_name_in_any_case_and_nothing_else() {
        for (i, name) in NAMES.iter().enumerate() {
            assert_eq!(lookup(name.as_bytes()), Some(i as u8));
            assert_eq!(lookup(name.to_ascii_uppercase().as_bytes()), Some(i as u8));
        }
        // Any token byte in any position: a match exactly when the bytes are equal ignoring case.
        let tchars: Vec<u8> =
            (0..=255u8).filter(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)).collect();
        for (i, name) in NAMES.iter().enumerate() {
            for at in 0..name.len() {
                for &b in &tchars {
                    let mut probe = name.as_bytes().to_vec();
                    probe[at] = b;
                    let same = probe.eq_ignore_ascii_case(name.as_bytes());
                    assert_eq!(lookup(&probe) == Some(i as u8), same, "{}", String::from_utf8_lossy(&probe));
                }
            }
        }
        assert_eq!(lookup(b"content-lengths"), None);
        assert_eq!(lookup(b"content_length"), None);
        assert_eq!(lookup(b""), None);
        assert_eq!(lookup(&[b'a'; 200]), None);
        assert_eq!(NAMES[usize::from(CONTENT_LENGTH)], "content-length");
        assert_eq!(NAMES[usize::from(HOST)], "host");
    }
}
