//! ferrovent's pure-Rust HTTP parsers, compiled from the main crate's sources (no PyO3, no Python), for fuzzing.

#[path = "../../rust/http/checks.rs"]
pub mod checks;
#[path = "../../rust/http/chunked.rs"]
pub mod chunked;
#[path = "../../rust/http/head.rs"]
pub mod head;
#[path = "../../rust/http/names.rs"]
pub mod names;
