//! Shards discovered instead of listed (`router.discover` and `router.shard_count`): every
//! address the pool names (`dns:HOST:PORT`: every address HOST resolves to, e.g. one headless
//! Service over all indexer pods) is asked which shard it serves, through the gRPC health
//! service (open even where FaceSearch takes tokens), whose answer carries the indexer's
//! `facedex-shard` header; the address joins that shard's replicas. An address keeps its shard
//! and connection while it is found; one that does not say (down, or not an indexer) is asked
//! again at the next refresh; one of another split (an unsharded indexer, or `i/M` with M not
//! the shard count) is left out with a warning.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{ShardClient, ShardSet, shard_client};
use crate::replicas::lazy_channel;
use crate::shard_header;

/// How long an address may take to say which shard it serves.
const SHARD_QUESTION_TIMEOUT: Duration = Duration::from_secs(5);

impl ShardSet {
    /// Looks the pool up again and sorts what it finds into the shards. A DNS name that does
    /// not resolve now leaves every shard as it was (a DNS outage does not empty the router).
    pub(super) async fn sort_pool(&self) {
        let mut found = Vec::new();
        for source in &self.pool {
            match source.addresses().await {
                Ok(addresses) => found.extend(addresses),
                Err(error) => {
                    tracing::warn!(%error, "cannot resolve the indexers to discover; keeping the shards as they are");
                    return;
                }
            }
        }
        found.sort();
        found.dedup();
        let known: Vec<_> = self.shards.iter().map(|shard| shard.replicas.servers()).collect();
        let mut placed: Vec<Vec<(String, ShardClient)>> = vec![Vec::new(); self.shards.len()];
        for replica in found {
            let kept = known.iter().enumerate().find_map(|(shard, servers)| {
                servers
                    .iter()
                    .find(|(known, _)| *known == replica)
                    .map(|(_, client)| (shard, client.clone()))
            });
            if let Some((shard, client)) = kept {
                placed[shard].push((replica, client));
                continue;
            }
            match self.shard_of(&replica).await {
                Ok((client, served)) => match placement(served, self.shards.len()) {
                    Some(shard) => placed[shard].push((replica, client)),
                    None => tracing::warn!(
                        %replica,
                        serves = %format!("{}/{}", served.0, served.1),
                        shards = self.shards.len(),
                        "a discovered indexer serves a shard of another split; left out"
                    ),
                },
                Err(reason) => tracing::warn!(
                    %replica,
                    %reason,
                    "cannot learn which shard a discovered address serves; asking again at the next refresh"
                ),
            }
        }
        for (number, ((shard, clients), known)) in self.shards.iter().zip(placed).zip(&known).enumerate() {
            let mut before: Vec<&str> = known.iter().map(|(replica, _)| replica.as_str()).collect();
            let mut now: Vec<&str> = clients.iter().map(|(replica, _)| replica.as_str()).collect();
            before.sort_unstable();
            now.sort_unstable();
            if before != now {
                tracing::info!(shard = number, replicas = ?now, "discovered shard replicas changed");
                shard.replicas.replace(clients);
            }
        }
    }

    /// A client of `replica` and the shard (index, count) it says it serves.
    async fn shard_of(&self, replica: &str) -> Result<(ShardClient, (usize, usize)), String> {
        let channel = lazy_channel(replica, self.ca_pem.as_deref()).map_err(|error| error.to_string())?;
        let mut health = HealthClient::new(channel.clone());
        let answer = tokio::time::timeout(SHARD_QUESTION_TIMEOUT, health.check(HealthCheckRequest::default()))
            .await
            .map_err(|_| format!("no answer within {} s", SHARD_QUESTION_TIMEOUT.as_secs()))?
            .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
        let served = shard_header::served(answer.metadata())
            .ok_or("it names no shard (not a facedex indexer)")?
            .map_err(|reason| reason.to_owned())?;
        Ok((shard_client(channel), served))
    }
}

/// The shard a discovered indexer serving shard `served` (index, count) joins, of `shards`:
/// none when it belongs to another split.
fn placement((index, count): (usize, usize), shards: usize) -> Option<usize> {
    (count == shards && index < count).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_indexer_joins_the_shard_it_serves_when_the_split_is_the_routers() {
        assert_eq!(placement((1, 2), 2), Some(1));
        assert_eq!(placement((0, 2), 2), Some(0));
        assert_eq!(placement((0, 1), 2), None, "an unsharded indexer");
        assert_eq!(placement((1, 3), 2), None, "another split");
        assert_eq!(placement((2, 2), 2), None, "a shard past the count");
    }
}
