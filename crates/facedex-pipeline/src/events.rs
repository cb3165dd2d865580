//! Rate-limited log lines for events that can repeat by the thousand (a faces topic full of
//! records from another model): the first of each kind in an interval is logged with its
//! details, the rest are counted and summed up in one line when the interval is over, the way
//! vector's internal events do. Counting in metrics is the caller's; this only keeps the log
//! readable.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Suppression state per kind.
#[derive(Debug)]
struct Window {
    opened: Instant,
    suppressed: u64,
}

/// One log line per kind per interval, plus a count of what was left out.
#[derive(Debug)]
pub struct RateLimitedLog<K> {
    interval: Duration,
    windows: HashMap<K, Window>,
}

/// What the caller should log for one event.
#[derive(Debug, PartialEq, Eq)]
pub enum LogDecision {
    /// Log this event; `suppressed_before` events of its kind were left out since the last line.
    Log {
        /// Events of this kind counted without a line since the last one logged.
        suppressed_before: u64,
    },
    /// Leave it out (it is counted).
    Suppress,
}

impl<K: Hash + Eq + Clone> RateLimitedLog<K> {
    /// At most one line per kind per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            windows: HashMap::new(),
        }
    }

    /// Whether an event of `kind` happening `now` gets a line.
    pub fn decide(&mut self, kind: &K, now: Instant) -> LogDecision {
        match self.windows.get_mut(kind) {
            Some(window) if now.duration_since(window.opened) < self.interval => {
                window.suppressed += 1;
                LogDecision::Suppress
            }
            Some(window) => {
                let suppressed_before = std::mem::take(&mut window.suppressed);
                window.opened = now;
                LogDecision::Log { suppressed_before }
            }
            None => {
                self.windows.insert(
                    kind.clone(),
                    Window {
                        opened: now,
                        suppressed: 0,
                    },
                );
                LogDecision::Log { suppressed_before: 0 }
            }
        }
    }

    /// The kinds with events left out since their last line, and how many; resets the counts.
    /// Called at the end of a run so nothing counted goes unsaid.
    pub fn drain_suppressed(&mut self) -> Vec<(K, u64)> {
        self.windows
            .iter_mut()
            .filter(|(_, window)| window.suppressed > 0)
            .map(|(kind, window)| (kind.clone(), std::mem::take(&mut window.suppressed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_with_the_count_left_out() {
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(log.decide(&"a", start), LogDecision::Log { suppressed_before: 0 });
        for second in 1..5 {
            assert_eq!(
                log.decide(&"a", start + Duration::from_secs(second)),
                LogDecision::Suppress
            );
        }
        assert_eq!(log.decide(&"b", start), LogDecision::Log { suppressed_before: 0 });
        assert_eq!(
            log.decide(&"a", start + Duration::from_secs(10)),
            LogDecision::Log { suppressed_before: 4 }
        );
        assert_eq!(log.decide(&"a", start + Duration::from_secs(11)), LogDecision::Suppress);
        assert_eq!(log.drain_suppressed(), vec![("a", 1)]);
        assert!(log.drain_suppressed().is_empty());
    }
}
