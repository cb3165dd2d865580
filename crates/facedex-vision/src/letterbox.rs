//! Fits a photo into the detector's square input the way InsightFace does: keep the aspect
//! ratio, resize with (non-antialiased) bilinear interpolation like OpenCV's `INTER_LINEAR`,
//! paste top-left onto a black canvas, and normalise to NCHW `(x − 127.5) / 128`.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

/// SCRFD's input normalisation: `(x − MEAN) / STD`.
const DETECTOR_MEAN: f32 = 127.5;
const DETECTOR_STD: f32 = 128.0;

/// Where the photo landed on the canvas, to map detections back to photo pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LetterboxGeometry {
    /// Width of the resized photo on the canvas.
    pub resized_width: u32,
    /// Height of the resized photo on the canvas.
    pub resized_height: u32,
    /// Canvas pixels per photo pixel (InsightFace's `det_scale = new_h / img_h`).
    pub scale: f32,
}

/// The resized size InsightFace computes, including its truncation to whole pixels.
pub fn letterbox_geometry(width: u32, height: u32, canvas: u32) -> LetterboxGeometry {
    let image_ratio = f64::from(height) / f64::from(width);
    let (resized_width, resized_height) = if image_ratio > 1.0 {
        (((f64::from(canvas) / image_ratio) as u32).max(1), canvas)
    } else {
        (canvas, ((f64::from(canvas) * image_ratio) as u32).max(1))
    };
    LetterboxGeometry {
        resized_width,
        resized_height,
        scale: (f64::from(resized_height) / f64::from(height)) as f32,
    }
}

/// Letterboxes photos into detector tensors, reusing its buffers between photos.
pub struct Letterboxer {
    canvas: u32,
    resizer: Resizer,
    resized: Vec<u8>,
}

impl Letterboxer {
    /// A letterboxer for a `canvas`×`canvas` detector input.
    pub fn new(canvas: u32) -> Self {
        Self {
            canvas,
            resizer: Resizer::new(),
            resized: Vec::new(),
        }
    }

    /// Writes `photo` as a normalised `3×canvas×canvas` plane set into `tensor` (one batch slot).
    pub fn write_tensor(&mut self, photo: &RgbImage, tensor: &mut [f32]) -> LetterboxGeometry {
        let side = self.canvas as usize;
        debug_assert_eq!(tensor.len(), 3 * side * side);
        let geometry = letterbox_geometry(photo.width(), photo.height(), self.canvas);
        let (new_w, new_h) = (geometry.resized_width as usize, geometry.resized_height as usize);
        let pixels = self.resize(photo, geometry);

        let background = (0.0 - DETECTOR_MEAN) / DETECTOR_STD;
        let plane_len = side * side;
        for (channel, plane) in tensor.chunks_exact_mut(plane_len).enumerate() {
            for (row_index, row) in plane.chunks_exact_mut(side).enumerate() {
                if row_index >= new_h {
                    row.fill(background);
                    continue;
                }
                let source = &pixels[row_index * new_w * 3..(row_index + 1) * new_w * 3];
                for (out, pixel) in row[..new_w].iter_mut().zip(source.chunks_exact(3)) {
                    *out = (f32::from(pixel[channel]) - DETECTOR_MEAN) / DETECTOR_STD;
                }
                row[new_w..].fill(background);
            }
        }
        geometry
    }

    /// The photo resized to the geometry's size, as packed RGB bytes.
    fn resize<'a>(&'a mut self, photo: &'a RgbImage, geometry: LetterboxGeometry) -> &'a [u8] {
        let (new_w, new_h) = (geometry.resized_width, geometry.resized_height);
        if (new_w, new_h) == photo.dimensions() {
            return photo.as_raw();
        }
        self.resized.resize(new_w as usize * new_h as usize * 3, 0);
        let source = ImageRef::new(photo.width(), photo.height(), photo.as_raw(), PixelType::U8x3)
            .expect("an RgbImage's buffer matches its dimensions");
        let mut destination = Image::from_slice_u8(new_w, new_h, &mut self.resized, PixelType::U8x3)
            .expect("buffer sized for the destination above");
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear));
        self.resizer
            .resize(&source, &mut destination, &options)
            .expect("same pixel type on both sides");
        &self.resized
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    #[test]
    fn geometry_matches_insightface_truncation() {
        // players.jpg: 1237x800 → 640 wide, int(640 * 800/1237) = 413 high.
        let g = letterbox_geometry(1237, 800, 640);
        assert_eq!((g.resized_width, g.resized_height), (640, 413));
        assert!((g.scale - 413.0 / 800.0).abs() < 1e-7);
        // gdp.jpg: 500x665 (portrait) → int(640 / (665/500)) = 481 wide.
        let g = letterbox_geometry(500, 665, 640);
        assert_eq!((g.resized_width, g.resized_height), (481, 640));
        // Extremely thin images still get a 1-pixel band instead of a zero-sized resize.
        let g = letterbox_geometry(10_000, 2, 640);
        assert_eq!((g.resized_width, g.resized_height), (640, 1));
    }

    #[test]
    fn writes_normalised_planes_with_black_padding() {
        let photo = RgbImage::from_pixel(64, 32, Rgb([255, 0, 128]));
        let mut tensor = vec![f32::NAN; 3 * 64 * 64];
        let mut letterboxer = Letterboxer::new(64);
        let g = letterboxer.write_tensor(&photo, &mut tensor);
        assert_eq!((g.resized_width, g.resized_height), (64, 32));
        let at = |c: usize, y: usize, x: usize| tensor[c * 64 * 64 + y * 64 + x];
        assert_eq!(at(0, 0, 0), (255.0 - 127.5) / 128.0);
        assert_eq!(at(1, 10, 10), -127.5 / 128.0);
        assert_eq!(at(2, 31, 63), 0.5 / 128.0);
        assert_eq!(at(0, 32, 0), -127.5 / 128.0, "rows below the photo are black");
        assert!(tensor.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bilinear_downscale_by_two_averages_pixel_pairs_like_opencv() {
        // OpenCV INTER_LINEAR at exactly 1/2 samples halfway between source pixels.
        let photo = RgbImage::from_fn(4, 4, |x, _| {
            if x % 2 == 0 {
                Rgb([0, 0, 0])
            } else {
                Rgb([200, 200, 200])
            }
        });
        let mut letterboxer = Letterboxer::new(2);
        let mut tensor = vec![0.0; 3 * 2 * 2];
        letterboxer.write_tensor(&photo, &mut tensor);
        let value = tensor[0] * 128.0 + 127.5;
        assert!((value - 100.0).abs() <= 1.0, "got {value}");
    }
}
