//! The chips an int8 model is calibrated on: the faces the detector finds in the configured
//! calibration photos, cut as the model's crop says, the same chips it will see when indexing.

use std::path::{Path, PathBuf};

use ort::environment::Environment;

use crate::attributes::chip::cut_chip;
use crate::attributes::config::ChipCrop;
use crate::config::VisionConfig;
use crate::decode::decode_photo;
use crate::detector::Detector;
use crate::error::{Result, VisionError};
use crate::letterbox::{Letterboxer, letterbox_geometry};

/// Most calibration photos read: bounds the load time.
pub(crate) const MAX_CALIBRATION_PHOTOS: usize = 64;

/// Most chips kept: bounds the memory and the calibration run.
pub(crate) const MAX_CALIBRATION_CHIPS: usize = 512;

/// Fewest faces a calibration worth the name measures ranges on.
const MIN_CALIBRATION_CHIPS: usize = 8;

/// The calibration faces' chips for every crop the int8 models of a configuration cut, made on
/// first use in one pass over the photos (each photo decoded and searched for faces once, however
/// many models are calibrated on it), and not at all when every model's graph is cached.
pub(crate) struct CalibrationChips<'a> {
    vision: &'a VisionConfig,
    /// The distinct crops of the configuration's int8 models.
    crops: Vec<&'a ChipCrop>,
    /// Per crop, its chips back to back; `None` until first asked for.
    chips: Option<Vec<Vec<u8>>>,
}

impl<'a> CalibrationChips<'a> {
    /// Nothing read yet: the crops `vision`'s int8 models need.
    pub(crate) fn new(vision: &'a VisionConfig) -> Self {
        let mut crops: Vec<&ChipCrop> = Vec::new();
        for model in vision
            .attributes
            .iter()
            .filter(|model| model.runs_int8(&vision.execution_provider))
        {
            if !crops.contains(&&model.crop) {
                crops.push(&model.crop);
            }
        }
        Self {
            vision,
            crops,
            chips: None,
        }
    }

    /// `crop`'s chips of the faces in `vision.calibration_photos_dir`, back to back.
    pub(crate) fn for_crop(&mut self, environment: &Environment, crop: &ChipCrop) -> Result<&[u8]> {
        let index = self
            .crops
            .iter()
            .position(|known| *known == crop)
            .ok_or_else(|| VisionError::InvalidConfig {
                setting: "attributes",
                reason: "calibration asked for a crop no int8 model cuts".to_owned(),
            })?;
        if self.chips.is_none() {
            self.chips = Some(cut_all(environment, self.vision, &self.crops)?);
        }
        Ok(self.chips.as_ref().map_or(&[][..], |chips| chips[index].as_slice()))
    }
}

/// Every crop's chips of the faces in `vision.calibration_photos_dir`, in `crops`' order.
fn cut_all(environment: &Environment, vision: &VisionConfig, crops: &[&ChipCrop]) -> Result<Vec<Vec<u8>>> {
    let dir = &vision.calibration_photos_dir;
    let unusable = |reason: String| VisionError::InvalidConfig {
        setting: "calibration_photos_dir",
        reason: format!(
            "{}: {reason}; int8 per-face models are calibrated on its faces (run scripts/setup for the sample photos, or set precision = \"f32\")",
            dir.display()
        ),
    };
    let photos = photo_files(dir).map_err(|error| unusable(format!("cannot list it: {error}")))?;
    let mut detector = Detector::load(environment, vision)?;
    let mut letterboxer = Letterboxer::default();
    let mut chips: Vec<Vec<u8>> = vec![Vec::new(); crops.len()];
    let mut chip = Vec::new();
    // The same faces for every crop: a face counts once it is cut for the first crop.
    let mut faces_cut = 0;
    for path in photos {
        if faces_cut >= MAX_CALIBRATION_CHIPS {
            break;
        }
        let Ok(bytes) = std::fs::read(&path) else { continue };
        // A photo that does not decode is not a reason to refuse the model: the others calibrate it.
        let Ok(photo) = decode_photo(&path.display().to_string(), &bytes, vision.max_image_pixels) else {
            continue;
        };
        let geometry = letterbox_geometry(
            photo.width(),
            photo.height(),
            vision.detection.input_size_px,
            vision.detection.fit_input_to_photo,
        );
        let letterboxed = letterboxer.letterbox(&photo, geometry);
        let faces = detector.detect_letterboxed(&[&letterboxed])?.into_iter().flatten();
        for face in faces.take(MAX_CALIBRATION_CHIPS - faces_cut) {
            faces_cut += 1;
            for (crop, chips) in crops.iter().zip(&mut chips) {
                if cut_chip(&photo, &face, crop, &mut chip) {
                    chips.extend_from_slice(&chip);
                }
            }
        }
    }
    for (crop, chips) in crops.iter().zip(&chips) {
        let found = chips.len() / crop.chip_bytes();
        if found < MIN_CALIBRATION_CHIPS {
            return Err(unusable(format!(
                "{found} faces found in its photos, at least {MIN_CALIBRATION_CHIPS} are needed"
            )));
        }
    }
    Ok(chips)
}

/// The folder's own files (not its subfolders'), in name order, at most
/// [`MAX_CALIBRATION_PHOTOS`].
fn photo_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files.truncate(MAX_CALIBRATION_PHOTOS);
    Ok(files)
}
