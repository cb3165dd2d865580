//! [`ShardSet`]: the index shards a router fans out to, each the [`Replicas`] of the indexers
//! serving it. A read asks one replica of every shard at once; a replica that is down, busy or
//! slower than `router.try_timeout_ms` is passed over for the next one of its shard, and when
//! none of a shard's replicas answers, the read fails UNAVAILABLE, naming the shard and what
//! each replica did. With `router.hedge`, a read slower than the shard's usual is also sent to
//! a second replica ([`Hedging`]).

use std::time::Duration;

use facedex_proto::face_search_client::FaceSearchClient;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::config::RouterConfig;
use crate::error::ServiceError;
use crate::replicas::{Hedging, Replicas, ReplicasError, lazy_channel, read_ca};
use crate::search::server::ServerError;

/// A client of one indexer.
pub(crate) type ShardClient = FaceSearchClient<Channel>;

/// The largest answer taken from one replica: a photo query's results for many faces at the
/// largest limit.
const MAX_SHARD_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The shards, in shard order.
pub struct ShardSet {
    shards: Vec<Replicas<ShardClient>>,
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

impl ShardSet {
    /// Lazy connections to every replica of `config.shards`: a replica that is down now is
    /// tried again at each call. Runs inside the Tokio runtime that will drive them.
    pub fn connect(config: &RouterConfig) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::InvalidConfig)?;
        let ca_pem = read_ca(config.ca_cert_path.as_deref())?;
        let try_timeout = (config.try_timeout_ms > 0).then(|| Duration::from_millis(config.try_timeout_ms));
        let mut shards = Vec::with_capacity(config.shards.len());
        for (shard, replicas) in config.shards.iter().enumerate() {
            let mut clients = Vec::with_capacity(replicas.len());
            for replica in replicas {
                let channel = lazy_channel(replica, ca_pem.as_deref()).map_err(|error| {
                    ServerError::InvalidConfig(format!("router.shards[{shard}]: replica {replica:?}: {error}"))
                })?;
                let client = FaceSearchClient::new(channel).max_decoding_message_size(MAX_SHARD_ANSWER_BYTES);
                clients.push((replica.clone(), client));
            }
            let replicas = Replicas::new(clients, try_timeout);
            shards.push(match config.hedge {
                true => replicas.with_hedging(Hedging {
                    min_delay: Duration::from_millis(config.hedge_min_delay_ms),
                }),
                false => replicas,
            });
        }
        Ok(Self { shards })
    }

    /// How many shards there are.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether there are none (never, once connected).
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// `call` answered by one replica of `shard`: the replica's address and its answer.
    pub(crate) async fn ask<T, F, Fut>(&self, shard: usize, call: F) -> Result<(String, T), ServiceError>
    where
        F: FnMut(ShardClient) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        match self.shards[shard].call(call).await {
            Ok((replica, answer)) => Ok((replica.to_owned(), answer)),
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
        Fut: Future<Output = Result<T, Status>>,
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
