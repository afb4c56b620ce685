#![no_main]
// Fuzz target `policy`: see hopguard_fuzz::harness::policy for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::policy(data));
