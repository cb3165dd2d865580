//! JPEG specifics: decoding with libjpeg-turbo, the decoder OpenCV (and so InsightFace) uses,
//! and telling a complete JPEG from one cut short.

use image::RgbImage;

use super::corrupt;
use crate::error::{Result, VisionError};

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<turbojpeg::Decompressor>> = const { std::cell::RefCell::new(None) };
}

/// Decodes a JPEG to RGB with libjpeg-turbo; `None` for colour spaces it cannot turn into RGB
/// (CMYK, YCCK), which the caller decodes another way.
pub(super) fn decode_jpeg_rgb(input: &str, bytes: &[u8]) -> Result<Option<RgbImage>> {
    Ok(decode_jpeg_rgb_within(input, bytes, u64::MAX)?.map(|(image, _)| image))
}

/// [`decode_jpeg_rgb`] scaled while decoding (libjpeg-turbo's DCT scaling, 1/8 to 1) to the
/// largest size of at most `max_decoded_pixels`, with the factor it used; an error when even
/// 1/8 is larger.
pub(super) fn decode_jpeg_rgb_within(
    input: &str,
    bytes: &[u8],
    max_decoded_pixels: u64,
) -> Result<Option<(RgbImage, f32)>> {
    let failed = |error: turbojpeg::Error| corrupt(input, "JPEG", error.to_string());
    DECOMPRESSOR.with_borrow_mut(|slot| {
        let decompressor = match slot {
            Some(decompressor) => decompressor,
            None => slot.insert(turbojpeg::Decompressor::new().map_err(failed)?),
        };
        let header = decompressor.read_header(bytes).map_err(failed)?;
        if matches!(
            header.colorspace,
            turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
        ) {
            return Ok(None);
        }
        let fits = |factor: &turbojpeg::ScalingFactor| {
            let scaled = header.scaled(*factor);
            (scaled.width as u64).saturating_mul(scaled.height as u64) <= max_decoded_pixels
        };
        let factor = turbojpeg::Decompressor::supported_scaling_factors()
            .into_iter()
            .filter(|factor| factor.num() <= factor.denom() && fits(factor))
            .max_by(|a, b| (a.num() * b.denom()).cmp(&(b.num() * a.denom())))
            .ok_or_else(|| VisionError::TooManyPixels {
                input: input.to_owned(),
                width: u32::try_from(header.width).unwrap_or(u32::MAX),
                height: u32::try_from(header.height).unwrap_or(u32::MAX),
                pixels: (header.width as u64).saturating_mul(header.height as u64),
                // At 1/8 a photo of up to 64 times the budget fits: that is the limit it broke.
                max_pixels: max_decoded_pixels.saturating_mul(64),
            })?;
        decompressor.set_scaling_factor(factor).map_err(failed)?;
        let scaled = header.scaled(factor);
        let (width, height) = (scaled.width, scaled.height);
        let mut pixels = vec![0u8; width * height * 3];
        let output = turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width,
            pitch: width * 3,
            height,
            format: turbojpeg::PixelFormat::RGB,
        };
        let decoded = decompressor.decompress(bytes, output).map_err(failed);
        // The decompressor is reused by the next photo of this thread, which expects full size.
        decompressor
            .set_scaling_factor(turbojpeg::ScalingFactor::ONE)
            .map_err(failed)?;
        decoded?;
        let scale = factor.num() as f32 / factor.denom() as f32;
        let (width, height) = (u32::try_from(width), u32::try_from(height));
        match (width, height) {
            (Ok(width), Ok(height)) => Ok(RgbImage::from_raw(width, height, pixels).map(|image| (image, scale))),
            _ => Err(corrupt(input, "JPEG", "dimensions overflow".to_owned())),
        }
    })
}

/// Walks the JPEG marker segments (skipping APPn payloads, so an embedded EXIF thumbnail's EOI
/// does not count) and each scan's entropy-coded data, and reports whether EOI follows.
pub(super) fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;
    let mut position = 2; // after SOI
    while position + 1 < bytes.len() {
        if bytes[position] != 0xFF {
            return false;
        }
        let marker = bytes[position + 1];
        match marker {
            0xFF => position += 1, // fill byte
            EOI => return true,
            0x01 | 0xD0..=0xD7 => position += 2, // stand-alone markers
            _ => {
                let Some(length) = bytes.get(position + 2..position + 4) else {
                    return false;
                };
                position += 2 + usize::from(u16::from_be_bytes([length[0], length[1]]));
                if marker == SOS {
                    // Entropy-coded data runs to the next marker that is neither a stuffed
                    // 0xFF00 nor a restart marker.
                    loop {
                        match bytes.get(position..position + 2) {
                            None => return false,
                            Some([0xFF, 0x00 | 0xD0..=0xD7]) => position += 2,
                            Some([0xFF, _]) => break,
                            Some(_) => position += 1,
                        }
                    }
                }
            }
        }
    }
    false
}
