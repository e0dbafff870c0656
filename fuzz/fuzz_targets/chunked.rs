//! The chunked-body decoder on arbitrary bytes: no panic, and feeding the input in pieces gives what feeding it
//! whole gives (see `checks::chunked_pieces`). The first four bytes choose where the pieces are cut.
#![no_main]

use ferrovent_fuzz::checks::chunked_pieces;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, input) = data.split_at(data.len().min(4));
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c)).collect();
    chunked_pieces(input, &cuts);
});
