//! Pictures cut from the original photos: a face's square thumbnail (centred on its box, with
//! a margin, resized and JPEG-encoded, as Immich makes its person thumbnails) and a photo view
//! downscaled with its faces' boxes drawn. Photos are decoded upright (EXIF orientation) and
//! within a pixel budget (`facedex_vision::decode_photo_scaled`), so a 100-megapixel photo
//! costs its scaled size; boxes are in full-size pixels and are scaled to match.

use facedex_vision::ScaledPhoto;
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

/// The square a thumbnail shows, `[x, y, side]` in full-size pixels: centred on `bounding_box`
/// (`[x1, y1, x2, y2]`), its side the box's longer side plus `margin_ratio` of it on each side,
/// moved (and if need be shrunk) to lie inside a `width` × `height` photo.
pub(crate) fn thumbnail_square(bounding_box: [f32; 4], margin_ratio: f32, width: f32, height: f32) -> [f32; 3] {
    let [x1, y1, x2, y2] = bounding_box;
    let longer = (x2 - x1).max(y2 - y1).max(1.0);
    let side = (longer * (1.0 + 2.0 * margin_ratio)).min(width).min(height);
    let (centre_x, centre_y) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let x = (centre_x - side / 2.0).clamp(0.0, width - side);
    let y = (centre_y - side / 2.0).clamp(0.0, height - side);
    [x, y, side]
}

/// A `size_px` square thumbnail of the face at `bounding_box` (full-size pixels) in `photo`.
pub(crate) fn thumbnail(photo: &ScaledPhoto, bounding_box: [f32; 4], margin_ratio: f32, size_px: u32) -> RgbImage {
    let scale = photo.scale;
    let (width, height) = (photo.image.width() as f32, photo.image.height() as f32);
    let [x, y, side] = thumbnail_square(bounding_box.map(|value| value * scale), margin_ratio, width, height);
    let (left, top) = (x.round() as u32, y.round() as u32);
    let side = (side.round() as u32)
        .min(photo.image.width().saturating_sub(left))
        .min(photo.image.height().saturating_sub(top))
        .max(1);
    let square = imageops::crop_imm(&photo.image, left, top, side, side).to_image();
    imageops::resize(&square, size_px, size_px, FilterType::Lanczos3)
}

/// `photo` with its longer side at most `max_side_px`, a box drawn around each face of
/// `boxes` (full-size pixels) and a thicker, brighter one around `highlighted`.
pub(crate) fn photo_view(
    photo: &ScaledPhoto,
    boxes: &[[f32; 4]],
    highlighted: Option<usize>,
    max_side_px: u32,
) -> RgbImage {
    let longer = photo.image.width().max(photo.image.height());
    let (mut view, factor) = if longer > max_side_px {
        let factor = max_side_px as f32 / longer as f32;
        let width = ((photo.image.width() as f32 * factor).round() as u32).max(1);
        let height = ((photo.image.height() as f32 * factor).round() as u32).max(1);
        // Box-averaging straight into the output: a filtered resize would hold an f32 copy
        // of the photo at full width, several times the decoded photo's own size.
        (imageops::thumbnail(&photo.image, width, height), factor)
    } else {
        (photo.image.clone(), 1.0)
    };
    let scale = photo.scale * factor;
    for (position, corners) in boxes.iter().enumerate() {
        let is_highlighted = Some(position) == highlighted;
        let (colour, thickness) = match is_highlighted {
            true => (Rgb([255, 214, 0]), 4),
            false => (Rgb([255, 255, 255]), 2),
        };
        draw_box(&mut view, corners.map(|value| value * scale), colour, thickness);
    }
    view
}

/// Draws the outline of `corners` (`[x1, y1, x2, y2]`, clipped to the image).
fn draw_box(image: &mut RgbImage, corners: [f32; 4], colour: Rgb<u8>, thickness: u32) {
    let (width, height) = (image.width(), image.height());
    if width == 0 || height == 0 {
        return;
    }
    let clamp_x = |value: f32| (value.max(0.0) as u32).min(width - 1);
    let clamp_y = |value: f32| (value.max(0.0) as u32).min(height - 1);
    let (x1, y1, x2, y2) = (
        clamp_x(corners[0]),
        clamp_y(corners[1]),
        clamp_x(corners[2]),
        clamp_y(corners[3]),
    );
    for x in x1..=x2 {
        for step in 0..thickness {
            image.put_pixel(x, (y1 + step).min(height - 1), colour);
            image.put_pixel(x, y2.saturating_sub(step), colour);
        }
    }
    for y in y1..=y2 {
        for step in 0..thickness {
            image.put_pixel((x1 + step).min(width - 1), y, colour);
            image.put_pixel(x2.saturating_sub(step), y, colour);
        }
    }
}

/// `image` as a JPEG of `quality`.
pub(crate) fn jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, image::ImageError> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(image)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_square_is_centred_with_its_margin_and_stays_inside_the_photo() {
        // A 100 × 80 box: a 150 side with 25 % on each side, centred.
        assert_eq!(
            thumbnail_square([100.0, 100.0, 200.0, 180.0], 0.25, 1000.0, 1000.0),
            [75.0, 65.0, 150.0]
        );
        // Near the top-left corner it moves inside.
        assert_eq!(
            thumbnail_square([0.0, 0.0, 100.0, 100.0], 0.25, 1000.0, 1000.0),
            [0.0, 0.0, 150.0]
        );
        // Larger than the photo: as large as its shorter side, still centred across.
        assert_eq!(
            thumbnail_square([0.0, 0.0, 90.0, 90.0], 0.5, 100.0, 60.0),
            [15.0, 0.0, 60.0]
        );
    }

    #[test]
    fn boxes_are_drawn_at_the_view_scale() {
        let photo = ScaledPhoto {
            image: RgbImage::new(400, 200),
            scale: 0.5,
        };
        // Full size 800 × 400, shown at 200 × 100: a box at (400, 200) lands at (100, 50).
        let view = photo_view(&photo, &[[400.0, 200.0, 600.0, 300.0]], Some(0), 200);
        assert_eq!(view.dimensions(), (200, 100));
        assert_eq!(view.get_pixel(100, 50), &Rgb([255, 214, 0]));
        assert_eq!(
            view.get_pixel(120, 60),
            &Rgb([0, 0, 0]),
            "inside the box stays as it was"
        );
    }
}
