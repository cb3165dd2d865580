//! libFuzzer target: `facedex_fuzz::snapshot_files` (see crates/facedex-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| facedex_fuzz::snapshot_files(data));
