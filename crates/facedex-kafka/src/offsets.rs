//! [`OffsetTracker`]: with many photos of a partition in flight at once, the offset that may be
//! committed is the one below the lowest photo not yet done (Kafka's committed offset means
//! "everything before this is finished"). Photos finish out of order; the commit point only
//! moves over a contiguous run of finished offsets.

use std::collections::{BTreeMap, BTreeSet};

/// Per-partition in-flight offsets and the next offset that may be committed.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: BTreeMap<i32, PartitionState>,
}

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: BTreeSet<i64>,
    /// The highest offset finished so far, plus one.
    finished_to: Option<i64>,
    /// What was last handed out for committing.
    committed: Option<i64>,
}

impl OffsetTracker {
    /// Records that work on `offset` of `partition` started.
    pub fn started(&mut self, partition: i32, offset: i64) {
        self.partitions.entry(partition).or_default().in_flight.insert(offset);
    }

    /// Records that `offset` is durable (its output acknowledged by Kafka).
    pub fn finished(&mut self, partition: i32, offset: i64) {
        let state = self.partitions.entry(partition).or_default();
        state.in_flight.remove(&offset);
        state.finished_to = Some(state.finished_to.map_or(offset + 1, |to| to.max(offset + 1)));
    }

    /// The offsets to commit now, per partition: below the lowest in-flight offset, or after
    /// everything finished. Each value is returned once, when it moves.
    pub fn committable(&mut self) -> Vec<(i32, i64)> {
        let mut ready = Vec::new();
        for (&partition, state) in &mut self.partitions {
            let Some(finished_to) = state.finished_to else {
                continue;
            };
            let next = match state.in_flight.first() {
                Some(&lowest) => lowest.min(finished_to),
                None => finished_to,
            };
            if state.committed.is_none_or(|committed| next > committed) {
                state.committed = Some(next);
                ready.push((partition, next));
            }
        }
        ready
    }

    /// The last value [`Self::committable`] handed out per partition, for a final synchronous
    /// commit at shutdown.
    pub fn committed(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(&partition, state)| state.committed.map(|next| (partition, next)))
            .collect()
    }

    /// Photos in flight across partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|state| state.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_lowest_contiguous_finished_offset() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..14 {
            tracker.started(0, offset);
        }
        tracker.finished(0, 11);
        tracker.finished(0, 13);
        assert_eq!(tracker.committable(), vec![(0, 10)], "10 is still in flight");
        assert_eq!(tracker.committable(), vec![], "nothing moved");
        tracker.finished(0, 10);
        assert_eq!(tracker.committable(), vec![(0, 12)], "12 is still in flight");
        tracker.finished(0, 12);
        assert_eq!(tracker.committable(), vec![(0, 14)]);
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn an_offset_never_finished_holds_its_partition_back() {
        let mut tracker = OffsetTracker::default();
        tracker.started(0, 1); // cancelled at shutdown: never finished
        tracker.started(0, 2);
        tracker.finished(0, 2);
        assert_eq!(tracker.committable(), vec![(0, 1)], "nothing past the unfinished photo");
    }

    #[test]
    fn partitions_are_independent() {
        let mut tracker = OffsetTracker::default();
        tracker.started(0, 5);
        tracker.started(1, 7);
        tracker.finished(1, 7);
        assert_eq!(
            tracker.committable(),
            vec![(1, 8)],
            "partition 0 has finished nothing yet"
        );
        tracker.finished(0, 5);
        assert_eq!(tracker.committable(), vec![(0, 6)]);
    }
}
