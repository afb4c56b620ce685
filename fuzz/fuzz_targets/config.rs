#![no_main]
// Fuzz target `config`: see hopguard_fuzz::harness::config for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::config(data));
