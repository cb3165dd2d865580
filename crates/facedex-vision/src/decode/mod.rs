//! Photo bytes to an upright RGB image: JPEG, PNG (APNG: its first frame), WebP (animated: the
//! first frame), TIFF (8/16-bit, the first page), GIF (the first frame), BMP, JPEG XL, and with
//! the `heif` feature HEIC/HEIF and AVIF (the primary image), and camera RAW (its largest
//! embedded JPEG preview); the EXIF, codestream or container orientation applied; grayscale, CMYK, alpha and 16-bit inputs converted
//! to 8-bit RGB (alpha is dropped, as OpenCV's `imread` does). The pixel count declared in the
//! header is checked *before* any pixel buffer is allocated, so a decompression bomb costs a
//! header parse, not gigabytes.
//!
//! JPEGs are decoded by libjpeg-turbo, the decoder OpenCV (and so InsightFace) uses: other
//! decoders differ by a grey level here and there, which moves the embeddings of small faces by
//! up to 0.01 in cosine. CMYK JPEGs, which libjpeg-turbo cannot convert to RGB, fall back to the
//! `image` crate's decoder, which also decodes every other format but JPEG XL (`jxl-oxide`)
//! and HEIF/AVIF (libheif).

mod heif;
mod jpeg;
mod jxl;
mod raw;

use std::io::Cursor;

use image::error::{ImageError, LimitErrorKind};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Result, VisionError};

/// Decodes `bytes` (named `input` in errors) into an upright 8-bit RGB image.
pub fn decode_photo(input: &str, bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(VisionError::EmptyInput {
            input: input.to_owned(),
        });
    }
    if jxl::is_jxl(bytes) {
        return jxl::decode_jxl(input, bytes, max_pixels);
    }
    if let Some(format) = heif::heif_format(bytes) {
        return heif::decode_heif(input, bytes, format, max_pixels);
    }
    match raw::raw_kind(bytes) {
        raw::RawKind::NotRaw => {}
        raw::RawKind::Preview(preview) => return decode_raw_preview(input, &preview, max_pixels),
        raw::RawKind::Truncated => {
            return Err(corrupt(
                input,
                "camera RAW",
                "the file is truncated (its JPEG preview runs past the end)".to_owned(),
            ));
        }
        raw::RawKind::NoPreview => {
            return Err(VisionError::UnsupportedFormat {
                input: input.to_owned(),
                detail:
                    "; a camera RAW without an embedded JPEG preview (facedex reads the preview, not the sensor data)"
                        .to_owned(),
            });
        }
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| corrupt(input, "unknown", error.to_string()))?;
    let format = match reader.format() {
        Some(
            format @ (ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Tiff
            | ImageFormat::Gif
            | ImageFormat::Bmp),
        ) => format,
        Some(other) => {
            return Err(VisionError::UnsupportedFormat {
                input: input.to_owned(),
                detail: format!("; found {other:?}"),
            });
        }
        None => {
            return Err(VisionError::UnsupportedFormat {
                input: input.to_owned(),
                detail: describe_unknown(bytes),
            });
        }
    };
    let format_name = format_name(format);
    // JPEG decoders fill a truncated scan with grey and report success; a photo cut short in
    // transfer must be an error, not a half-grey picture in the index.
    if format == ImageFormat::Jpeg && !jpeg::jpeg_has_end_marker(bytes) {
        return Err(corrupt(
            input,
            format_name,
            "the file is truncated (no end-of-image marker after the last scan)".to_owned(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_alloc_bytes(max_pixels));
    reader.limits(limits);

    let mut decoder = reader
        .into_decoder()
        .map_err(|error| map_image_error(input, format_name, error))?;
    let (width, height) = decoder.dimensions();
    check_pixels(input, format_name, width, height, max_pixels)?;
    // Unreadable EXIF is not a reason to lose the photo: it is then shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let libjpeg_turbo = match format {
        ImageFormat::Jpeg => jpeg::decode_jpeg_rgb(input, bytes)?,
        _ => None,
    };
    let mut image = match libjpeg_turbo {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        None => DynamicImage::from_decoder(decoder).map_err(|error| map_image_error(input, format_name, error))?,
    };
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

/// A photo decoded for display: upright, at `scale` times its full size.
#[derive(Debug, Clone)]
pub struct ScaledPhoto {
    /// The pixels.
    pub image: RgbImage,
    /// Its size over the photo's full size (1 when decoded whole).
    pub scale: f32,
}

/// Decodes `bytes` upright for display, holding at most about `max_decoded_pixels` pixels
/// where the format allows: a JPEG is scaled while it is decoded (libjpeg-turbo's DCT scaling,
/// to the largest factor of 1/8 to 1 within the budget), so a 100-megapixel photo costs its
/// scaled size. A progressive JPEG also keeps its DCT coefficients (about as many bytes as its
/// full-size RGB) while it decodes, and every other format is decoded whole: those are bounded
/// by `max_pixels`, as for indexing.
pub fn decode_photo_scaled(input: &str, bytes: &[u8], max_pixels: u64, max_decoded_pixels: u64) -> Result<ScaledPhoto> {
    // Camera RAWs are TIFF containers: their JPEG previews take the whole-photo path.
    let is_jpeg = bytes.starts_with(&[0xFF, 0xD8, 0xFF]);
    if !is_jpeg {
        let image = decode_photo(input, bytes, max_pixels)?;
        return Ok(ScaledPhoto { image, scale: 1.0 });
    }
    if !jpeg::jpeg_has_end_marker(bytes) {
        return Err(corrupt(
            input,
            "JPEG",
            "the file is truncated (no end-of-image marker after the last scan)".to_owned(),
        ));
    }
    let mut decoder = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
        .map_err(|error| map_image_error(input, "JPEG", error))?;
    let (width, height) = decoder.dimensions();
    check_pixels(input, "JPEG", width, height, max_pixels)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let Some((image, scale)) = jpeg::decode_jpeg_rgb_within(input, bytes, max_decoded_pixels)? else {
        // CMYK: the `image` crate decodes it whole.
        let image = decode_photo(input, bytes, max_pixels)?;
        return Ok(ScaledPhoto { image, scale: 1.0 });
    };
    let mut image = DynamicImage::ImageRgb8(image);
    image.apply_orientation(orientation);
    Ok(ScaledPhoto {
        image: image.into_rgb8(),
        scale,
    })
}

/// A RAW's JPEG preview, upright: by its own EXIF orientation when it has one, else by the
/// RAW's.
fn decode_raw_preview(input: &str, preview: &raw::RawPreview<'_>, max_pixels: u64) -> Result<RgbImage> {
    let own = image::codecs::jpeg::JpegDecoder::new(Cursor::new(preview.jpeg))
        .ok()
        .and_then(|mut decoder| decoder.orientation().ok())
        .unwrap_or(Orientation::NoTransforms);
    let decoded = decode_photo(input, preview.jpeg, max_pixels)?;
    if own != Orientation::NoTransforms {
        return Ok(decoded);
    }
    let mut image = DynamicImage::ImageRgb8(decoded);
    image.apply_orientation(preview.orientation);
    Ok(image.into_rgb8())
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

/// The pixel count of a `width` × `height` image, refused when over `max_pixels` or zero.
fn check_pixels(input: &str, format: &'static str, width: u32, height: u32, max_pixels: u64) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(VisionError::TooManyPixels {
            input: input.to_owned(),
            width,
            height,
            pixels,
            max_pixels,
        });
    }
    if pixels == 0 {
        return Err(corrupt(input, format, format!("declares a {width}x{height} image")));
    }
    Ok(())
}

/// The allocation limit handed to decoders, a second line of defence behind the pixel check:
/// decoders that allocate intermediate buffers must stay within a few bytes per allowed pixel.
fn max_alloc_bytes(max_pixels: u64) -> u64 {
    max_pixels.saturating_mul(8).saturating_add(64 << 20)
}

fn corrupt(input: &str, format: &'static str, reason: String) -> VisionError {
    VisionError::CorruptImage {
        input: input.to_owned(),
        format,
        reason,
    }
}

fn map_image_error(input: &str, format: &'static str, error: ImageError) -> VisionError {
    match error {
        ImageError::Unsupported(unsupported) => VisionError::UnsupportedFormat {
            input: input.to_owned(),
            detail: format!("; {unsupported}"),
        },
        ImageError::Limits(limit) if matches!(limit.kind(), LimitErrorKind::InsufficientMemory) => corrupt(
            input,
            format,
            format!("decoding would exceed the memory limit ({limit})"),
        ),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt(input, format, "the file is truncated".to_owned())
        }
        other => corrupt(input, format, other.to_string()),
    }
}

/// Says what an unrecognised file looks like, to make "not an image" errors actionable.
fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    let printable = head
        .iter()
        .filter(|&&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count();
    if printable == head.len() {
        "; the data is plain text".to_owned()
    } else {
        let magic: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("; unknown signature {}", magic.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder, Rgb};

    use super::*;

    const LIMIT: u64 = 100_000_000;

    /// A small photo-like gradient, so encoders produce realistic data.
    fn gradient(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
        })
    }

    fn jpeg(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(image.as_raw(), image.width(), image.height(), ExtendedColorType::Rgb8)
            .expect("encode jpeg");
        out
    }

    fn png(data: &[u8], width: u32, height: u32, color: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(data, width, height, color)
            .expect("encode png");
        out
    }

    /// A JPEG with an EXIF APP1 segment whose only tag is Orientation (0x0112).
    fn jpeg_with_orientation(image: &RgbImage, orientation: u16) -> Vec<u8> {
        let plain = jpeg(image);
        let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
        tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\x00\x00".to_vec();
        app1.extend_from_slice(&tiff);
        let length = u16::try_from(app1.len() + 2).expect("small segment");
        let mut out = plain[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&plain[2..]);
        out
    }

    #[test]
    fn scaled_decoding_stays_within_its_budget_and_keeps_the_orientation() {
        let image = gradient(800, 400);
        let bytes = jpeg_with_orientation(&image, 6); // rotate 90° clockwise to view
        let whole = decode_photo("a.jpg", &bytes, LIMIT).expect("whole");
        assert_eq!(whole.dimensions(), (400, 800));
        // Just under 80,000 pixels (1/2): 3/8 (300×150 stored) is the largest factor within.
        let scaled = decode_photo_scaled("a.jpg", &bytes, LIMIT, 79_999).expect("scaled");
        assert_eq!(scaled.scale, 3.0 / 8.0);
        assert_eq!(scaled.image.dimensions(), (150, 300));
        // The same picture: a pixel of the scaled photo matches the full one's at scale.
        let (full, small) = (whole.get_pixel(200, 600), scaled.image.get_pixel(75, 225));
        for channel in 0..3 {
            assert!(full[channel].abs_diff(small[channel]) <= 6, "{full:?} vs {small:?}");
        }
        let roomy = decode_photo_scaled("a.jpg", &bytes, LIMIT, 1_000_000).expect("roomy");
        assert_eq!((roomy.scale, roomy.image.dimensions()), (1.0, (400, 800)));
        let refused = decode_photo_scaled("a.jpg", &bytes, LIMIT, 4_000).expect_err("even 1/8 is 5,000 pixels");
        assert!(matches!(refused, VisionError::TooManyPixels { .. }), "{refused}");
        // Other formats are decoded whole.
        let png = png(image.as_raw(), 800, 400, ExtendedColorType::Rgb8);
        let decoded = decode_photo_scaled("a.png", &png, LIMIT, 1_000).expect("png");
        assert_eq!((decoded.scale, decoded.image.dimensions()), (1.0, (800, 400)));
    }

    #[test]
    fn decodes_jpeg_png_and_webp_to_rgb() {
        let image = gradient(40, 30);
        let decoded = decode_photo("a.jpg", &jpeg(&image), LIMIT).expect("jpeg");
        assert_eq!(decoded.dimensions(), (40, 30));
        let decoded = decode_photo("a.png", &png(image.as_raw(), 40, 30, ExtendedColorType::Rgb8), LIMIT).expect("png");
        assert_eq!(decoded, image, "png is lossless");
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .write_image(image.as_raw(), 40, 30, ExtendedColorType::Rgb8)
            .expect("encode webp");
        assert_eq!(decode_photo("a.webp", &webp, LIMIT).expect("webp"), image);
    }

    #[test]
    fn converts_grayscale_alpha_and_16_bit() {
        let gray: Vec<u8> = (0..20 * 10).map(|i| (i % 256) as u8).collect();
        let decoded = decode_photo("g.png", &png(&gray, 20, 10, ExtendedColorType::L8), LIMIT).expect("gray");
        assert_eq!(decoded.get_pixel(7, 0), &Rgb([7, 7, 7]));

        let rgba: Vec<u8> = (0..20 * 10).flat_map(|_| [10u8, 20, 30, 0]).collect();
        let decoded = decode_photo("a.png", &png(&rgba, 20, 10, ExtendedColorType::Rgba8), LIMIT).expect("rgba");
        assert_eq!(
            decoded.get_pixel(3, 3),
            &Rgb([10, 20, 30]),
            "alpha is dropped, colour kept"
        );

        let wide: Vec<u8> = (0..20 * 10).flat_map(|_| 0x8000u16.to_ne_bytes()).collect();
        let decoded = decode_photo("w.png", &png(&wide, 20, 10, ExtendedColorType::L16), LIMIT).expect("16-bit");
        assert_eq!(decoded.get_pixel(0, 0), &Rgb([128, 128, 128]));
    }

    #[test]
    fn decodes_cmyk_jpeg() {
        // 16x16 CMYK JPEG written by Pillow: left half cyan (C=255), right half white.
        let bytes = include_bytes!("../../testdata/cmyk.jpg");
        let decoded = decode_photo("cmyk.jpg", bytes, LIMIT).expect("cmyk decodes");
        assert_eq!(decoded.dimensions(), (16, 16));
        let left = decoded.get_pixel(2, 8);
        let right = decoded.get_pixel(13, 8);
        assert!(left[0] < 60 && left[1] > 200 && left[2] > 200, "cyan, got {left:?}");
        assert!(right.0.iter().all(|&c| c > 230), "white, got {right:?}");
    }

    #[test]
    fn applies_exif_orientation() {
        let image = gradient(40, 30);
        // Orientation 6: the stored image must be turned 90° clockwise to be upright.
        let decoded = decode_photo("r.jpg", &jpeg_with_orientation(&image, 6), LIMIT).expect("decodes");
        assert_eq!(decoded.dimensions(), (30, 40));
        let upright = decode_photo("u.jpg", &jpeg_with_orientation(&image, 1), LIMIT).expect("decodes");
        assert_eq!(upright.dimensions(), (40, 30));
    }

    #[test]
    fn zero_bytes_is_an_empty_input_error() {
        let error = decode_photo("empty.jpg", b"", LIMIT).expect_err("empty");
        assert!(matches!(error, VisionError::EmptyInput { .. }), "{error:?}");
        assert_eq!(error.kind(), "empty");
        assert!(error.to_string().starts_with("empty.jpg:"), "{error}");
    }

    #[test]
    fn text_is_an_unsupported_format_error() {
        let error = decode_photo("notes.jpg", b"hello, this is not a photo\n", LIMIT).expect_err("text");
        assert!(matches!(error, VisionError::UnsupportedFormat { .. }), "{error:?}");
        assert!(error.to_string().contains("plain text"), "{error}");
        assert!(error.is_bad_input());
    }

    #[test]
    fn truncated_jpeg_is_a_corrupt_error() {
        let bytes = jpeg(&gradient(64, 64));
        let error = decode_photo("cut.jpg", &bytes[..bytes.len() / 2], LIMIT).expect_err("truncated");
        assert!(matches!(error, VisionError::CorruptImage { .. }), "{error:?}");
        assert_eq!(error.kind(), "corrupt");
    }

    #[test]
    fn huge_png_header_is_refused_before_allocating() {
        // A valid 1x1 PNG whose IHDR is rewritten to claim 30000x30000 (and its CRC fixed), so
        // only the pixel-count check can stop it: decoding would need 2.7 GB.
        let mut bytes = png(&[1, 2, 3], 1, 1, ExtendedColorType::Rgb8);
        bytes[16..20].copy_from_slice(&30_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&30_000u32.to_be_bytes());
        let crc = crc32fast::hash(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        let error = decode_photo("bomb.png", &bytes, LIMIT).expect_err("too many pixels");
        match error {
            VisionError::TooManyPixels {
                width, height, pixels, ..
            } => {
                assert_eq!((width, height, pixels), (30_000, 30_000, 900_000_000));
            }
            other => panic!("expected TooManyPixels, got {other:?}"),
        }
    }
}
