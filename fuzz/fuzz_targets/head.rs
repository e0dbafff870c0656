//! The request-head parser on arbitrary bytes: no panic, and every prefix agrees with the whole input
//! (see `checks::head_prefixes`). The first two bytes choose extra prefix lengths to try.
#![no_main]

use ferrovent_fuzz::checks::head_prefixes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, input) = data.split_at(data.len().min(2));
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * 7).collect();
    head_prefixes(input, &cuts);
});
