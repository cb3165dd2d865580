//! What facedex's fuzz targets run: one function per entry point that hostile bytes reach.
//! Each takes arbitrary bytes and must return, never panic or allocate without bound, whatever
//! they hold. The libFuzzer targets in `fuzz/` (`scripts/fuzz`) call these, and
//! `tests/regressions.rs` replays every seed and every input a fuzzer ever crashed on through
//! them on the stable toolchain, as part of the test suite.

pub mod records;
pub mod snapshot;

/// The largest photo the decode target decodes, in pixels. Smaller than the default
/// `vision.max_image_pixels` so that one input decodes in milliseconds; the check that refuses
/// larger headers before decoding is the same.
pub const FUZZ_MAX_IMAGE_PIXELS: u64 = 4_000_000;

/// Photo decoding, every format the decoder accepts (sniffed from the bytes, as for a photo
/// from the archive), EXIF orientation included.
pub fn decode_photo(data: &[u8]) {
    if let Ok(photo) = facedex_vision::decode_photo("fuzz-input", data, FUZZ_MAX_IMAGE_PIXELS) {
        let pixels = u64::from(photo.width()) * u64::from(photo.height());
        assert!(
            pixels <= FUZZ_MAX_IMAGE_PIXELS,
            "decoded {pixels} pixels over the limit"
        );
    }
}

pub use records::{pipeline_records, requests};
pub use snapshot::snapshot_files;

/// One fuzz target: arbitrary bytes in, nothing out; it must return for any input.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: the libFuzzer binaries in `fuzz/fuzz_targets/` and the folders
/// under `fuzz/corpus/` and `fuzz/regressions/` carry these names.
pub const TARGETS: [(&str, Target); 4] = [
    ("decode_photo", decode_photo),
    ("pipeline_records", pipeline_records),
    ("requests", requests),
    ("snapshot_files", snapshot_files),
];

/// The seed corpus of target `name`: real inputs that reach deep into it. The decode target's
/// seeds are the photos of the assets folder `assets_dir` (the sample photos of `scripts/setup`
/// and the same photo in every other format of `scripts/formats/make-photos`) of at most
/// `max_photo_bytes`, plus a 64-pixel-wide copy of one in each format the `image` crate writes
/// (small seeds keep the fuzzer fast).
pub fn seeds(name: &str, assets_dir: &std::path::Path, max_photo_bytes: u64) -> std::io::Result<Vec<Vec<u8>>> {
    Ok(match name {
        "decode_photo" => {
            let mut photos = Vec::new();
            for dir in [assets_dir.join("photos"), assets_dir.join("formats")] {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for entry in entries.flatten() {
                    let path = entry.path();
                    let size = entry.metadata()?.len();
                    if path.is_file() && path.extension().is_some_and(|ext| ext != "json") && size <= max_photo_bytes {
                        photos.push(std::fs::read(path)?);
                    }
                }
            }
            photos.extend(small_photos(&assets_dir.join("photos/t1.jpg")));
            photos
        }
        "pipeline_records" => records::record_seeds(),
        "requests" => records::request_seeds(),
        "snapshot_files" => snapshot::seeds(),
        _ => Vec::new(),
    })
}

/// The photo at `path`, 64 pixels wide, in every format the `image` crate encodes.
fn small_photos(path: &std::path::Path) -> Vec<Vec<u8>> {
    use image::ImageFormat;
    let Ok(photo) = image::open(path) else {
        return Vec::new();
    };
    let small = photo.thumbnail(64, 64).to_rgb8();
    [
        ImageFormat::Jpeg,
        ImageFormat::Png,
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Gif,
        ImageFormat::WebP,
    ]
    .into_iter()
    .filter_map(|format| {
        let mut bytes = std::io::Cursor::new(Vec::new());
        small.write_to(&mut bytes, format).ok()?;
        Some(bytes.into_inner())
    })
    .collect()
}
