//! A face index bound to a data directory: loads the newest good snapshot at open, journals
//! deletions and people edits so they survive a crash before the next snapshot, and writes
//! snapshots. The store
//! is the index's one way in for writes: upserts, deletions, applied offsets and audits all go
//! through it, so neither the journal nor the snapshot's change flag can be skipped;
//! [`FaceStore::index`] hands out the read side only.
//!
//! ```text
//! DATA_DIR/
//!   LOCK                      held while a process has the directory open
//!   deletions.journal         deletions and people edits since the last snapshot, one
//!                             fsynced JSON line each (an array of face ids, or an edit)
//!   segments/                 the vector files of sealed segments (see segments.rs);
//!                             snapshots hard-link the ones they hold
//!   snapshots/gen-…/          see snapshot/
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::catalog::ImageChange;
use crate::config::IndexConfig;
use crate::error::{IndexError, Result};
use crate::index::{DeleteSelector, FaceIndex, IndexState, UpsertOutcome};
use crate::metrics;
use crate::people::{PeopleEdit, PersonAnchors, PersonId, ReclusterProgress};
use crate::record::{FaceId, FaceRecord};
use crate::snapshot::{self, SnapshotInfo, sync_dir};

const LOCK_FILE: &str = "LOCK";
const JOURNAL_FILE: &str = "deletions.journal";
const SNAPSHOTS_DIR: &str = "snapshots";
const SEGMENTS_DIR: &str = "segments";

/// The face index and its data directory.
pub struct FaceStore {
    index: FaceIndex,
    data_dir: PathBuf,
    journal: Mutex<File>,
    last_snapshot: Mutex<Option<SnapshotInfo>>,
    changed_since_snapshot: AtomicBool,
    _lock: File,
}

impl FaceStore {
    /// Opens (creating if needed) `data_dir`: takes its lock, loads the newest snapshot that
    /// verifies (falling back to older ones, with a warning, when the newest is torn or
    /// corrupt), then re-applies journaled deletions.
    pub fn open(data_dir: &Path, config: IndexConfig) -> Result<Self> {
        config.validate()?;
        let snapshots_dir = data_dir.join(SNAPSHOTS_DIR);
        fs::create_dir_all(&snapshots_dir).map_err(|error| IndexError::io("create", &snapshots_dir, error))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|error| IndexError::io("open", &lock_path, error))?;
        lock.try_lock().map_err(|_| IndexError::DataDirLocked {
            path: data_dir.to_path_buf(),
            lock: lock_path,
        })?;

        let (index, last_snapshot) = load_newest(&snapshots_dir, config)?;
        index.adopt_segment_dir(&data_dir.join(SEGMENTS_DIR), crate::maintenance::segment_file_name)?;
        let journal_path = data_dir.join(JOURNAL_FILE);
        let journaled = read_journal(&journal_path)?;
        if !journaled.is_empty() {
            tracing::info!(
                entries = journaled.len(),
                "re-applying deletions and people edits journaled after the last snapshot"
            );
            let _writer = index.lock_writer();
            for entry in &journaled {
                match entry {
                    JournalEntry::Deletion(face_ids) => index.forget_locked(face_ids),
                    JournalEntry::PeopleEdit(edit) => {
                        // A face the edit names may have come after the snapshot (a replay
                        // brings it back, without the edit): the rest of the journal goes on.
                        if let Err(error) = index.edit_people_locked(edit, || Ok(())) {
                            tracing::warn!(%error, ?edit, "a journaled people edit no longer applies; skipped");
                        }
                    }
                }
            }
        }
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&journal_path)
            .map_err(|error| IndexError::io("open", &journal_path, error))?;
        metrics::record_size(&index);
        if let Some(snapshot) = &last_snapshot {
            metrics::record_snapshot(None, snapshot);
        }
        Ok(Self {
            index,
            data_dir: data_dir.to_path_buf(),
            journal: Mutex::new(journal),
            last_snapshot: Mutex::new(last_snapshot),
            changed_since_snapshot: AtomicBool::new(!journaled.is_empty()),
            _lock: lock,
        })
    }

    /// The index, for searches and reads.
    pub fn index(&self) -> &FaceIndex {
        &self.index
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Inserts or refreshes faces, idempotently by face id; every record is checked first, so a
    /// bad one rejects the whole batch and changes nothing. Durable at the next snapshot.
    pub fn upsert(&self, records: Vec<FaceRecord>) -> Result<UpsertOutcome> {
        let started = Instant::now();
        let outcome = self.index.upsert(records)?;
        self.changed_since_snapshot.store(true, Ordering::Release);
        metrics::record_upsert(started.elapsed());
        metrics::record_size(&self.index);
        Ok(outcome)
    }

    /// Applies photos' new states (see [`ImageChange`]): each photo's faces are replaced by
    /// the ones its change names, in one step, and its catalog entry set. Removed faces are not
    /// deletions: the photo may bring them back. Durable at the next snapshot (a crash before
    /// it leaves the previous snapshot's faces and catalog, which a re-run or replay redoes).
    pub fn apply_changes(&self, changes: Vec<ImageChange>) -> Result<UpsertOutcome> {
        let started = Instant::now();
        let outcome = {
            let _writer = self.index.lock_writer();
            self.index.apply_changes_locked(changes)?
        };
        self.changed_since_snapshot.store(true, Ordering::Release);
        metrics::record_upsert(started.elapsed());
        metrics::record_size(&self.index);
        Ok(outcome)
    }

    /// Probes every live face with a search for its own vector and puts the ones cut off from
    /// the graph on the brute-force list (run it after a bulk load); they are listed in the
    /// next snapshot, so finding any counts as a change. Returns how many it newly found.
    pub fn audit_reachability(&self) -> usize {
        let newly_found = self.index.audit_reachability();
        if newly_found > 0 {
            self.changed_since_snapshot.store(true, Ordering::Release);
        }
        newly_found
    }

    /// Records that Kafka records of `topic`/`partition` before `next_offset` are in the index;
    /// durable at the next snapshot.
    pub fn record_applied_offset(&self, topic: &str, partition: i32, next_offset: i64) {
        self.index.record_applied_offset(topic, partition, next_offset);
        self.changed_since_snapshot.store(true, Ordering::Release);
    }

    /// Deletes faces and returns their ids. Durable when this returns: the ids are fsynced to
    /// the journal before the index forgets them.
    pub fn delete(&self, selector: &DeleteSelector) -> Result<Vec<FaceId>> {
        let _writer = self.index.lock_writer();
        let face_ids = self.index.resolve(selector)?;
        if face_ids.is_empty() {
            return Ok(face_ids);
        }
        self.journal(&face_ids)?;
        self.index.forget_locked(&face_ids);
        self.changed_since_snapshot.store(true, Ordering::Release);
        metrics::record_deleted(face_ids.len());
        metrics::record_size(&self.index);
        Ok(face_ids)
    }

    /// Applies a people edit (rename, hide, merge, move or split; see [`PeopleEdit`]) and
    /// returns the person it leaves in place. Durable when this returns: the edit is fsynced to
    /// the journal before it is applied. Refused, changing nothing, when it names a person or
    /// face the index does not hold or would put two faces of one photo into one person.
    pub fn edit_people(&self, edit: &PeopleEdit) -> Result<PersonId> {
        let _writer = self.index.lock_writer();
        let person_id = self.index.edit_people_locked(edit, || self.journal(edit))?;
        self.changed_since_snapshot.store(true, Ordering::Release);
        Ok(person_id)
    }

    /// Applies a people edit read from a log (the Kafka topic of people edits) as
    /// [`Self::edit_people`] does, its persons found by their `anchors`, without journaling
    /// it: the log holds it, and the snapshot records how far the log was applied, so a replay
    /// from there makes it again.
    pub fn apply_logged_people_edit(&self, edit: &PeopleEdit, anchors: &PersonAnchors) -> Result<PersonId> {
        let _writer = self.index.lock_writer();
        let edit = self.index.resolve_people_anchors(edit, anchors);
        let person_id = self.index.edit_people_locked(&edit, || Ok(()))?;
        self.changed_since_snapshot.store(true, Ordering::Release);
        Ok(person_id)
    }

    /// Re-clusters the faces for about `budget` at most (see [`ReclusterProgress`]): call it
    /// again until it reports `finished`; it goes on where it stopped, also after a restart once
    /// a snapshot holds its progress. `restart` starts over. Writers wait while it runs;
    /// searches go on.
    pub fn recluster(&self, budget: Duration, restart: bool) -> ReclusterProgress {
        let _writer = self.index.lock_writer();
        let progress = self.index.recluster_locked(budget, restart);
        self.changed_since_snapshot.store(true, Ordering::Release);
        progress
    }

    /// Appends one entry to the journal and fsyncs it.
    fn journal(&self, entry: &impl serde::Serialize) -> Result<()> {
        let mut line = serde_json::to_string(entry).map_err(|error| self.journal_error(error.into()))?;
        line.push('\n');
        let mut journal = self.journal.lock();
        journal
            .write_all(line.as_bytes())
            .map_err(|error| self.journal_error(error))?;
        journal.sync_data().map_err(|error| self.journal_error(error))
    }

    fn journal_error(&self, error: std::io::Error) -> IndexError {
        IndexError::io("append to deletion journal", self.data_dir.join(JOURNAL_FILE), error)
    }

    /// Whether anything changed since the last snapshot.
    pub fn has_unsnapshotted_changes(&self) -> bool {
        self.changed_since_snapshot.load(Ordering::Acquire)
    }

    /// Writes a new snapshot generation, then empties the journal (its deletions are in the
    /// snapshot) and prunes old generations. Searches go on; writers wait.
    pub fn snapshot(&self) -> Result<SnapshotInfo> {
        let started = Instant::now();
        let _writer = self.index.lock_writer();
        // Every point in the search copy and checked for reachability, so the snapshot's list
        // of unreachable points is complete.
        self.index.freeze_locked();
        let snapshots_dir = self.data_dir.join(SNAPSHOTS_DIR);
        let generation = snapshot::list_generations(&snapshots_dir)?
            .first()
            .map_or(1, |(newest, _)| newest + 1);
        self.changed_since_snapshot.store(false, Ordering::Release);
        let written = {
            let state = self.index.state.read();
            snapshot::write(&snapshots_dir, generation, &self.index.config, &state)
        };
        let info = written.inspect_err(|_| self.changed_since_snapshot.store(true, Ordering::Release))?;
        let journal = self.journal.lock();
        journal.set_len(0).map_err(|error| self.journal_error(error))?;
        journal.sync_all().map_err(|error| self.journal_error(error))?;
        snapshot::prune(&snapshots_dir, self.index.config.snapshots_to_keep)?;
        self.index.remove_unused_segment_files()?;
        *self.last_snapshot.lock() = Some(info.clone());
        metrics::record_snapshot(Some(started.elapsed()), &info);
        tracing::info!(generation, faces = info.faces, bytes = info.bytes, "snapshot written");
        Ok(info)
    }

    /// The snapshot loaded at open or written last.
    pub fn last_snapshot(&self) -> Option<SnapshotInfo> {
        self.last_snapshot.lock().clone()
    }

    /// Vacuums when deleted faces exceed the configured share; returns how many were removed.
    /// Callers racing here vacuum once: the check is repeated under the writer lock.
    pub fn vacuum_if_needed(&self) -> Result<usize> {
        if !self.index.needs_vacuum() {
            return Ok(0);
        }
        let removed = self.index.vacuum_if(|index| index.needs_vacuum())?;
        self.changed_since_snapshot.store(true, Ordering::Release);
        metrics::record_size(&self.index);
        Ok(removed)
    }
}

fn load_newest(snapshots_dir: &Path, config: IndexConfig) -> Result<(FaceIndex, Option<SnapshotInfo>)> {
    let generations = snapshot::list_generations(snapshots_dir)?;
    let mut failures = Vec::new();
    for (generation, dir) in &generations {
        if !snapshot::is_complete(dir) {
            tracing::warn!(generation, path = %dir.display(), "skipping a torn snapshot (no manifest): a write was interrupted");
            continue;
        }
        match snapshot::load(dir, &config) {
            Ok((loaded_config, state, info)) => {
                tracing::info!(generation, faces = info.faces, "loaded snapshot");
                return Ok((FaceIndex::from_state(loaded_config, state), Some(info)));
            }
            Err(error @ IndexError::InvalidConfig(_)) => return Err(error),
            Err(error) => {
                tracing::warn!(generation, %error, "skipping an unusable snapshot, trying the previous one");
                failures.push(error.to_string());
            }
        }
    }
    if !failures.is_empty() {
        // Starting empty here would silently drop the whole index.
        return Err(IndexError::corrupt(
            snapshots_dir,
            format!(
                "no snapshot verifies ({}); move the directory aside to start an empty index",
                failures.join("; ")
            ),
        ));
    }
    sync_dir(snapshots_dir)?;
    let graph = crate::graph::new_graph(&config, config.expected_faces);
    Ok((FaceIndex::from_state(config, IndexState::new(graph)), None))
}

/// One line of the journal: a deletion is an array of face ids, a people edit an object.
#[derive(Debug)]
enum JournalEntry {
    Deletion(Vec<FaceId>),
    PeopleEdit(PeopleEdit),
}

/// The journal's entries in order. A torn last line (a crash mid-append, never acknowledged)
/// is ignored; anything else that does not parse is an error, because dropping a deletion or
/// an edit that was acknowledged would undo it.
fn read_journal(path: &Path) -> Result<Vec<JournalEntry>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(IndexError::io("read", path, error)),
    };
    let complete_lines = text.rsplit_once('\n').map_or("", |(complete, _)| complete);
    complete_lines
        .lines()
        .enumerate()
        .map(|(number, line)| {
            // Tried in turn, not `untagged`: serde cannot buffer the u128 face ids for that.
            let entry = match line.trim_start().starts_with('[') {
                true => serde_json::from_str(line).map(JournalEntry::Deletion),
                false => serde_json::from_str(line).map(JournalEntry::PeopleEdit),
            };
            entry.map_err(|error| IndexError::corrupt(path, format!("line {} does not parse: {error}", number + 1)))
        })
        .collect()
}
