//! [`ShardSet`]: the index shards a router fans out to, each the [`Replicas`] of the indexers
//! serving it. A read asks one replica of every shard at once; a replica that is down, busy or
//! slower than `router.try_timeout_ms` is passed over for the next one of its shard, and when
//! none of a shard's replicas answers, the read fails UNAVAILABLE, naming the shard and what
//! each replica did. With `router.hedge`, a read slower than the shard's usual is also sent to
//! a second replica ([`Hedging`]). A shard's replicas can be named by DNS (`dns:HOST:PORT`,
//! every address HOST resolves to), found again every `router.dns_refresh_secs`.

use std::time::Duration;

use facedex_proto::face_search_client::FaceSearchClient;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::config::RouterConfig;
use crate::error::ServiceError;
use crate::replicas::{Hedging, Replicas, ReplicasError, lazy_channel, read_ca};
use crate::search::server::ServerError;
use crate::shard_header;

mod discovery;

/// A client of one indexer.
pub(crate) type ShardClient = FaceSearchClient<Channel>;

/// The largest answer taken from one replica: a photo query's results for many faces at the
/// largest limit.
const MAX_SHARD_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The shards, in shard order.
pub struct ShardSet {
    shards: Vec<Shard>,
    /// Indexers to sort into the shards by the shard each names (`router.discover`, see
    /// [`discovery`]); empty when the shards are listed one by one.
    pool: Vec<ReplicaSource>,
    /// The CA replicas serving `https://` are verified with.
    ca_pem: Option<Vec<u8>>,
    /// How often DNS-named replicas are resolved again.
    dns_refresh: Duration,
}

/// The caller's credentials, passed on to every replica: the indexers check them as they would
/// a direct call.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials(Option<AsciiMetadataValue>);

impl Credentials {
    /// The `authorization` header of a call, if any.
    pub(crate) fn of(metadata: &MetadataMap) -> Self {
        Self(metadata.get("authorization").cloned())
    }

    /// `message` as a request carrying these credentials.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        request
    }
}

/// Where a shard's replicas are named: an address, or a DNS name standing for every address it
/// resolves to (`dns:HOST:PORT`, e.g. a Kubernetes headless Service of the shard's pods).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ReplicaSource {
    /// `http://host:port` or `https://host:port`.
    Address(String),
    /// `HOST:PORT` to resolve; each address found is `http://ADDRESS`.
    Dns(String),
}

impl ReplicaSource {
    fn parse(text: &str) -> Self {
        match text.strip_prefix("dns:") {
            Some(host_port) => Self::Dns(host_port.trim_start_matches("//").to_owned()),
            None => Self::Address(text.to_owned()),
        }
    }

    /// The replica addresses this names now: the address itself, or every address the name
    /// resolves to; the error names the name that did not resolve.
    async fn addresses(&self) -> Result<Vec<String>, String> {
        match self {
            Self::Address(replica) => Ok(vec![replica.clone()]),
            Self::Dns(host_port) => match tokio::net::lookup_host(host_port.as_str()).await {
                Ok(addresses) => Ok(addresses.map(|address| format!("http://{address}")).collect()),
                Err(error) => Err(format!("{host_port}: {error}")),
            },
        }
    }
}

/// One shard: where its replicas are named, and the clients of those found.
struct Shard {
    sources: Vec<ReplicaSource>,
    replicas: Replicas<ShardClient>,
}

impl ShardSet {
    /// Lazy connections to every replica of `config.shards`: a replica that is down now is
    /// tried again at each call. Replicas named by DNS are found by [`ShardSet::refresh`].
    /// Runs inside the Tokio runtime that will drive them.
    pub fn connect(config: &RouterConfig) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::InvalidConfig)?;
        let ca_pem = read_ca(config.ca_cert_path.as_deref())?;
        let try_timeout = (config.try_timeout_ms > 0).then(|| Duration::from_millis(config.try_timeout_ms));
        let replicas = |clients| {
            let replicas = Replicas::new(clients, try_timeout);
            match config.hedge {
                true => replicas.with_hedging(Hedging {
                    min_delay: Duration::from_millis(config.hedge_min_delay_ms),
                }),
                false => replicas,
            }
        };
        let mut shards = Vec::with_capacity(config.shards.len().max(config.shard_count));
        for (shard, named) in config.shards.iter().enumerate() {
            let sources: Vec<ReplicaSource> = named.iter().map(|text| ReplicaSource::parse(text)).collect();
            let mut clients = Vec::with_capacity(sources.len());
            for source in &sources {
                if let ReplicaSource::Address(replica) = source {
                    clients.push((replica.clone(), client(shard, replica, ca_pem.as_deref())?));
                }
            }
            shards.push(Shard {
                sources,
                replicas: replicas(clients),
            });
        }
        let pool: Vec<ReplicaSource> = config.discover.iter().map(|text| ReplicaSource::parse(text)).collect();
        if !pool.is_empty() {
            // Discovered shards start empty; `refresh` fills them.
            shards.extend((0..config.shard_count).map(|_| Shard {
                sources: Vec::new(),
                replicas: replicas(Vec::new()),
            }));
        }
        Ok(Self {
            shards,
            pool,
            ca_pem,
            dns_refresh: Duration::from_secs(config.dns_refresh_secs.max(1)),
        })
    }

    /// Whether any shard names replicas by DNS, or the shards are discovered.
    pub fn discovers(&self) -> bool {
        !self.pool.is_empty()
            || self.shards.iter().any(|shard| {
                shard
                    .sources
                    .iter()
                    .any(|source| matches!(source, ReplicaSource::Dns(_)))
            })
    }

    /// Resolves the DNS names of every shard again and makes the addresses found its replicas,
    /// keeping the connections of those it had. A name that does not resolve now keeps the
    /// replicas it had (a DNS outage does not empty a shard); one that resolves to nothing
    /// leaves none.
    pub async fn refresh(&self) {
        if !self.pool.is_empty() {
            self.sort_pool().await;
            return;
        }
        for (number, shard) in self.shards.iter().enumerate() {
            if !shard
                .sources
                .iter()
                .any(|source| matches!(source, ReplicaSource::Dns(_)))
            {
                continue;
            }
            let known = shard.replicas.servers();
            let mut found: Vec<String> = Vec::new();
            for source in &shard.sources {
                match source.addresses().await {
                    Ok(addresses) => found.extend(addresses),
                    Err(error) => {
                        tracing::warn!(shard = number, %error, "cannot resolve a shard's replicas; keeping those known");
                        found.extend(known.iter().map(|(replica, _)| replica.clone()));
                    }
                }
            }
            found.sort();
            found.dedup();
            let mut known_now: Vec<&String> = known.iter().map(|(replica, _)| replica).collect();
            known_now.sort();
            if known_now == found.iter().collect::<Vec<_>>() {
                continue;
            }
            let mut clients = Vec::with_capacity(found.len());
            for replica in found {
                let existing = known
                    .iter()
                    .find(|(known, _)| *known == replica)
                    .map(|(_, client)| client.clone());
                match existing {
                    Some(client) => clients.push((replica, client)),
                    None => match client(number, &replica, self.ca_pem.as_deref()) {
                        Ok(client) => clients.push((replica, client)),
                        Err(error) => {
                            tracing::warn!(shard = number, %replica, %error, "a discovered replica is unusable")
                        }
                    },
                }
            }
            tracing::info!(
                shard = number,
                replicas = ?clients.iter().map(|(replica, _)| replica.as_str()).collect::<Vec<_>>(),
                "shard replicas changed"
            );
            shard.replicas.replace(clients);
        }
    }

    /// Refreshes the DNS-named replicas every `router.dns_refresh_secs` until `shutdown`.
    pub async fn refresh_until(&self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.dns_refresh);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => self.refresh().await,
            }
        }
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are none (never, once connected).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// `call` answered by one replica of `shard`: the replica's address and its answer. An
    /// answer from a server that says it serves another shard counts as that replica being
    /// unavailable (see `shard_header`).
    pub(crate) async fn ask<T, F, Fut>(&self, shard: usize, mut call: F) -> Result<(String, T), ServiceError>
    where
        F: FnMut(ShardClient) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let shards = self.shards.len();
        let checked = |client| {
            let answer = call(client);
            async move {
                let answer = answer.await?;
                shard_header::check(shard, shards, answer.metadata())?;
                Ok(answer.into_inner())
            }
        };
        match self.shards[shard].replicas.call(checked).await {
            Ok(answered) => Ok(answered),
            Err(ReplicasError::Refused { replica, status }) => Err(ServiceError::ShardRefused {
                shard,
                replica,
                code: status.code(),
                message: status.message().to_owned(),
            }),
            Err(ReplicasError::NoneAnswered(failures)) => Err(ServiceError::ShardUnavailable { shard, failures }),
        }
    }

    /// `call` (given the shard's number) answered by one replica of every shard, in shard
    /// order; the first shard to fail fails the whole (the other calls are dropped).
    pub(crate) async fn ask_every<T, F, Fut>(&self, call: F) -> Result<Vec<(String, T)>, ServiceError>
    where
        F: Fn(usize, ShardClient) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let call = &call;
        futures::future::try_join_all(
            (0..self.shards.len()).map(|shard| self.ask(shard, move |client| call(shard, client))),
        )
        .await
    }

    /// Whether `partition` of the faces topic is read by `shard` (p mod N = i).
    pub(crate) fn reads(&self, shard: usize, partition: i32) -> bool {
        usize::try_from(partition).is_ok_and(|partition| partition % self.shards.len() == shard)
    }
}

/// A client of the replica at `replica`, for shard `shard`.
fn client(shard: usize, replica: &str, ca_pem: Option<&[u8]>) -> Result<ShardClient, ServerError> {
    let channel = lazy_channel(replica, ca_pem)
        .map_err(|error| ServerError::InvalidConfig(format!("router.shards[{shard}]: replica {replica:?}: {error}")))?;
    Ok(shard_client(channel))
}

/// A FaceSearch client over `channel`, taking answers up to [`MAX_SHARD_ANSWER_BYTES`].
fn shard_client(channel: Channel) -> ShardClient {
    FaceSearchClient::new(channel).max_decoding_message_size(MAX_SHARD_ANSWER_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dns_name_stands_for_the_addresses_it_resolves_to() {
        let config = RouterConfig {
            shards: vec![vec!["dns:localhost:7051".into()], vec!["http://10.0.0.1:7051".into()]],
            ..RouterConfig::default()
        };
        let shards = ShardSet::connect(&config).expect("a valid list");
        assert!(shards.discovers());
        assert!(shards.shards[0].replicas.servers().is_empty(), "nothing resolved yet");
        shards.refresh().await;
        let found: Vec<String> = shards.shards[0]
            .replicas
            .servers()
            .iter()
            .map(|(replica, _)| replica.clone())
            .collect();
        assert!(found.contains(&"http://127.0.0.1:7051".to_owned()), "{found:?}");
        let fixed = shards.shards[1].replicas.servers();
        assert_eq!(fixed.len(), 1);
        assert_eq!(fixed[0].0, "http://10.0.0.1:7051");
    }
}
