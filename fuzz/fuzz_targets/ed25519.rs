#![no_main]
// Fuzz target `ed25519`: see hopguard_fuzz::harness::ed25519 for the input format and the invariants.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopguard_fuzz::harness::ed25519(data));
