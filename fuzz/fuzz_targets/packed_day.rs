#![no_main]
// The properties live in the main crate (rightsizer::fuzzing), where clippy and the corpus
// replay in `cargo test` see them.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rightsizer::fuzzing::packed_day(data));
