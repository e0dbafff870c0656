//! Property tests: generated valid requests and chunked bodies, mutations of them, random bytes, inputs at the
//! limits. Every input goes through `checks` (no panic, prefix and split consistency); valid ones must also parse
//! to exactly what was generated. Seeded, so a failure repeats; `FERROVENT_HTTP_CASES=N` scales the run (the
//! default keeps `cargo test` quick; run `cargo test --release http::props` with a large N for a long run).

use super::checks::{chunked_pieces, head_prefixes};
use super::chunked::Decoder;
use super::head::{self, Body, Version, MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};
use super::names::{self, NAMES};

/// splitmix64: small, fast, and good enough to drive generators.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn cuts(&mut self, len: usize, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.below(len + 1)).collect()
    }
}

fn cases(default: usize) -> usize {
    std::env::var("FERROVENT_HTTP_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

const TCHARS: &[u8] = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const SPECIAL: &[u8] = b"\r\n \t:;,%?/=\"\x00\x01\x7f\x80\xffHTP10.-_0123456789abcdefABCDEF";

fn token(rng: &mut Rng, max: usize) -> Vec<u8> {
    (0..=rng.below(max)).map(|_| rng.pick(TCHARS)).collect()
}

fn random_case(rng: &mut Rng, text: &str) -> Vec<u8> {
    text.bytes().map(|b| if rng.chance(50) { b.to_ascii_uppercase() } else { b }).collect()
}

fn line_end(rng: &mut Rng) -> &'static [u8] {
    if rng.chance(90) {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// What a generated request must parse to.
struct Expected {
    method: Vec<u8>,
    target: Vec<u8>,
    version: Version,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    body: Body,
    keep_alive: bool,
    consumed: usize,
}

fn target(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => b"*".to_vec(),
        1 => b"http://example.com:8080/p?q=1".to_vec(),
        _ => {
            let mut t = vec![b'/'];
            for _ in 0..rng.below(40) {
                match rng.below(12) {
                    0 => t.extend_from_slice(b"%2F"),
                    1 => t.push(b'?'),
                    2 => t.push(0x80 + u8::try_from(rng.below(128)).unwrap_or(0)),
                    _ => t.push(b'!' + u8::try_from(rng.below(94)).unwrap_or(0)),
                }
            }
            t
        }
    }
}

/// A valid request head (with trailing bytes after it) and what it must parse to.
fn valid_request(rng: &mut Rng) -> (Vec<u8>, Expected) {
    let mut buf = Vec::new();
    for _ in 0..rng.below(3) {
        buf.extend_from_slice(line_end(rng));
    }
    let method =
        if rng.chance(80) { rng.pick(&[&b"GET"[..], b"POST", b"HEAD", b"PUT"]).to_vec() } else { token(rng, 12) };
    let target = target(rng);
    let version = if rng.chance(70) { Version::Http11 } else { Version::Http10 };
    buf.extend_from_slice(&method);
    buf.push(b' ');
    buf.extend_from_slice(&target);
    buf.extend_from_slice(if version == Version::Http11 { b" HTTP/1.1" } else { b" HTTP/1.0" });
    buf.extend_from_slice(line_end(rng));

    let mut fields = Vec::new();
    let special = [names::CONTENT_LENGTH, names::TRANSFER_ENCODING, names::CONNECTION, names::HOST];
    for _ in 0..rng.below(20) {
        let name = if rng.chance(60) {
            let known = loop {
                let i = rng.below(NAMES.len());
                if !special.contains(&u8::try_from(i).unwrap_or(0)) {
                    break NAMES[i];
                }
            };
            random_case(rng, known)
        } else {
            token(rng, 20)
        };
        if names::lookup(&name).is_some_and(|k| special.contains(&k)) {
            continue;
        }
        let value: Vec<u8> = (0..rng.below(60))
            .map(|_| match rng.below(20) {
                0 => b' ',
                1 => b'\t',
                2 => 0x80 + u8::try_from(rng.below(128)).unwrap_or(0),
                _ => b'!' + u8::try_from(rng.below(94)).unwrap_or(0),
            })
            .collect();
        fields.push((name, value));
    }
    let mut body = Body::Absent;
    let mut keep_alive = version == Version::Http11;
    match rng.below(6) {
        0 => {
            let n = rng.below(100_000) as u64;
            body = Body::Length(n);
            fields.push((random_case(rng, "content-length"), n.to_string().into_bytes()));
        }
        1 if version == Version::Http11 => {
            body = Body::Chunked;
            fields.push((random_case(rng, "transfer-encoding"), random_case(rng, "chunked")));
        }
        2 => {
            let close = rng.chance(50);
            keep_alive = !close;
            let option = if close { "close" } else { "keep-alive" };
            fields.push((random_case(rng, "connection"), random_case(rng, option)));
        }
        _ => {}
    }
    if rng.chance(70) || version == Version::Http11 {
        fields.insert(0, (b"Host".to_vec(), b"example.com".to_vec()));
    }
    for (name, value) in &fields {
        buf.extend_from_slice(name);
        buf.push(b':');
        for _ in 0..rng.below(3) {
            buf.push(rng.pick(b" \t"));
        }
        buf.extend_from_slice(value);
        for _ in 0..rng.below(3) {
            buf.push(rng.pick(b" \t"));
        }
        buf.extend_from_slice(line_end(rng));
    }
    buf.extend_from_slice(line_end(rng));
    let consumed = buf.len();
    let trailing = if rng.chance(30) { b"GET / HTTP/1.1\r\n\r\n".to_vec() } else { token(rng, 30) };
    buf.extend_from_slice(&trailing[..rng.below(trailing.len() + 1)]);
    let fields = fields.into_iter().map(|(n, v)| (n, head::trim_ows(&v).to_vec())).collect();
    (buf, Expected { method, target, version, fields, body, keep_alive, consumed })
}

/// A few random edits: a byte changed, inserted, removed, a range repeated, a line end changed, a cut.
fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(buf.len() + 1);
        match rng.below(7) {
            0 if at < buf.len() => buf[at] = rng.pick(SPECIAL),
            1 if at < buf.len() => buf[at] = u8::try_from(rng.below(256)).unwrap_or(0),
            2 => buf.insert(at, rng.pick(SPECIAL)),
            3 if at < buf.len() => {
                buf.remove(at);
            }
            4 => {
                let end = (at + rng.below(64)).min(buf.len());
                let copy = buf[at..end].to_vec();
                buf.splice(at..at, copy);
            }
            5 => {
                if let Some(cr) = buf[at..].iter().position(|&b| b == b'\r') {
                    buf.remove(at + cr);
                }
            }
            _ => buf.truncate(at.max(1)),
        }
    }
}

#[test]
fn valid_requests_parse_to_what_was_sent_at_every_split() {
    let mut rng = Rng(1);
    for case in 0..cases(3000) {
        let (buf, want) = valid_request(&mut rng);
        let head = head::parse(&buf).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(&buf))).unwrap();
        assert_eq!(head.method, want.method);
        assert_eq!(head.target, want.target);
        assert_eq!(head.version, want.version);
        let fields: Vec<(Vec<u8>, Vec<u8>)> =
            head.headers.iter().map(|h| (h.name.to_vec(), h.value.to_vec())).collect();
        assert_eq!(fields, want.fields);
        assert_eq!((head.body, head.keep_alive, head.consumed), (want.body, want.keep_alive, want.consumed));
        if case % 20 == 0 {
            // Every split point: the server accumulates and parses again, so each prefix is one "feed".
            let whole = head::parse(&buf);
            for cut in 0..=buf.len() {
                let want = if cut < head.consumed { Ok(None) } else { whole.clone() };
                assert_eq!(head::parse(&buf[..cut]), want, "cut at {cut}");
            }
        } else {
            head_prefixes(&buf, &rng.cuts(buf.len(), 8));
        }
    }
}

#[test]
fn mutated_requests_never_panic_and_decide_consistently() {
    let mut rng = Rng(2);
    for _ in 0..cases(20_000) {
        let (mut buf, _) = valid_request(&mut rng);
        mutate(&mut rng, &mut buf);
        head_prefixes(&buf, &rng.cuts(buf.len(), 6));
    }
}

#[test]
fn random_bytes_never_panic_and_decide_consistently() {
    let mut rng = Rng(3);
    for _ in 0..cases(20_000) {
        let len = rng.below(200);
        let buf: Vec<u8> = (0..len)
            .map(|_| if rng.chance(70) { rng.pick(SPECIAL) } else { u8::try_from(rng.below(256)).unwrap_or(0) })
            .collect();
        head_prefixes(&buf, &rng.cuts(len, 6));
    }
}

#[test]
fn requests_at_the_limits_decide_consistently() {
    let mut rng = Rng(4);
    for _ in 0..cases(3000) / 30 {
        let mut buf = b"GET /".to_vec();
        match rng.below(3) {
            0 => {
                let len = MAX_REQUEST_LINE - 16 + rng.below(32);
                buf.resize(len, b'a');
                buf.extend_from_slice(b" HTTP/1.1\r\n\r\n");
            }
            1 => {
                buf.extend_from_slice(b" HTTP/1.1\r\n");
                for i in 0..MAX_HEADERS - 2 + rng.below(4) {
                    buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
                }
                buf.extend_from_slice(b"\r\n");
            }
            _ => {
                buf.extend_from_slice(b" HTTP/1.1\r\nX-Big: ");
                buf.resize(MAX_HEAD - 24 + rng.below(24), b'v');
                buf.extend_from_slice(b"\r\n\r\nrest");
            }
        }
        if rng.chance(30) {
            mutate(&mut rng, &mut buf);
        }
        head_prefixes(&buf, &rng.cuts(buf.len(), 6));
    }
}

/// A valid chunked body followed by a few stray bytes, and the data it carries.
fn valid_chunked(rng: &mut Rng) -> (Vec<u8>, Vec<u8>, usize) {
    let mut buf = Vec::new();
    let mut data = Vec::new();
    for _ in 0..rng.below(6) {
        let big = rng.chance(10);
        let size = 1 + rng.below(if big { 5000 } else { 40 });
        let digits = format!("{:0width$x}", size, width = rng.below(4));
        buf.extend_from_slice(&random_case(rng, &digits));
        if rng.chance(20) {
            buf.extend_from_slice(b" ;name=\"v a l\";flag");
        }
        buf.extend_from_slice(b"\r\n");
        let chunk: Vec<u8> = (0..size).map(|_| u8::try_from(rng.below(256)).unwrap_or(0)).collect();
        buf.extend_from_slice(&chunk);
        data.extend_from_slice(&chunk);
        buf.extend_from_slice(b"\r\n");
    }
    buf.extend_from_slice(if rng.chance(50) { b"0\r\n" } else { b"000;last\r\n" });
    for i in 0..rng.below(3) {
        buf.extend_from_slice(format!("X-Trailer-{i}: value {i}\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    let used = buf.len();
    buf.extend_from_slice(&b"POST / HTTP/1.1\r\n"[..rng.below(18)]);
    (buf, data, used)
}

#[test]
fn chunked_bodies_decode_whole_and_in_pieces() {
    let mut rng = Rng(5);
    for _ in 0..cases(3000) {
        let (buf, want, want_used) = valid_chunked(&mut rng);
        let mut decoder = Decoder::default();
        let mut data = Vec::new();
        let used = decoder.decode(&buf, |piece| data.extend_from_slice(piece)).unwrap();
        assert_eq!((data, used, decoder.done()), (want, want_used, true));
        let pieces = 1 + rng.below(8);
        chunked_pieces(&buf, &rng.cuts(buf.len(), pieces));
    }
}

#[test]
fn mutated_chunked_bodies_never_panic_and_split_consistently() {
    let mut rng = Rng(6);
    for _ in 0..cases(20_000) {
        let (mut buf, _, _) = valid_chunked(&mut rng);
        mutate(&mut rng, &mut buf);
        let pieces = 1 + rng.below(8);
        chunked_pieces(&buf, &rng.cuts(buf.len(), pieces));
    }
}
