//! Properties the parsers must hold on any input, shared by the property tests (`props`) and the fuzz targets
//! (`fuzz/`): each function panics when a property fails.

use super::chunked::Decoder;
use super::head::{self, ParseError, MAX_HEAD};

/// The request-head parser on `input` and its prefixes: cutting the buffer anywhere before the byte that decides
/// the verdict gives "need more", anywhere after gives the same verdict, and nothing past `MAX_HEAD` matters.
/// `cuts` are extra prefix lengths to try (taken modulo the input's length plus one).
pub fn head_prefixes(input: &[u8], cuts: &[usize]) {
    let whole = head::parse(input);
    assert_eq!(head::parse(&input[..input.len().min(MAX_HEAD)]), whole, "bytes past MAX_HEAD changed the verdict");
    if let Ok(Some(head)) = &whole {
        assert!(head.consumed <= input.len() && head.consumed <= MAX_HEAD);
        assert_eq!(head::parse(&input[..head.consumed]).as_ref(), Ok(&Some(head.clone())));
    }
    if whole == Ok(None) {
        for &cut in cuts {
            assert_eq!(head::parse(&input[..cut % (input.len() + 1)]), Ok(None), "a prefix of a partial head");
        }
        return;
    }
    // The shortest prefix with a verdict, by bisection (the empty prefix needs more, the whole input does not);
    // then check it and the given cuts on both sides of it.
    let (mut short, mut long) = (0, input.len());
    while long - short > 1 {
        let mid = short + (long - short) / 2;
        if head::parse(&input[..mid]) == Ok(None) {
            short = mid;
        } else {
            long = mid;
        }
    }
    let decisive = long;
    for cut in cuts.iter().map(|cut| cut % (input.len() + 1)).chain([decisive, decisive.saturating_sub(1)]) {
        let verdict = head::parse(&input[..cut]);
        if cut < decisive {
            assert_eq!(verdict, Ok(None), "prefix of {cut} bytes decided before byte {decisive}");
        } else {
            assert_eq!(verdict, whole, "prefix of {cut} bytes disagrees with the whole input");
        }
    }
}

/// What decoding produced: the data, then bytes used and whether done, or the error.
type Decoded = (Vec<u8>, Result<(usize, bool), ParseError>);

fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Decoded {
    let mut decoder = Decoder::default();
    let mut data = Vec::new();
    let mut used = 0;
    let mut start = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(start, input.len());
        match decoder.decode(&input[start..end], |piece| data.extend_from_slice(piece)) {
            Ok(n) => {
                assert!(n <= end - start);
                assert!(n == end - start || decoder.done(), "stopped early without being done");
                used += n;
            }
            Err(err) => return (data, Err(err)),
        }
        if decoder.done() {
            break;
        }
        start = end;
    }
    (data, Ok((used, decoder.done())))
}

/// The chunked decoder fed `input` in pieces (cut at the sorted `cuts`) gives what it gives fed `input` whole.
pub fn chunked_pieces(input: &[u8], cuts: &[usize]) {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let whole = decode_in_pieces(input, &[]);
    assert_eq!(decode_in_pieces(input, &cuts), whole, "pieces {cuts:?}");
}
