#![no_main]
// Fuzz target `extract`: see hopguard_fuzz::harness::extract for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::extract(data));
