//! A re-run's plan: what the archive lists now against what the index already holds of it
//! (its image catalog, from the data directory in local mode or the catalog topic over Kafka).
//! Each listed photo is new, changed or unchanged ([`Planner::classify`]); what the index holds
//! and the listing no longer has is gone, and removed with `--prune`. Both modes plan with
//! this one type, so they count alike.

use std::collections::BTreeMap;
use std::fmt;

use facedex_index::{CatalogEntry, ImageOutcome};

use crate::error::{PipelineError, Result};
use crate::messages::ImageRef;

/// What to do with a listed photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The index has never seen it: process it.
    New,
    /// The index holds another version (or one it cannot compare): process it, replacing.
    Changed,
    /// The index holds this version: skip it.
    Unchanged,
}

/// The counts of a run's plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunPlan {
    /// Photos listed.
    pub listed: u64,
    /// Listed and never seen.
    pub new: u64,
    /// Listed at another version than the index holds.
    pub changed: u64,
    /// Listed at the version the index holds: skipped.
    pub unchanged: u64,
    /// Of the unchanged ones, photos that failed for good before (`--retry-failed` redoes them).
    pub unchanged_failed: u64,
    /// In the index but no longer listed, and removed (`--prune`).
    pub removed: u64,
    /// In the index but no longer listed, and kept (no `--prune`).
    pub gone_kept: u64,
}

impl RunPlan {
    /// Photos to process.
    pub fn to_process(&self) -> u64 {
        self.new + self.changed
    }
}

impl fmt::Display for RunPlan {
    /// `400 photos: 396 unchanged, 1 changed, 1 new, 2 removed`, plus what was left alone.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let photos = if self.listed == 1 { "photo" } else { "photos" };
        write!(
            f,
            "{} {photos}: {} unchanged, {} changed, {} new, {} removed",
            self.listed, self.unchanged, self.changed, self.new, self.removed
        )?;
        if self.unchanged_failed > 0 {
            write!(
                f,
                "; {} of the unchanged failed before (--retry-failed redoes them)",
                self.unchanged_failed
            )?;
        }
        if self.gone_kept > 0 {
            write!(
                f,
                "; {} no longer in the archive keep their faces (--prune removes them)",
                self.gone_kept
            )?;
        }
        Ok(())
    }
}

/// A plan as an enqueue reports it for `facedex status`: which archive, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueRun {
    /// The archive root.
    pub archive: String,
    /// The counts.
    pub plan: RunPlan,
    /// When the enqueue finished, milliseconds since the Unix epoch.
    pub finished_at_unix_ms: i64,
}

/// Settings of a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Remove what the index holds under the archive root and the listing lacks.
    pub prune: bool,
    /// Process photos that failed for good before even when unchanged (after an upgrade
    /// that reads more formats, or a raised size limit).
    pub retry_failed: bool,
}

/// Classifies a listing against what the index holds under the archive's root.
pub struct Planner {
    root: String,
    known: BTreeMap<String, Option<CatalogEntry>>,
    options: PlanOptions,
    plan: RunPlan,
}

impl Planner {
    /// A planner for the archive at `root` (no trailing slash), given every photo the index
    /// holds under `root/` (an entry of `None`: faces whose version is unknown).
    pub fn new(root: &str, known: BTreeMap<String, Option<CatalogEntry>>, options: PlanOptions) -> Self {
        Self {
            root: root.to_owned(),
            known,
            options,
            plan: RunPlan::default(),
        }
    }

    /// The prefix every photo of the archive at `root` has: what to ask the index for.
    pub fn prefix_of(root: &str) -> String {
        format!("{root}/")
    }

    /// What to do with `image`, as listed now.
    pub fn classify(&mut self, image: &ImageRef) -> Decision {
        debug_assert!(
            image.uri.starts_with(&Self::prefix_of(&self.root)),
            "{} under {}",
            image.uri,
            self.root
        );
        self.plan.listed += 1;
        let decision = match self.known.remove(&image.uri) {
            None => Decision::New,
            Some(Some(entry)) if entry.is_same(&image.listed_version()) => {
                let failed = entry.outcome == ImageOutcome::Failed;
                if failed && self.options.retry_failed {
                    Decision::Changed
                } else {
                    self.plan.unchanged_failed += u64::from(failed);
                    Decision::Unchanged
                }
            }
            Some(_) => Decision::Changed,
        };
        match decision {
            Decision::New => self.plan.new += 1,
            Decision::Changed => self.plan.changed += 1,
            Decision::Unchanged => self.plan.unchanged += 1,
        }
        decision
    }

    /// Ends the plan once the listing is complete: the photos gone from the archive, to be
    /// removed when pruning (empty otherwise), and the counts. Refuses to prune every photo of
    /// a listing that found none, which is far likelier an unmounted or mistyped archive than
    /// an archive emptied on purpose.
    pub fn finish(mut self) -> Result<(Vec<String>, RunPlan)> {
        let gone: Vec<String> = std::mem::take(&mut self.known).into_keys().collect();
        if !self.options.prune {
            self.plan.gone_kept = gone.len() as u64;
            return Ok((Vec::new(), self.plan));
        }
        if self.plan.listed == 0 && !gone.is_empty() {
            return Err(PipelineError::PruneEverything {
                archive: self.root,
                indexed: gone.len(),
            });
        }
        self.plan.removed = gone.len() as u64;
        Ok((gone, self.plan))
    }
}

#[cfg(test)]
mod tests {
    use facedex_index::ImageVersion;

    use super::*;

    fn image(name: &str, version: &str) -> ImageRef {
        ImageRef {
            uri: format!("file:///a/{name}"),
            archive: "file:///a".into(),
            key: name.into(),
            size_bytes: 10,
            version: version.into(),
            enqueued_at_unix_ms: 0,
        }
    }

    fn entry(version: &str, outcome: ImageOutcome) -> Option<CatalogEntry> {
        Some(CatalogEntry {
            version: ImageVersion {
                version: version.into(),
                size_bytes: 10,
            },
            outcome,
        })
    }

    fn known() -> BTreeMap<String, Option<CatalogEntry>> {
        let indexed = ImageOutcome::Indexed { faces: 1 };
        BTreeMap::from([
            ("file:///a/same.jpg".to_owned(), entry("v1", indexed)),
            ("file:///a/edited.jpg".to_owned(), entry("v1", indexed)),
            ("file:///a/broken.jpg".to_owned(), entry("v1", ImageOutcome::Failed)),
            ("file:///a/imported.jpg".to_owned(), None),
            ("file:///a/deleted.jpg".to_owned(), entry("v1", indexed)),
        ])
    }

    fn listing(planner: &mut Planner) -> Vec<Decision> {
        ["same.jpg", "edited.jpg", "broken.jpg", "imported.jpg", "added.jpg"]
            .into_iter()
            .map(|name| {
                let version = if name == "edited.jpg" { "v2" } else { "v1" };
                planner.classify(&image(name, version))
            })
            .collect()
    }

    #[test]
    fn a_listing_is_classified_against_the_catalog_and_the_rest_is_gone() -> anyhow::Result<()> {
        let options = PlanOptions {
            prune: true,
            ..PlanOptions::default()
        };
        let mut planner = Planner::new("file:///a", known(), options);
        use Decision::*;
        assert_eq!(listing(&mut planner), [Unchanged, Changed, Unchanged, Changed, New]);
        let (gone, plan) = planner.finish()?;
        assert_eq!(gone, ["file:///a/deleted.jpg"]);
        assert_eq!(
            plan.to_string(),
            "5 photos: 2 unchanged, 2 changed, 1 new, 1 removed; 1 of the unchanged failed before (--retry-failed redoes them)"
        );
        assert_eq!(plan.to_process(), 3);
        Ok(())
    }

    #[test]
    fn without_prune_gone_photos_are_kept_and_retry_failed_redoes_failures() -> anyhow::Result<()> {
        let options = PlanOptions {
            retry_failed: true,
            ..PlanOptions::default()
        };
        let mut planner = Planner::new("file:///a", known(), options);
        assert_eq!(listing(&mut planner)[2], Decision::Changed);
        let (gone, plan) = planner.finish()?;
        assert!(gone.is_empty());
        assert_eq!((plan.gone_kept, plan.removed, plan.unchanged_failed), (1, 0, 0));
        assert!(
            plan.to_string()
                .ends_with("1 no longer in the archive keep their faces (--prune removes them)")
        );
        Ok(())
    }

    #[test]
    fn pruning_everything_because_nothing_was_listed_is_refused() {
        let options = PlanOptions {
            prune: true,
            ..PlanOptions::default()
        };
        let error = Planner::new("file:///a", known(), options)
            .finish()
            .expect_err("an empty listing");
        assert!(
            error
                .to_string()
                .contains("all 5 photos the index holds of it would be removed"),
            "{error}"
        );
        let (gone, plan) = Planner::new("file:///a", BTreeMap::new(), options)
            .finish()
            .expect("nothing known");
        assert!(gone.is_empty() && plan.listed == 0);
    }
}
