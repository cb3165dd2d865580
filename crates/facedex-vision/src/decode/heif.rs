//! HEIC/HEIF and AVIF through libheif (the system library, with libde265 for HEVC and dav1d or
//! libaom for AV1): the primary image, with the container's transformations (`irot` rotation,
//! `imir` mirroring, `clap` crop) applied by libheif, as 8-bit interleaved RGB. The EXIF
//! orientation a HEIF file may also carry is ignored, as the HEIF standard says and libheif,
//! Apple and Immich do: the container's transformations are the ones that count. The primary
//! image's size is checked against the pixel limit before anything is decoded. A build without
//! the `heif` feature still recognises these files and says why it cannot read them.

use image::RgbImage;
#[cfg(feature = "heif")]
use libheif_rs::{ColorSpace, HeifContext, HeifError, HeifErrorCode, LibHeif, RgbChroma};

#[cfg(feature = "heif")]
use super::{check_pixels, corrupt};
use crate::error::{Result, VisionError};

/// The `ftyp` brands of HEIF images (HEVC-coded HEIC and generic HEIF) and of AVIF.
const HEIC_BRANDS: [&[u8; 4]; 8] = [b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"];
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// The format's name in errors, when `bytes` are HEIF (`"HEIF"`) or AVIF (`"AVIF"`).
pub(super) fn heif_format(bytes: &[u8]) -> Option<&'static str> {
    // An ISO BMFF file starts with its `ftyp` box: size, "ftyp", major brand, minor version,
    // compatible brands.
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let ftyp = &bytes[..size.clamp(16, bytes.len())];
    let brands = std::iter::once(&ftyp[8..12]).chain(ftyp[16..].chunks_exact(4));
    let mut heif = false;
    for brand in brands {
        if AVIF_BRANDS.iter().any(|avif| brand == *avif) {
            return Some("AVIF");
        }
        heif |= HEIC_BRANDS.iter().any(|heic| brand == *heic);
    }
    heif.then_some("HEIF")
}

/// Without libheif: the photo is one this build cannot read.
#[cfg(not(feature = "heif"))]
pub(super) fn decode_heif(input: &str, _bytes: &[u8], format: &'static str, _max_pixels: u64) -> Result<RgbImage> {
    Err(VisionError::UnsupportedFormat {
        input: input.to_owned(),
        detail: format!("; {format}, which this build cannot decode (built without the `heif` feature, libheif)"),
    })
}

/// Decodes a HEIF or AVIF image (`format` from [`heif_format`]) to upright 8-bit RGB.
#[cfg(feature = "heif")]
pub(super) fn decode_heif(input: &str, bytes: &[u8], format: &'static str, max_pixels: u64) -> Result<RgbImage> {
    let failed = |error: HeifError| heif_error(input, format, error);
    let context = HeifContext::read_from_bytes(bytes).map_err(failed)?;
    let handle = context.primary_image_handle().map_err(failed)?;
    // The size after the container's transformations: a rotation swaps it, a crop shrinks it,
    // and decoding allocates at most the coded size, which libheif bounds itself.
    check_pixels(input, format, handle.width(), handle.height(), max_pixels)?;
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(failed)?;
    let planes = image.planes();
    let Some(plane) = planes.interleaved else {
        return Err(corrupt(
            input,
            format,
            "libheif returned no interleaved RGB plane".to_owned(),
        ));
    };
    let (width, height) = (plane.width, plane.height);
    let row = width as usize * 3;
    if plane.stride < row || plane.data.len() < plane.stride * height.saturating_sub(1) as usize + row {
        return Err(corrupt(
            input,
            format,
            format!("libheif returned a {width}x{height} plane with stride {}", plane.stride),
        ));
    }
    let mut rgb = Vec::with_capacity(row * height as usize);
    for line in plane.data.chunks(plane.stride).take(height as usize) {
        rgb.extend_from_slice(&line[..row]);
    }
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| corrupt(input, format, "inconsistent plane size".to_owned()))
}

#[cfg(feature = "heif")]
/// A decoder plugin or feature libheif lacks (a HEIF holding JPEG 2000 or VVC, say) makes the
/// photo one facedex cannot read; anything else is broken data.
fn heif_error(input: &str, format: &'static str, error: HeifError) -> VisionError {
    match error.code {
        HeifErrorCode::UnsupportedFileType | HeifErrorCode::UnsupportedFeature => VisionError::UnsupportedFormat {
            input: input.to_owned(),
            detail: format!("; {format} that libheif cannot decode ({})", error.message),
        },
        _ => corrupt(input, format, format!("{:?}: {}", error.code, error.message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compatible.len() as u32;
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"ftyp");
        bytes.extend_from_slice(major);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        for brand in compatible {
            bytes.extend_from_slice(*brand);
        }
        bytes.extend_from_slice(&[0; 32]);
        bytes
    }

    #[test]
    fn brands_tell_heic_from_avif_and_from_other_iso_files() {
        assert_eq!(heif_format(&ftyp(b"heic", &[b"mif1", b"heic"])), Some("HEIF"));
        assert_eq!(heif_format(&ftyp(b"mif1", &[b"avif", b"miaf"])), Some("AVIF"));
        assert_eq!(heif_format(&ftyp(b"avif", &[])), Some("AVIF"));
        assert_eq!(heif_format(&ftyp(b"isom", &[b"mp41"])), None, "an MP4 video");
        assert_eq!(heif_format(b"\xff\xd8\xff\xe0"), None);
    }

    #[cfg(feature = "heif")]
    #[test]
    fn a_heif_header_without_an_image_is_a_corrupt_photo() {
        let bytes = ftyp(b"heic", &[b"mif1"]);
        let error = decode_heif("broken.heic", &bytes, "HEIF", 1 << 30).expect_err("no image");
        assert!(matches!(error, VisionError::CorruptImage { .. }), "{error:?}");
        assert!(error.to_string().starts_with("broken.heic:"), "{error}");
    }
}
