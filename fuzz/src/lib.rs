//! The fuzz harness, shared by the cargo-fuzz targets (`fuzz_targets/*.rs`) and by
//! `tests/fuzz_regressions.rs`, which replays the seed corpora and every crash found.
pub mod harness;
