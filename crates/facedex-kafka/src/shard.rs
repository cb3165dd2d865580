//! [`Shard`]: which partitions of the faces topic one indexer serves. Shard `i` of `N` owns the
//! partitions `p` with `p mod N = i`; every indexer with the same shard is a replica of it and
//! reads the same partitions, so replicas converge on the same faces.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One shard of `count`, written `index/count` (`0/1`: the whole topic, the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a shard was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {text:?}: {reason}; write it as INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/2")]
pub struct InvalidShard {
    text: String,
    reason: &'static str,
}

impl Shard {
    /// The most shards a topic can be split into: more than any topic has partitions.
    pub const MAX_COUNT: u32 = 4096;

    /// The whole topic.
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Self, InvalidShard> {
        Self::checked(index, count, || format!("{index}/{count}"))
    }

    fn checked(index: u32, count: u32, text: impl FnOnce() -> String) -> Result<Self, InvalidShard> {
        let refuse = |reason| InvalidShard { text: text(), reason };
        if count == 0 {
            return Err(refuse("the count is 0"));
        }
        if count > Self::MAX_COUNT {
            return Err(refuse("the count is over 4096"));
        }
        if index >= count {
            return Err(refuse("the index is not below the count"));
        }
        Ok(Self { index, count })
    }

    /// This shard's number, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards the topic is split into.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether `partition` belongs to this shard.
    pub fn owns(self, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|partition| partition % self.count == self.index)
    }

    /// The partitions of `partitions` this shard owns, in their order.
    pub fn owned(self, partitions: impl IntoIterator<Item = i32>) -> Vec<i32> {
        partitions
            .into_iter()
            .filter(|partition| self.owns(*partition))
            .collect()
    }
}

impl Default for Shard {
    fn default() -> Self {
        Self::WHOLE
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = InvalidShard;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| InvalidShard {
            text: text.to_owned(),
            reason,
        };
        let (index, count) = text.trim().split_once('/').ok_or_else(|| refuse("no '/'"))?;
        let number = |part: &str, reason| part.trim().parse::<u32>().map_err(|_| refuse(reason));
        let index = number(index, "the index is not a number")?;
        let count = number(count, "the count is not a number")?;
        Self::checked(index, count, || text.to_owned())
    }
}

impl TryFrom<String> for Shard {
    type Error = InvalidShard;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Shard> for String {
    fn from(shard: Shard) -> Self {
        shard.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_partitions_without_overlap_or_gap() {
        let shards: Vec<Shard> = (0..3)
            .map(|index| Shard::new(index, 3).expect("a valid shard"))
            .collect();
        let owned: Vec<Vec<i32>> = shards.iter().map(|shard| shard.owned(0..8)).collect();
        assert_eq!(owned, [vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]]);
        assert_eq!(Shard::WHOLE.owned(0..4), [0, 1, 2, 3]);
        assert!(!Shard::WHOLE.owns(-1));
    }

    #[test]
    fn shards_parse_and_print_as_index_slash_count() {
        assert_eq!("1/2".parse(), Ok(Shard::new(1, 2).expect("a valid shard")));
        assert_eq!(
            " 0 / 4 ".parse::<Shard>().map(|shard| shard.to_string()),
            Ok("0/4".to_owned())
        );
        for (text, reason) in [
            ("2/2", "the index is not below the count"),
            ("0/0", "the count is 0"),
            ("1", "no '/'"),
            ("a/2", "the index is not a number"),
            ("0/-1", "the count is not a number"),
            ("0/5000", "the count is over 4096"),
        ] {
            let error = text.parse::<Shard>().expect_err("an invalid shard");
            assert_eq!(error.reason, reason, "{text}");
            assert!(error.to_string().contains(text.trim()), "{error}");
        }
    }
}
