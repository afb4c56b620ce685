#![no_main]
// Fuzz target `decide`: see hopguard_fuzz::harness::decide for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::decide(data));
