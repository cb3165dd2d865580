//! libFuzzer target: `facedex_fuzz::pipeline_records` (see crates/facedex-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| facedex_fuzz::pipeline_records(data));
