//! libFuzzer target: `facedex_fuzz::decode_photo` (see crates/facedex-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| facedex_fuzz::decode_photo(data));
