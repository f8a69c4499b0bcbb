#![no_main]

#[path = "../../crates/keyport-core/tests/invariants/mod.rs"]
mod invariants;

libfuzzer_sys::fuzz_target!(|data: &[u8]| invariants::check_usage(data));
