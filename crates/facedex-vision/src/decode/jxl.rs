//! JPEG XL through `jxl-oxide` (pure Rust): the first frame, in sRGB, with the codestream's
//! orientation applied. The header's size is checked against the pixel limit before a frame is
//! rendered, and every allocation of the decoder is counted against the same budget as the
//! other formats' decoders.

use jxl_oxide::{AllocTracker, EnumColourEncoding, JxlImage, RenderingIntent};

use super::{check_pixels, corrupt, max_alloc_bytes};
use crate::error::Result;
use image::RgbImage;

const FORMAT: &str = "JPEG XL";

/// A bare codestream (`FF 0A`) or the ISO BMFF container's signature box.
pub(super) fn is_jxl(bytes: &[u8]) -> bool {
    const CONTAINER: [u8; 12] = [0, 0, 0, 0x0C, b'J', b'X', b'L', b' ', 0x0D, 0x0A, 0x87, 0x0A];
    bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(&CONTAINER)
}

/// Decodes a JPEG XL image to upright 8-bit RGB.
pub(super) fn decode_jxl(input: &str, bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let failed = |error: Box<dyn std::error::Error + Send + Sync>| corrupt(input, FORMAT, error.to_string());
    let budget = usize::try_from(max_alloc_bytes(max_pixels)).unwrap_or(usize::MAX);
    let mut image = JxlImage::builder()
        .alloc_tracker(AllocTracker::with_limit(budget))
        .read(bytes)
        .map_err(failed)?;
    // The header's size is the stored one; orientation may swap it, not change the count.
    check_pixels(input, FORMAT, image.width(), image.height(), max_pixels)?;
    image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
    if image.num_loaded_keyframes() == 0 {
        return Err(corrupt(
            input,
            FORMAT,
            "the file is truncated (no complete frame)".to_owned(),
        ));
    }
    let render = image.render_frame(0).map_err(failed)?;
    let mut stream = render.stream_no_alpha();
    let (width, height, channels) = (stream.width(), stream.height(), stream.channels());
    let samples = u64::from(width) * u64::from(height) * u64::from(channels);
    let mut buffer = vec![0u8; usize::try_from(samples).unwrap_or(usize::MAX)];
    let written = stream.write_to_buffer(&mut buffer);
    if written != buffer.len() {
        return Err(corrupt(
            input,
            FORMAT,
            format!("rendered {written} of {} samples", buffer.len()),
        ));
    }
    let rgb = match channels {
        3 => buffer,
        1 => buffer.iter().flat_map(|&gray| [gray; 3]).collect(),
        other => {
            return Err(corrupt(
                input,
                FORMAT,
                format!("{other} colour channels (CMYK JPEG XL is not supported)"),
            ));
        }
    };
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| corrupt(input, FORMAT, "inconsistent frame size".to_owned()))
}
