//! Settings of the web console (`[web]` in the config file).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the console listens and how it renders photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Address to serve the console and its JSON API on (HTTP, or HTTPS with `server.tls`);
    /// unset keeps it off. `--http-listen` sets it.
    pub listen_addr: Option<SocketAddr>,
    /// The side of a face thumbnail, in pixels (square, JPEG).
    pub thumbnail_size_px: u32,
    /// Room around the face box on each side of a thumbnail, as a share of the box's longer
    /// side (0.1 = 10 %, as Immich crops).
    pub thumbnail_margin_ratio: f32,
    /// JPEG quality of thumbnails and photos, 1 to 100.
    pub jpeg_quality: u8,
    /// The longer side of a photo as the console shows it, in pixels.
    pub photo_max_side_px: u32,
    /// The most pixels one photo may be decoded into for a thumbnail or a view: JPEGs are
    /// scaled while decoding to stay within it (3 bytes a pixel).
    pub max_decoded_pixels: u64,
    /// Thumbnails and photo views rendered at once; the others wait. With
    /// `max_decoded_pixels` this bounds the console's photo memory.
    pub max_concurrent_renders: usize,
    /// Where rendered thumbnails are kept; unset means `thumbnails/` in the data directory.
    pub thumbnail_cache_dir: Option<PathBuf>,
    /// The most bytes the thumbnail cache keeps; the least recently written go first.
    pub thumbnail_cache_max_bytes: u64,
    /// `facedex index` with the console on renders each indexed photo's thumbnails as it goes
    /// (one more read and decode of each photo), so pages show them at once; otherwise they
    /// are made on first request.
    pub thumbnails_during_indexing: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen_addr: None,
            thumbnail_size_px: 250,
            thumbnail_margin_ratio: 0.1,
            jpeg_quality: 85,
            photo_max_side_px: 1600,
            max_decoded_pixels: 16_000_000,
            max_concurrent_renders: 2,
            thumbnail_cache_dir: None,
            thumbnail_cache_max_bytes: 256 << 20,
            thumbnails_during_indexing: false,
        }
    }
}

impl WebConfig {
    /// Checks the settings that have a range.
    pub fn validate(&self) -> Result<(), String> {
        let check = |ok: bool, setting: &str, range: &str, value: String| {
            if ok {
                Ok(())
            } else {
                Err(format!("web.{setting} must be {range}, got {value}"))
            }
        };
        check(
            (16..=1024).contains(&self.thumbnail_size_px),
            "thumbnail_size_px",
            "16 to 1024",
            self.thumbnail_size_px.to_string(),
        )?;
        check(
            (0.0..=1.0).contains(&self.thumbnail_margin_ratio),
            "thumbnail_margin_ratio",
            "between 0 and 1",
            self.thumbnail_margin_ratio.to_string(),
        )?;
        check(
            (1..=100).contains(&self.jpeg_quality),
            "jpeg_quality",
            "1 to 100",
            self.jpeg_quality.to_string(),
        )?;
        check(
            (64..=8192).contains(&self.photo_max_side_px),
            "photo_max_side_px",
            "64 to 8192",
            self.photo_max_side_px.to_string(),
        )?;
        check(
            (1_000_000..=400_000_000).contains(&self.max_decoded_pixels),
            "max_decoded_pixels",
            "1,000,000 to 400,000,000",
            self.max_decoded_pixels.to_string(),
        )?;
        check(
            (1..=64).contains(&self.max_concurrent_renders),
            "max_concurrent_renders",
            "1 to 64",
            self.max_concurrent_renders.to_string(),
        )?;
        check(
            self.thumbnail_cache_max_bytes >= 1 << 20,
            "thumbnail_cache_max_bytes",
            "at least 1 MiB (1048576)",
            self.thumbnail_cache_max_bytes.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_bound_names_its_setting() {
        assert_eq!(WebConfig::default().validate(), Ok(()));
        let refused = WebConfig {
            thumbnail_size_px: 4096,
            ..WebConfig::default()
        }
        .validate()
        .expect_err("too large");
        assert!(refused.contains("web.thumbnail_size_px"), "{refused}");
        let refused = WebConfig {
            thumbnail_margin_ratio: f32::NAN,
            ..WebConfig::default()
        }
        .validate()
        .expect_err("not a number");
        assert!(refused.contains("web.thumbnail_margin_ratio"), "{refused}");
    }
}
