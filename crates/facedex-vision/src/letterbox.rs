//! Fits a photo into the detector's square input the way InsightFace does: keep the aspect
//! ratio, resize with OpenCV's `INTER_LINEAR`, paste top-left onto a black canvas, and
//! normalise to NCHW `(x − 127.5) / 128`.
//!
//! The resize reproduces OpenCV's 8-bit fixed-point bilinear arithmetic (11-bit coefficients,
//! the SIMD vertical pass's rounding) rather than using a generic resampler: faces at the frame
//! edge move by over half a pixel on one-grey-level differences in the detector input, which
//! costs embedding parity. It is bit-exact with `cv2.resize` for the downscales photos need.

use image::RgbImage;

/// SCRFD's input normalisation: `(x − MEAN) / STD`.
pub(crate) const DETECTOR_MEAN: f32 = 127.5;
pub(crate) const DETECTOR_STD: f32 = 128.0;

/// Where the photo landed on the canvas, to map detections back to photo pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LetterboxGeometry {
    /// Width of the resized photo on the canvas.
    pub resized_width: u32,
    /// Height of the resized photo on the canvas.
    pub resized_height: u32,
    /// Canvas pixels per photo pixel (InsightFace's `det_scale = new_h / img_h`).
    pub scale: f32,
    /// Width of the detector input the photo is pasted into.
    pub input_width: u32,
    /// Height of the detector input the photo is pasted into.
    pub input_height: u32,
}

/// The resized size InsightFace computes for a `canvas`×`canvas` input, including its
/// truncation to whole pixels. With `fit_input`, the detector input shrinks to the resized photo
/// rounded up to a multiple of 32 (SCRFD's largest stride) instead of the whole square: the same
/// pixels and scale, with less black padding to run the network over.
pub fn letterbox_geometry(width: u32, height: u32, canvas: u32, fit_input: bool) -> LetterboxGeometry {
    let image_ratio = f64::from(height) / f64::from(width);
    let (resized_width, resized_height) = if image_ratio > 1.0 {
        (((f64::from(canvas) / image_ratio) as u32).max(1), canvas)
    } else {
        (canvas, ((f64::from(canvas) * image_ratio) as u32).max(1))
    };
    let fitted = |side: u32| if fit_input { side.div_ceil(32) * 32 } else { canvas };
    LetterboxGeometry {
        resized_width,
        resized_height,
        scale: (f64::from(resized_height) / f64::from(height)) as f32,
        input_width: fitted(resized_width),
        input_height: fitted(resized_height),
    }
}

/// A photo resized for the detector but not yet padded or normalised (that happens next to the
/// model, see [`write_normalized`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LetterboxedPhoto {
    /// Packed RGB, `resized_width × resized_height × 3` bytes.
    pub pixels: Vec<u8>,
    /// Where the pixels go on the detector input and how to map detections back.
    pub geometry: LetterboxGeometry,
}

impl LetterboxedPhoto {
    /// Whether the pixels and the geometry agree and fit the detector input; a remote caller's
    /// photo is checked before it reaches the model.
    pub fn check(&self) -> std::result::Result<(), String> {
        let g = &self.geometry;
        let expected = 3 * g.resized_width as usize * g.resized_height as usize;
        if self.pixels.len() != expected {
            return Err(format!(
                "{} bytes of pixels for a {}x{} RGB photo (expected {expected})",
                self.pixels.len(),
                g.resized_width,
                g.resized_height
            ));
        }
        if g.resized_width == 0
            || g.resized_height == 0
            || g.resized_width > g.input_width
            || g.resized_height > g.input_height
        {
            return Err(format!(
                "a {}x{} photo does not fit a {}x{} detector input",
                g.resized_width, g.resized_height, g.input_width, g.input_height
            ));
        }
        if !g.input_width.is_multiple_of(32)
            || !g.input_height.is_multiple_of(32)
            || g.input_width > MAX_INPUT_PX
            || g.input_height > MAX_INPUT_PX
        {
            return Err(format!(
                "detector input {}x{} must be multiples of 32 no larger than {MAX_INPUT_PX}",
                g.input_width, g.input_height
            ));
        }
        if !(g.scale.is_finite() && g.scale > 0.0) {
            return Err(format!("scale {} must be a positive number", g.scale));
        }
        Ok(())
    }
}

/// The largest detector input side accepted from a caller.
pub const MAX_INPUT_PX: u32 = 4096;

/// Writes resized RGB `pixels` as packed `input_height×input_width×3` bytes into `out` (one
/// batch slot), padded with black to the right and below: the input of a model that
/// normalises in its graph (`vision.model_input`).
pub fn write_padded(pixels: &[u8], geometry: LetterboxGeometry, out: &mut [u8]) {
    let (width, height) = (geometry.input_width as usize, geometry.input_height as usize);
    debug_assert_eq!(out.len(), 3 * width * height);
    let row_bytes = 3 * geometry.resized_width as usize;
    for (row_index, row) in out.chunks_exact_mut(3 * width).enumerate() {
        match pixels.get(row_index * row_bytes..(row_index + 1) * row_bytes) {
            Some(source) if row_index < geometry.resized_height as usize => {
                row[..row_bytes].copy_from_slice(source);
                row[row_bytes..].fill(0);
            }
            _ => row.fill(0),
        }
    }
    debug_assert!(out.len() / (3 * width) == height);
}

/// Writes resized RGB `pixels` as normalised `3×input_height×input_width` planes into `tensor`
/// (one batch slot), padded with black to the right and below.
pub fn write_normalized(pixels: &[u8], geometry: LetterboxGeometry, tensor: &mut [f32]) {
    let (width, height) = (geometry.input_width as usize, geometry.input_height as usize);
    debug_assert_eq!(tensor.len(), 3 * width * height);
    let (new_w, new_h) = (geometry.resized_width as usize, geometry.resized_height as usize);
    let background = (0.0 - DETECTOR_MEAN) / DETECTOR_STD;
    for (channel, plane) in tensor.chunks_exact_mut(width * height).enumerate() {
        for (row_index, row) in plane.chunks_exact_mut(width).enumerate() {
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
}

/// Letterboxes photos into detector tensors, reusing its buffers between photos.
#[derive(Default)]
pub struct Letterboxer {
    resized: Vec<u8>,
    rows: [Vec<i32>; 2],
}

impl Letterboxer {
    /// Writes `photo` as normalised `3×input_height×input_width` planes into `tensor` (one batch
    /// slot), placed as `geometry` (from [`letterbox_geometry`] for this photo) says.
    pub fn write_tensor(&mut self, photo: &RgbImage, geometry: LetterboxGeometry, tensor: &mut [f32]) {
        let pixels = self.resize(photo, geometry);
        write_normalized(pixels, geometry, tensor);
    }

    /// The photo resized as `geometry` says, as 8-bit RGB: what crosses the wire to a remote
    /// detector, a quarter of the normalised tensor's bytes and none of its padding.
    pub fn letterbox(&mut self, photo: &RgbImage, geometry: LetterboxGeometry) -> LetterboxedPhoto {
        LetterboxedPhoto {
            pixels: self.resize(photo, geometry).to_vec(),
            geometry,
        }
    }

    /// The photo resized to the geometry's size, as packed RGB bytes.
    fn resize<'a>(&'a mut self, photo: &'a RgbImage, geometry: LetterboxGeometry) -> &'a [u8] {
        let (new_w, new_h) = (geometry.resized_width as usize, geometry.resized_height as usize);
        if (geometry.resized_width, geometry.resized_height) == photo.dimensions() {
            return photo.as_raw();
        }
        let (width, height) = (photo.width() as usize, photo.height() as usize);
        let columns = linear_taps(new_w, width);
        let lines = linear_taps(new_h, height);
        let source = photo.as_raw();
        let stride = width * 3;
        self.resized.resize(new_w * new_h * 3, 0);
        for row in &mut self.rows {
            row.resize(new_w * 3, 0);
        }
        // Source rows whose horizontal pass `self.rows[0]` and `self.rows[1]` hold. Consecutive
        // output rows often blend the same source row (always when upscaling), and OpenCV
        // likewise resizes each source row once.
        let mut held: [Option<usize>; 2] = [None, None];
        for (y, line) in lines.iter().enumerate() {
            if held[1] == Some(line.first) && held[0] != Some(line.first) {
                self.rows.swap(0, 1);
                held.swap(0, 1);
            }
            for (slot, source_row) in [line.first, line.second].into_iter().enumerate() {
                if held[slot] == Some(source_row) {
                    continue;
                }
                let pixels = &source[source_row * stride..(source_row + 1) * stride];
                let buffer = &mut self.rows[slot];
                for (x, column) in columns.iter().enumerate() {
                    for channel in 0..3 {
                        buffer[x * 3 + channel] = i32::from(pixels[column.first * 3 + channel]) * column.weights[0]
                            + i32::from(pixels[column.second * 3 + channel]) * column.weights[1];
                    }
                }
                held[slot] = Some(source_row);
            }
            // Vertical pass with the rounding of OpenCV's SIMD path (VResizeLinearVec_32s8u).
            let [b0, b1] = line.weights;
            let out = &mut self.resized[y * new_w * 3..(y + 1) * new_w * 3];
            for ((value, &s0), &s1) in out.iter_mut().zip(&self.rows[0]).zip(&self.rows[1]) {
                let blended = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
                *value = blended.clamp(0, 255) as u8;
            }
        }
        &self.resized
    }
}

/// The two source samples an output sample blends and their weights in 1/2048ths.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LinearTap {
    first: usize,
    second: usize,
    weights: [i32; 2],
}

/// OpenCV's `INTER_LINEAR` taps for resizing `input` samples to `output`: half-pixel centres,
/// the coordinate rounded to `f32`, clamped at both edges, weights rounded to 11 bits.
fn linear_taps(output: usize, input: usize) -> Vec<LinearTap> {
    let scale = 1.0 / (output as f64 / input as f64);
    (0..output)
        .map(|index| {
            let position = ((index as f64 + 0.5) * scale - 0.5) as f32;
            let mut first = position.floor();
            let mut fraction = position - first;
            if first < 0.0 {
                first = 0.0;
                fraction = 0.0;
            }
            let mut first = first as usize;
            if first >= input - 1 {
                first = input - 1;
                fraction = 0.0;
            }
            let weight = |w: f32| (w * 2048.0).round_ties_even() as i32;
            LinearTap {
                first,
                second: (first + 1).min(input - 1),
                weights: [weight(1.0 - fraction), weight(fraction)],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    #[test]
    fn geometry_matches_insightface_truncation() {
        // players.jpg: 1237x800 → 640 wide, int(640 * 800/1237) = 413 high.
        let g = letterbox_geometry(1237, 800, 640, false);
        assert_eq!((g.resized_width, g.resized_height), (640, 413));
        assert_eq!((g.input_width, g.input_height), (640, 640));
        assert!((g.scale - 413.0 / 800.0).abs() < 1e-7);
        let fitted = letterbox_geometry(1237, 800, 640, true);
        assert_eq!(
            (fitted.input_width, fitted.input_height),
            (640, 416),
            "413 rounded up to 32"
        );
        assert_eq!(fitted.scale, g.scale, "fitting the input never changes the scale");
        // gdp.jpg: 500x665 (portrait) → int(640 / (665/500)) = 481 wide.
        let g = letterbox_geometry(500, 665, 640, false);
        assert_eq!((g.resized_width, g.resized_height), (481, 640));
        // Extremely thin images still get a 1-pixel band instead of a zero-sized resize.
        let g = letterbox_geometry(10_000, 2, 640, true);
        assert_eq!((g.resized_width, g.resized_height), (640, 1));
        assert_eq!(g.input_height, 32);
    }

    #[test]
    fn writes_normalised_planes_with_black_padding() {
        let photo = RgbImage::from_pixel(64, 32, Rgb([255, 0, 128]));
        let mut tensor = vec![f32::NAN; 3 * 64 * 64];
        let g = letterbox_geometry(64, 32, 64, false);
        Letterboxer::default().write_tensor(&photo, g, &mut tensor);
        assert_eq!((g.resized_width, g.resized_height), (64, 32));
        let at = |c: usize, y: usize, x: usize| tensor[c * 64 * 64 + y * 64 + x];
        assert_eq!(at(0, 0, 0), (255.0 - 127.5) / 128.0);
        assert_eq!(at(1, 10, 10), -127.5 / 128.0);
        assert_eq!(at(2, 31, 63), 0.5 / 128.0);
        assert_eq!(at(0, 32, 0), -127.5 / 128.0, "rows below the photo are black");
        assert!(tensor.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn taps_clamp_at_both_edges() {
        let taps = linear_taps(3, 6);
        // Output 0 samples source 0.5: half of pixels 0 and 1.
        assert_eq!(
            taps[0],
            LinearTap {
                first: 0,
                second: 1,
                weights: [1024, 1024]
            }
        );
        // Upscaling: the first output lies left of source pixel 0 and is clamped to it.
        let taps = linear_taps(4, 2);
        assert_eq!(
            taps[0],
            LinearTap {
                first: 0,
                second: 1,
                weights: [2048, 0]
            }
        );
        assert_eq!(
            taps[3],
            LinearTap {
                first: 1,
                second: 1,
                weights: [2048, 0]
            }
        );
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
        let mut tensor = vec![0.0; 3 * 2 * 2];
        Letterboxer::default().write_tensor(&photo, letterbox_geometry(4, 4, 2, false), &mut tensor);
        let value = tensor[0] * 128.0 + 127.5;
        assert!((value - 100.0).abs() <= 1.0, "got {value}");
    }
}
