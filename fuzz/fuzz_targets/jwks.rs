#![no_main]
// Fuzz target `jwks`: see hopguard_fuzz::harness::jwks for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::jwks(data));
