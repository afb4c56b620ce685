#![no_main]
// Fuzz target `remote`: see hopguard_fuzz::harness::remote for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::remote(data));
