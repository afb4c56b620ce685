#![no_main]
// Fuzz target `token`: see hopguard_fuzz::harness::token for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::token(data));
