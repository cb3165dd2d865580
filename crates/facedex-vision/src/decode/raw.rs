//! Camera RAW files built on TIFF (DNG, CR2, NEF, ARW, and the like): facedex reads the largest
//! JPEG preview the camera or converter embedded, as Immich and PhotoPrism fall back on, not the
//! sensor data. A TIFF counts as a RAW when it says so: a DNGVersion tag, Canon's `CR` marker,
//! or an image directory holding colour-filter-array or linear raw data. The walk is bounded
//! (directories, entries, depth), every offset is checked against the file, and lossless JPEG
//! (the sensor data of CR2 and many DNGs) is never taken for a preview. IFD0's Orientation turns
//! the preview upright unless the preview carries an orientation of its own.

use image::metadata::Orientation;

/// A preview found in a RAW file.
pub(super) struct RawPreview<'a> {
    /// The JPEG's bytes.
    pub(super) jpeg: &'a [u8],
    /// IFD0's Orientation, for a preview without its own.
    pub(super) orientation: Orientation,
}

/// What a TIFF-based file is, for the decoder.
pub(super) enum RawKind<'a> {
    /// Not a RAW (an ordinary TIFF, or not a TIFF at all).
    NotRaw,
    /// A RAW with this preview.
    Preview(RawPreview<'a>),
    /// A RAW without a JPEG preview facedex can use.
    NoPreview,
    /// A RAW whose JPEG preview or one of its directories lies past the end of the file: cut
    /// short.
    Truncated,
}

const MAX_DIRECTORIES: usize = 64;
const MAX_ENTRIES: u16 = 1024;
const MAX_DEPTH: usize = 3;

const TAG_COMPRESSION: u16 = 0x0103;
const TAG_PHOTOMETRIC: u16 = 0x0106;
const TAG_STRIP_OFFSETS: u16 = 0x0111;
const TAG_ORIENTATION: u16 = 0x0112;
const TAG_STRIP_BYTE_COUNTS: u16 = 0x0117;
const TAG_SUB_IFDS: u16 = 0x014A;
const TAG_JPEG_OFFSET: u16 = 0x0201;
const TAG_JPEG_LENGTH: u16 = 0x0202;
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_DNG_VERSION: u16 = 0xC612;
/// Colour filter array and linear raw: sensor data.
const RAW_PHOTOMETRICS: [u32; 2] = [32803, 34892];

/// Classifies `bytes` and finds the largest usable JPEG preview of a RAW.
pub(super) fn raw_kind(bytes: &[u8]) -> RawKind<'_> {
    let Some(tiff) = Tiff::new(bytes) else {
        return RawKind::NotRaw;
    };
    let canon = bytes.get(8..10) == Some(b"CR");
    let mut walk = Walk {
        tiff: &tiff,
        visited: Vec::new(),
        raw: canon,
        best: None,
        cut_short: false,
        orientation: 1,
    };
    walk.directory(tiff.first_ifd, 0, true);
    if !walk.raw {
        return RawKind::NotRaw;
    }
    match walk.best {
        Some((_, jpeg)) => RawKind::Preview(RawPreview {
            jpeg,
            orientation: Orientation::from_exif(u8::try_from(walk.orientation).unwrap_or(1))
                .unwrap_or(Orientation::NoTransforms),
        }),
        None if walk.cut_short => RawKind::Truncated,
        None => RawKind::NoPreview,
    }
}

/// A TIFF's bytes and byte order.
struct Tiff<'a> {
    bytes: &'a [u8],
    little_endian: bool,
    first_ifd: usize,
}

impl<'a> Tiff<'a> {
    fn new(bytes: &'a [u8]) -> Option<Self> {
        let little_endian = match bytes.get(..4)? {
            [b'I', b'I', 42, 0] => true,
            [b'M', b'M', 0, 42] => false,
            _ => return None,
        };
        let mut tiff = Self {
            bytes,
            little_endian,
            first_ifd: 0,
        };
        tiff.first_ifd = tiff.u32_at(4)? as usize;
        Some(tiff)
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        let raw: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(match self.little_endian {
            true => u16::from_le_bytes(raw),
            false => u16::from_be_bytes(raw),
        })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let raw: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(match self.little_endian {
            true => u32::from_le_bytes(raw),
            false => u32::from_be_bytes(raw),
        })
    }

    /// The values of the entry at `entry` (SHORT or LONG; other types are not needed here),
    /// at most `limit` of them.
    fn values(&self, entry: usize, limit: usize) -> Vec<u32> {
        let (Some(kind), Some(count)) = (self.u16_at(entry + 2), self.u32_at(entry + 4)) else {
            return Vec::new();
        };
        let size = match kind {
            3 => 2,
            4 | 13 => 4,
            _ => return Vec::new(),
        };
        let count = (count as usize).min(limit);
        let inline = count * size <= 4;
        let start = match inline {
            true => entry + 8,
            false => match self.u32_at(entry + 8) {
                Some(offset) => offset as usize,
                None => return Vec::new(),
            },
        };
        (0..count)
            .map_while(|index| match size {
                2 => self.u16_at(start + index * 2).map(u32::from),
                _ => self.u32_at(start + index * 4),
            })
            .collect()
    }
}

struct Walk<'t, 'a> {
    tiff: &'t Tiff<'a>,
    visited: Vec<usize>,
    raw: bool,
    /// The largest preview so far: its pixel count and bytes.
    best: Option<(u64, &'a [u8])>,
    /// Whether a preview's bytes or a directory lie past the end of the file.
    cut_short: bool,
    /// IFD0's Orientation.
    orientation: u32,
}

impl<'a> Walk<'_, 'a> {
    fn directory(&mut self, offset: usize, depth: usize, first: bool) {
        if offset == 0 || depth > MAX_DEPTH || self.visited.len() >= MAX_DIRECTORIES || self.visited.contains(&offset) {
            return;
        }
        if offset >= self.tiff.bytes.len() {
            // A directory past the end: the file was cut short.
            self.cut_short = true;
            return;
        }
        self.visited.push(offset);
        let Some(entries) = self.tiff.u16_at(offset) else {
            return;
        };
        let entries = entries.min(MAX_ENTRIES) as usize;
        let (mut compression, mut photometric) = (None, None);
        let (mut strips, mut strip_lengths, mut jpeg_at, mut jpeg_length) = (Vec::new(), Vec::new(), None, None);
        let mut children = Vec::new();
        for index in 0..entries {
            let entry = offset + 2 + index * 12;
            let Some(tag) = self.tiff.u16_at(entry) else { return };
            let first_value = || self.tiff.values(entry, 1).first().copied();
            match tag {
                TAG_COMPRESSION => compression = first_value(),
                TAG_PHOTOMETRIC => photometric = first_value(),
                TAG_STRIP_OFFSETS => strips = self.tiff.values(entry, 2),
                TAG_STRIP_BYTE_COUNTS => strip_lengths = self.tiff.values(entry, 2),
                TAG_JPEG_OFFSET => jpeg_at = first_value(),
                TAG_JPEG_LENGTH => jpeg_length = first_value(),
                TAG_ORIENTATION if first => self.orientation = first_value().unwrap_or(1),
                TAG_DNG_VERSION if first => self.raw = true,
                TAG_SUB_IFDS => children.extend(self.tiff.values(entry, 16)),
                TAG_EXIF_IFD => children.extend(first_value()),
                _ => {}
            }
        }
        if photometric.is_some_and(|value| RAW_PHOTOMETRICS.contains(&value)) {
            self.raw = true;
        } else {
            if let (Some(at), Some(length)) = (jpeg_at, jpeg_length) {
                self.consider(at, length);
            }
            // One strip of old- or new-style JPEG (compression 6 or 7): a preview stored as
            // the directory's image (CR2's IFD0, DNG's preview directories).
            if matches!(compression, Some(6 | 7)) && strips.len() == 1 && strip_lengths.len() == 1 {
                self.consider(strips[0], strip_lengths[0]);
            }
        }
        for child in children {
            self.directory(child as usize, depth + 1, false);
        }
        let next_at = offset + 2 + entries * 12;
        if let Some(next) = self.tiff.u32_at(next_at) {
            self.directory(next as usize, depth, false);
        }
    }

    /// Takes the JPEG at `at`..`at + length` when it is a lossy one larger than the best so far.
    fn consider(&mut self, at: u32, length: u32) {
        let (at, length) = (at as usize, length as usize);
        let Some(jpeg) = at.checked_add(length).and_then(|end| self.tiff.bytes.get(at..end)) else {
            self.cut_short |= at < self.tiff.bytes.len() && lossy_jpeg_pixels(&self.tiff.bytes[at..]).is_some();
            return;
        };
        let Some(pixels) = lossy_jpeg_pixels(jpeg) else { return };
        if self.best.is_none_or(|(best, _)| pixels > best) {
            self.best = Some((pixels, jpeg));
        }
    }
}

/// The pixel count a baseline, extended or progressive JPEG declares in its frame header;
/// `None` for anything else (not a JPEG, lossless or hierarchical JPEG, no frame header).
fn lossy_jpeg_pixels(jpeg: &[u8]) -> Option<u64> {
    if !jpeg.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        match marker {
            0xC0..=0xC2 => {
                let header = jpeg.get(at + 5..at + 9)?;
                let height = u64::from(u16::from_be_bytes([header[0], header[1]]));
                let width = u64::from(u16::from_be_bytes([header[2], header[3]]));
                return (width * height > 0).then_some(width * height);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDA | 0xD9 => return None,
            _ => at += 2 + length,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little-endian TIFF written blob by blob and directory by directory.
    struct Builder {
        bytes: Vec<u8>,
    }

    /// A tiny but well-formed baseline JPEG header claiming `width` × `height`.
    fn jpeg(width: u16, height: u16, marker: u8) -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0xFF, marker, 0, 11, 8];
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&[1, 1, 0x11, 0]);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        bytes
    }

    impl Builder {
        fn new(canon: bool) -> Self {
            let mut bytes = b"II\x2a\x00\x10\x00\x00\x00".to_vec();
            bytes.extend_from_slice(if canon { b"CR\x02\x00\x00\x00\x00\x00" } else { &[0; 8] });
            Self { bytes }
        }

        fn blob(&mut self, data: &[u8]) -> u32 {
            let at = self.bytes.len() as u32;
            self.bytes.extend_from_slice(data);
            at
        }

        /// Writes a directory of (tag, type, value) entries at the end; returns its offset.
        fn directory(&mut self, entries: &[(u16, u16, u32)]) -> u32 {
            let at = self.bytes.len() as u32;
            self.bytes.extend_from_slice(&(entries.len() as u16).to_le_bytes());
            for (tag, kind, value) in entries {
                self.bytes.extend_from_slice(&tag.to_le_bytes());
                self.bytes.extend_from_slice(&kind.to_le_bytes());
                self.bytes.extend_from_slice(&1u32.to_le_bytes());
                match kind {
                    3 => self
                        .bytes
                        .extend_from_slice(&[(*value as u16).to_le_bytes(), [0, 0]].concat()),
                    _ => self.bytes.extend_from_slice(&value.to_le_bytes()),
                }
            }
            self.bytes.extend_from_slice(&0u32.to_le_bytes());
            at
        }

        /// Points the header at `ifd0`.
        fn finish(mut self, ifd0: u32) -> Vec<u8> {
            self.bytes[4..8].copy_from_slice(&ifd0.to_le_bytes());
            self.bytes
        }
    }

    fn preview_pixels(bytes: &[u8]) -> Option<u64> {
        match raw_kind(bytes) {
            RawKind::Preview(preview) => lossy_jpeg_pixels(preview.jpeg),
            RawKind::NoPreview => Some(0),
            RawKind::Truncated => Some(1),
            RawKind::NotRaw => None,
        }
    }

    #[test]
    fn a_nef_like_file_gives_its_largest_jpeg_not_its_thumbnail_or_sensor_data() {
        let mut file = Builder::new(false);
        let small = jpeg(160, 120, 0xC0);
        let large = jpeg(6000, 4000, 0xC0);
        let lossless = jpeg(6048, 4032, 0xC3);
        let (small_at, large_at, lossless_at) = (file.blob(&small), file.blob(&large), file.blob(&lossless));
        let preview = file.directory(&[(TAG_JPEG_OFFSET, 4, large_at), (TAG_JPEG_LENGTH, 4, large.len() as u32)]);
        let sensor = file.directory(&[
            (TAG_COMPRESSION, 3, 7),
            (TAG_PHOTOMETRIC, 3, 32803),
            (TAG_STRIP_OFFSETS, 4, lossless_at),
            (TAG_STRIP_BYTE_COUNTS, 4, lossless.len() as u32),
        ]);
        let ifd0 = file.directory(&[
            (TAG_ORIENTATION, 3, 6),
            (TAG_JPEG_OFFSET, 4, small_at),
            (TAG_JPEG_LENGTH, 4, small.len() as u32),
            (TAG_SUB_IFDS, 4, preview),
            // The sensor data's directory, reached through the EXIF pointer here: every
            // directory is walked alike.
            (TAG_EXIF_IFD, 4, sensor),
        ]);
        let bytes = file.finish(ifd0);
        assert_eq!(preview_pixels(&bytes), Some(6000 * 4000));
        let RawKind::Preview(found) = raw_kind(&bytes) else {
            panic!("a preview")
        };
        assert_eq!(found.orientation, Orientation::Rotate90, "IFD0's Orientation 6");
    }

    #[test]
    fn a_cr2_like_file_gives_its_strip_preview_and_skips_the_lossless_raw() {
        let mut file = Builder::new(true);
        let full = jpeg(5472, 3648, 0xC0);
        let raw = jpeg(5568, 3708, 0xC3);
        let (full_at, raw_at) = (file.blob(&full), file.blob(&raw));
        let ifd3 = file.directory(&[
            (TAG_COMPRESSION, 3, 6),
            (TAG_STRIP_OFFSETS, 4, raw_at),
            (TAG_STRIP_BYTE_COUNTS, 4, raw.len() as u32),
        ]);
        let ifd0 = file.directory(&[
            (TAG_COMPRESSION, 3, 6),
            (TAG_STRIP_OFFSETS, 4, full_at),
            (TAG_STRIP_BYTE_COUNTS, 4, full.len() as u32),
        ]);
        // IFD0's next directory is IFD3 here.
        let mut bytes = file.finish(ifd0);
        let next_at = ifd0 as usize + 2 + 3 * 12;
        bytes[next_at..next_at + 4].copy_from_slice(&ifd3.to_le_bytes());
        assert_eq!(preview_pixels(&bytes), Some(5472 * 3648));
    }

    #[test]
    fn an_ordinary_tiff_is_not_a_raw_and_a_raw_without_a_preview_says_so() {
        let mut file = Builder::new(false);
        let ifd0 = file.directory(&[(TAG_COMPRESSION, 3, 1), (TAG_PHOTOMETRIC, 3, 2)]);
        assert_eq!(preview_pixels(&file.finish(ifd0)), None);
        let mut file = Builder::new(false);
        let ifd0 = file.directory(&[(TAG_DNG_VERSION, 4, 0x0104_0000)]);
        assert_eq!(preview_pixels(&file.finish(ifd0)), Some(0));
    }

    #[test]
    fn offsets_past_the_end_and_directory_loops_are_harmless() {
        let mut file = Builder::new(true);
        let ifd0 = file.directory(&[
            (TAG_JPEG_OFFSET, 4, 1 << 30),
            (TAG_JPEG_LENGTH, 4, u32::MAX),
            (TAG_SUB_IFDS, 4, 0x10), // itself
        ]);
        let mut bytes = file.finish(ifd0);
        let next_at = ifd0 as usize + 2 + 3 * 12;
        bytes[next_at..next_at + 4].copy_from_slice(&ifd0.to_le_bytes());
        assert_eq!(preview_pixels(&bytes), Some(0));
        for cut in 0..bytes.len() {
            let _ = raw_kind(&bytes[..cut]);
        }
    }

    #[test]
    fn a_raw_cut_inside_its_preview_is_truncated() {
        let mut file = Builder::new(false);
        let mut large = jpeg(6000, 4000, 0xC0);
        large.extend_from_slice(&[0; 4096]); // the scan data a real preview has
        let large_at = file.blob(&large);
        let ifd0 = file.directory(&[
            (TAG_DNG_VERSION, 4, 0x0104_0000),
            (TAG_JPEG_OFFSET, 4, large_at),
            (TAG_JPEG_LENGTH, 4, large.len() as u32),
        ]);
        let mut bytes = file.finish(ifd0);
        // Move the directory before the preview, as cameras do, then cut inside the preview.
        let directory = bytes.split_off(ifd0 as usize);
        let mut moved = bytes[..8].to_vec();
        moved[4..8].copy_from_slice(&8u32.to_le_bytes());
        let shift = directory.len() as u32;
        let mut directory = directory;
        let offset_at = 2 + 12 + 8;
        directory[offset_at..offset_at + 4].copy_from_slice(&(large_at + shift).to_le_bytes());
        moved.extend_from_slice(&directory);
        moved.extend_from_slice(&bytes[8..]);
        assert_eq!(preview_pixels(&moved), Some(6000 * 4000), "whole");
        assert_eq!(
            preview_pixels(&moved[..moved.len() - 100]),
            Some(1),
            "cut inside the preview"
        );
    }
}
