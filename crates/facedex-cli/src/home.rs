//! facedex's home: the folder holding `assets/` (ONNX Runtime and the models, put there by
//! `scripts/setup`) and the default data directory `data/`, so that `facedex` runs from any
//! working directory.
//!
//! Looked for in order: `FACEDEX_HOME` (taken as given when set), then the XDG data directory
//! (`$XDG_DATA_HOME/facedex`, else `~/.local/share/facedex`), then `./.facedex`: the first of
//! the last two holding `assets/` wins, and `./.facedex` when neither does.

use std::fmt;
use std::path::{Path, PathBuf};

/// The variable naming facedex's home explicitly.
pub const HOME_ENV: &str = "FACEDEX_HOME";

/// The assets folder under a home.
const ASSETS: &str = "assets";

/// The home chosen, and every place considered on the way (for the error when assets are
/// missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    /// The chosen home.
    pub dir: PathBuf,
    /// The candidates, in the order they were considered.
    candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    dir: PathBuf,
    source: &'static str,
}

impl Home {
    /// Looks for the home in this process's environment and working directory.
    pub fn locate() -> Self {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        Self::locate_with(var(HOME_ENV), xdg_data_home(var("XDG_DATA_HOME"), var("HOME")))
    }

    /// [`Home::locate`] with the environment given: `explicit` is `FACEDEX_HOME`, `xdg` the
    /// XDG data directory (both `None` when unset).
    fn locate_with(explicit: Option<PathBuf>, xdg: Option<PathBuf>) -> Self {
        if let Some(dir) = explicit {
            let candidates = vec![Candidate {
                dir: dir.clone(),
                source: HOME_ENV,
            }];
            return Self { dir, candidates };
        }
        let mut candidates: Vec<Candidate> = xdg
            .map(|xdg| Candidate {
                dir: xdg.join("facedex"),
                source: "the XDG data directory",
            })
            .into_iter()
            .collect();
        candidates.push(Candidate {
            dir: PathBuf::from(".facedex"),
            source: "the working directory",
        });
        let dir = candidates
            .iter()
            .find(|candidate| candidate.dir.join(ASSETS).is_dir())
            .or(candidates.last())
            .map(|candidate| candidate.dir.clone())
            .unwrap_or_default();
        Self { dir, candidates }
    }

    /// Where `scripts/setup` puts the runtime and models under this home.
    pub fn assets_dir(&self) -> PathBuf {
        self.dir.join(ASSETS)
    }

    /// The data directory used unless one is configured.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Whether `path` lies under this home's assets (so a missing file there is a missing
    /// set-up, not a misconfigured path).
    pub fn holds_asset(&self, path: &Path) -> bool {
        path.starts_with(self.assets_dir())
    }

    /// Every place looked in, for an error message.
    pub fn searched(&self) -> Searched<'_> {
        Searched(self)
    }
}

/// Displays the places a [`Home`] was looked for.
pub struct Searched<'a>(&'a Home);

impl fmt::Display for Searched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "facedex looked for its assets in ")?;
        for (position, candidate) in self.0.candidates.iter().enumerate() {
            if position > 0 {
                write!(f, ", then ")?;
            }
            write!(f, "{} ({})", candidate.dir.join(ASSETS).display(), candidate.source)?;
        }
        if self.0.candidates.iter().all(|candidate| candidate.source != HOME_ENV) {
            write!(f, "; set {HOME_ENV} to the folder holding assets/")?;
        }
        Ok(())
    }
}

/// `$XDG_DATA_HOME`, else `$HOME/.local/share` (the XDG base directory default).
fn xdg_data_home(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    // The specification ignores a relative XDG_DATA_HOME.
    xdg_data_home
        .filter(|dir| dir.is_absolute())
        .or_else(|| home.map(|home| home.join(".local/share")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_home_is_taken_as_given() {
        let home = Home::locate_with(Some("/opt/facedex".into()), Some("/home/u/.local/share".into()));
        assert_eq!(home.dir, Path::new("/opt/facedex"));
        assert_eq!(home.assets_dir(), Path::new("/opt/facedex/assets"));
        assert_eq!(home.data_dir(), Path::new("/opt/facedex/data"));
        let searched = home.searched().to_string();
        assert!(searched.contains("/opt/facedex/assets (FACEDEX_HOME)"), "{searched}");
    }

    #[test]
    fn the_xdg_directory_wins_when_it_holds_assets() -> std::io::Result<()> {
        let xdg = tempfile::tempdir()?;
        let without = Home::locate_with(None, Some(xdg.path().to_owned()));
        assert_eq!(
            without.dir,
            Path::new(".facedex"),
            "nothing installed: the working directory"
        );
        let searched = without.searched().to_string();
        assert!(
            searched.contains(&xdg.path().join("facedex/assets").display().to_string())
                && searched.contains(".facedex/assets (the working directory)")
                && searched.contains("set FACEDEX_HOME"),
            "{searched}"
        );

        std::fs::create_dir_all(xdg.path().join("facedex/assets"))?;
        let with = Home::locate_with(None, Some(xdg.path().to_owned()));
        assert_eq!(with.dir, xdg.path().join("facedex"));
        assert!(with.holds_asset(&xdg.path().join("facedex/assets/models/a.onnx")));
        assert!(!with.holds_asset(Path::new("/models/a.onnx")));
        Ok(())
    }

    #[test]
    fn xdg_data_home_defaults_to_local_share_and_ignores_relative_paths() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            xdg_data_home(None, home.clone()),
            Some(PathBuf::from("/home/u/.local/share"))
        );
        assert_eq!(
            xdg_data_home(Some("relative".into()), home.clone()),
            Some(PathBuf::from("/home/u/.local/share"))
        );
        assert_eq!(
            xdg_data_home(Some("/data/xdg".into()), home),
            Some(PathBuf::from("/data/xdg"))
        );
        assert_eq!(xdg_data_home(None, None), None);
    }
}
