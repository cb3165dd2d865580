//! [`PhotoFailureKind`]: why a photo could not be indexed, as one closed list. `facedex detect`
//! prints it, dead letters carry it, the `error_kind` metric label and the summary lines use
//! it, each through [`PhotoFailureKind::label`], so a kind has one name everywhere.

use std::fmt;

use facedex_vision::VisionError;

/// Why a photo could not be indexed. The photo is at fault, so retrying cannot help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhotoFailureKind {
    /// Not in the archive (deleted or renamed after it was listed).
    NotFound,
    /// Over a size limit: bytes (`archive.max_image_bytes`) or pixels (`vision.max_image_pixels`).
    TooLarge,
    /// The reference does not name a photo inside its archive.
    InvalidReference,
    /// The reference names an archive root `archive.allowed_roots` does not allow.
    RootNotAllowed,
    /// The object store kept failing after every retry.
    FetchFailed,
    /// The bytes could not be read (a local file that is missing or unreadable).
    Unreadable,
    /// Zero bytes.
    Empty,
    /// Not an image in a format facedex decodes.
    NotAnImage,
    /// A recognised format with broken data.
    Corrupt,
    /// The queue's record itself could not be decoded.
    MalformedRecord,
}

impl PhotoFailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::NotFound,
        Self::TooLarge,
        Self::InvalidReference,
        Self::RootNotAllowed,
        Self::FetchFailed,
        Self::Unreadable,
        Self::Empty,
        Self::NotAnImage,
        Self::Corrupt,
        Self::MalformedRecord,
    ];

    /// The stable snake_case name: on the wire, in metric labels and in printed summaries.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::InvalidReference => "invalid_reference",
            Self::RootNotAllowed => "root_not_allowed",
            Self::FetchFailed => "fetch_failed",
            Self::Unreadable => "unreadable",
            Self::Empty => "empty",
            Self::NotAnImage => "not_an_image",
            Self::Corrupt => "corrupt",
            Self::MalformedRecord => "malformed_record",
        }
    }

    /// Whether the photo's bytes are at fault, so the same version will fail again: such a
    /// photo is cataloged as failed and an unchanged re-run skips it. The others depend on
    /// the moment or the configuration (the object was missing, the store or the disk failed,
    /// the root was not allowed) and are retried by the next run; a malformed queue record
    /// names no photo to catalog.
    pub fn is_permanent(self) -> bool {
        match self {
            Self::TooLarge | Self::InvalidReference | Self::Empty | Self::NotAnImage | Self::Corrupt => true,
            Self::NotFound | Self::RootNotAllowed | Self::FetchFailed | Self::Unreadable | Self::MalformedRecord => {
                false
            }
        }
    }

    /// The kind named `label`, `None` for a name this version does not know.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.label() == label)
    }

    /// The kind of a vision failure that condemns the photo, `None` when the machine or its
    /// configuration failed instead (models missing, inference failed).
    pub fn of_vision(error: &VisionError) -> Option<Self> {
        match error {
            VisionError::Unreadable { .. } => Some(Self::Unreadable),
            VisionError::EmptyInput { .. } => Some(Self::Empty),
            VisionError::UnsupportedFormat { .. } => Some(Self::NotAnImage),
            VisionError::TooManyPixels { .. } => Some(Self::TooLarge),
            VisionError::CorruptImage { .. } => Some(Self::Corrupt),
            VisionError::MissingFile { .. }
            | VisionError::RuntimeUnavailable { .. }
            | VisionError::ExecutionProviderUnavailable { .. }
            | VisionError::IncompatibleModel { .. }
            | VisionError::Inference { .. }
            | VisionError::InvalidConfig { .. } => None,
        }
    }
}

impl fmt::Display for PhotoFailureKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_names_its_kind_and_no_other() {
        for kind in PhotoFailureKind::ALL {
            assert_eq!(PhotoFailureKind::from_label(kind.label()), Some(kind));
        }
        assert_eq!(PhotoFailureKind::from_label("unsupported_format"), None);
    }

    #[test]
    fn a_vision_failure_keeps_the_name_the_vision_core_gives_it() {
        let error = VisionError::UnsupportedFormat {
            input: "notes.jpg".into(),
            detail: String::new(),
        };
        let kind = PhotoFailureKind::of_vision(&error).expect("a bad photo");
        assert_eq!(kind.label(), error.kind());
        let missing = VisionError::InvalidConfig {
            setting: "x",
            reason: "y".into(),
        };
        assert_eq!(PhotoFailureKind::of_vision(&missing), None);
    }
}
