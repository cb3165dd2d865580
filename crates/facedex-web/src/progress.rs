//! An indexing run as the console's pipeline page shows it: what `facedex index` counts
//! (photos planned and done, faces, dead letters by kind), with rates over the last few
//! seconds and the ETA they give. The run records events; the page reads a [`RunView`].

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

/// The stages of a distributed pipeline as another part of facedex reports them (an indexer
/// samples the brokers as `facedex status` does): the pipeline page shows the report as it is,
/// so this crate needs to know nothing of Kafka.
pub trait StagesReport: Send + Sync {
    /// The latest report, once there is one.
    fn latest(&self) -> Option<serde_json::Value>;
}

/// How far back the rates look.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// The most samples kept for the rates (one per read of the view).
const MAX_SAMPLES: usize = 256;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunPhase {
    /// Listing the archive and comparing it with the index.
    Listing,
    /// Processing photos.
    Indexing,
    /// Every planned photo is done.
    Finished,
    /// Stopped by a signal; what was done is kept.
    Interrupted,
}

/// The live counters of one run in this process.
#[derive(Debug)]
pub struct RunProgress {
    archive: String,
    started: Instant,
    started_unix_ms: u64,
    state: Mutex<RunState>,
}

#[derive(Debug)]
struct RunState {
    phase: RunPhase,
    planned: u64,
    indexed: u64,
    faces: u64,
    dead_letters_by_kind: BTreeMap<String, u64>,
    /// (when, photos done, faces) as read by the page, oldest first.
    samples: VecDeque<(Instant, u64, u64)>,
}

impl RunState {
    fn done(&self) -> u64 {
        self.indexed + self.dead_letters_by_kind.values().sum::<u64>()
    }
}

/// What the page shows of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The archive's root.
    pub archive: String,
    /// Where the run stands.
    pub phase: RunPhase,
    /// Photos the run will process (new or changed since the index last saw them).
    pub photos_planned: u64,
    /// Photos done: indexed or dead-lettered.
    pub photos_done: u64,
    /// Photos indexed.
    pub photos_indexed: u64,
    /// Faces found.
    pub faces: u64,
    /// Photos that could not be indexed.
    pub dead_letters: u64,
    /// The same by failure kind (`not_an_image`, `too_many_pixels`, …).
    pub dead_letters_by_kind: BTreeMap<String, u64>,
    /// Photos done per second over the last seconds (the whole run's rate at first).
    pub photos_per_sec: f64,
    /// Faces found per second, likewise.
    pub faces_per_sec: f64,
    /// Seconds until the planned photos are done at that rate; none before a rate is known.
    pub eta_secs: Option<f64>,
    /// Seconds since the run started.
    pub elapsed_secs: f64,
    /// When it started, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

impl RunProgress {
    /// A run of `archive`, listing.
    pub fn new(archive: &str) -> Self {
        Self {
            archive: archive.to_owned(),
            started: Instant::now(),
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            state: Mutex::new(RunState {
                phase: RunPhase::Listing,
                planned: 0,
                indexed: 0,
                faces: 0,
                dead_letters_by_kind: BTreeMap::new(),
                samples: VecDeque::new(),
            }),
        }
    }

    /// The listing is done: `photos` are to be processed.
    pub fn planned(&self, photos: u64) {
        let mut state = self.state.lock();
        state.planned = photos;
        state.phase = RunPhase::Indexing;
    }

    /// A photo was indexed with `faces` faces.
    pub fn indexed(&self, faces: u64) {
        let mut state = self.state.lock();
        state.indexed += 1;
        state.faces += faces;
    }

    /// A photo was dead-lettered as `kind`.
    pub fn dead_lettered(&self, kind: &str) {
        *self
            .state
            .lock()
            .dead_letters_by_kind
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    /// The run ended.
    pub fn ended(&self, interrupted: bool) {
        self.state.lock().phase = match interrupted {
            true => RunPhase::Interrupted,
            false => RunPhase::Finished,
        };
    }

    /// The run as of now.
    pub fn view(&self) -> RunView {
        self.view_at(Instant::now())
    }

    fn view_at(&self, now: Instant) -> RunView {
        let mut state = self.state.lock();
        let (done, faces) = (state.done(), state.faces);
        state.samples.push_back((now, done, faces));
        while state.samples.len() > MAX_SAMPLES
            || state
                .samples
                .front()
                .is_some_and(|(at, _, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            state.samples.pop_front();
        }
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let (photos_per_sec, faces_per_sec) = match state.samples.front() {
            Some((at, first_done, first_faces)) if now.duration_since(*at) >= Duration::from_secs(1) => {
                let seconds = now.duration_since(*at).as_secs_f64();
                (
                    (done - first_done) as f64 / seconds,
                    (faces - first_faces) as f64 / seconds,
                )
            }
            _ if elapsed > 0.0 => (done as f64 / elapsed, faces as f64 / elapsed),
            _ => (0.0, 0.0),
        };
        let remaining = state.planned.saturating_sub(done);
        let eta_secs = match state.phase {
            RunPhase::Finished | RunPhase::Interrupted => Some(0.0),
            RunPhase::Listing => None,
            RunPhase::Indexing if remaining == 0 => Some(0.0),
            RunPhase::Indexing => (photos_per_sec > 0.0).then(|| remaining as f64 / photos_per_sec),
        };
        RunView {
            archive: self.archive.clone(),
            phase: state.phase,
            photos_planned: state.planned,
            photos_done: done,
            photos_indexed: state.indexed,
            faces,
            dead_letters: done - state.indexed,
            dead_letters_by_kind: state.dead_letters_by_kind.clone(),
            photos_per_sec,
            faces_per_sec,
            eta_secs,
            elapsed_secs: elapsed,
            started_unix_ms: self.started_unix_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_eta_follow_the_run() {
        let listing = RunProgress::new("file:///photos");
        assert_eq!(listing.view().phase, RunPhase::Listing);
        assert_eq!(listing.view().eta_secs, None);
        let run = RunProgress::new("file:///photos");
        let start = run.started;
        run.planned(10);
        let _ = run.view_at(start + Duration::from_secs(1));
        for _ in 0..4 {
            run.indexed(2);
        }
        run.dead_lettered("not_an_image");
        // 5 photos in the 2 seconds since the first sample: 2.5 a second, 5 left, 2 s to go.
        let view = run.view_at(start + Duration::from_secs(3));
        assert_eq!(
            (view.photos_done, view.photos_indexed, view.faces, view.dead_letters),
            (5, 4, 8, 1)
        );
        assert_eq!(view.dead_letters_by_kind.get("not_an_image"), Some(&1));
        assert!((view.photos_per_sec - 2.5).abs() < 1e-9, "{view:?}");
        assert!((view.faces_per_sec - 4.0).abs() < 1e-9, "{view:?}");
        assert!((view.eta_secs.expect("eta") - 2.0).abs() < 1e-9, "{view:?}");
        // Samples older than the window leave the rate: alone in it, the whole run's rate;
        // then nothing more done in ten seconds is a rate of 0.
        let alone = run.view_at(start + Duration::from_secs(20));
        assert!((alone.photos_per_sec - 0.25).abs() < 1e-9, "{alone:?}");
        let later = run.view_at(start + Duration::from_secs(30));
        assert_eq!(later.photos_per_sec, 0.0);
        assert_eq!(later.eta_secs, None, "stalled: no ETA");
        run.ended(false);
        assert_eq!(run.view().phase, RunPhase::Finished);
        assert_eq!(run.view().eta_secs, Some(0.0));
    }
}
