#![no_main]
// Fuzz target `dpop`: see hopguard_fuzz::harness::dpop for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::dpop(data));
