//! Settings of the search server (`[server]` in the config file).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the gRPC server listens, authenticates and snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to serve gRPC on (FaceSearch, health and reflection share it).
    pub listen_addr: SocketAddr,
    /// The largest query photo accepted, in bytes.
    pub max_image_bytes: usize,
    /// The most searches one SearchBatch may carry.
    pub max_batch_searches: usize,
    /// How many searches run at once; the others wait their turn in arrival order. 0 means
    /// one per CPU core: a search is pure CPU work, and more at once than cores only makes the
    /// OS time-slice them, which stretches every search's latency instead of queueing the
    /// surplus (Qdrant sizes its search pool the same way).
    pub max_concurrent_searches: usize,
    /// How many photo queries are between decoding and their last model run at once; the
    /// others wait in arrival order. Each holds its decoded photo (up to
    /// `vision.max_image_pixels` × 3 bytes), so this bounds their memory; more than one lets
    /// the models batch the faces of concurrent queries together.
    pub max_concurrent_photo_queries: usize,
    /// The longest a read request (Search, SearchBatch, GetFace, GetIndexInfo) may run before
    /// it is answered DEADLINE_EXCEEDED; 0 sets no limit. A client's own gRPC deadline
    /// (`grpc-timeout`) is honoured as well, whichever is shorter. Writes (Delete,
    /// CreateSnapshot) are not cut short by the server: once started they finish, so that
    /// an answer never hides whether they happened.
    pub request_timeout_ms: u64,
    /// Write a snapshot this often when something changed; 0 turns periodic snapshots off
    /// (one is still written on shutdown).
    pub snapshot_interval_secs: u64,
    /// One token for every FaceSearch and People call (`authorization: Bearer <token>`); health and
    /// reflection stay open for probes and tooling. Or split them with the two below.
    pub auth_token: Option<String>,
    /// The token reads (Search, SearchBatch, GetFace, GetIndexInfo, ListPeople, GetPerson)
    /// need; the write token is accepted too. Needs `write_token` as well.
    pub read_token: Option<String>,
    /// `read_token` from a file (trailing newline dropped), for secrets mounted as files.
    pub read_token_file: Option<PathBuf>,
    /// The token writes (Delete, CreateSnapshot, the people edits, Recluster) need; a read
    /// token gets PERMISSION_DENIED.
    pub write_token: Option<String>,
    /// `write_token` from a file.
    pub write_token_file: Option<PathBuf>,
    /// Serve TLS with this certificate and key (PEM) instead of plaintext.
    pub tls: Option<TlsConfig>,
    /// Hits below this cosine similarity are left out of a search that sets no `min_score`
    /// of its own (a request sees every hit with `min_score` = -1). The README's "How sure is
    /// a match" gives the evidence for the default.
    pub default_min_score: f32,
}

impl ServerConfig {
    /// Checks the settings that have a range.
    pub fn validate(&self) -> Result<(), String> {
        if !(-1.0..=1.0).contains(&self.default_min_score) {
            return Err(format!(
                "server.default_min_score must be a cosine similarity between -1 and 1, got {}",
                self.default_min_score
            ));
        }
        Ok(())
    }

    /// [`ServerConfig::max_concurrent_searches`] with 0 resolved to the number of cores.
    pub fn concurrent_searches(&self) -> usize {
        match self.max_concurrent_searches {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            limit => limit,
        }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert_path: PathBuf,
    /// The private key, PEM.
    pub key_path: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7051)),
            max_image_bytes: 20 * 1024 * 1024,
            max_batch_searches: 64,
            max_concurrent_searches: 0,
            max_concurrent_photo_queries: 8,
            request_timeout_ms: 30_000,
            snapshot_interval_secs: 300,
            auth_token: None,
            read_token: None,
            read_token_file: None,
            write_token: None,
            write_token_file: None,
            tls: None,
            default_min_score: DEFAULT_MIN_SCORE,
        }
    }
}

/// [`ServerConfig::default_min_score`]'s default: InsightFace's verification threshold for
/// its ArcFace models (squared L2 distance 1.24 between unit vectors, cosine 0.38).
pub const DEFAULT_MIN_SCORE: f32 = 0.38;

/// The embed service and how ingest workers reach it (`[embed]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// Address `facedex embed` listens on.
    pub listen_addr: SocketAddr,
    /// Embed workers an ingest worker calls, round robin (`http://host:port`, or `https://`
    /// for workers serving TLS).
    pub endpoints: Vec<String>,
    /// The token every Embedder call must carry (`authorization: Bearer …`): `facedex embed`
    /// checks it, ingest workers send it. Unset: the service is open (a private network only).
    pub token: Option<String>,
    /// `token` from a file (trailing newline dropped).
    pub token_file: Option<PathBuf>,
    /// `facedex embed` serves TLS with this certificate and key.
    pub tls: Option<TlsConfig>,
    /// Ingest workers verify `https://` embed workers with this CA certificate (PEM) instead
    /// of the system's roots.
    pub ca_cert_path: Option<PathBuf>,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7061)),
            endpoints: vec!["http://127.0.0.1:7061".into()],
            token: None,
            token_file: None,
            tls: None,
            ca_cert_path: None,
        }
    }
}

/// How `facedex router` reaches the index shards (`[router]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// The shards in shard order (shard i serves the faces partitions p with p mod N = i), each
    /// the addresses of its replicas (`http://host:port`, or `https://` for indexers serving
    /// TLS), or `dns:HOST:PORT` for every address HOST resolves to (a headless Service).
    pub shards: Vec<Vec<String>>,
    /// Instead of `shards`: indexers to sort into `shard_count` shards by the shard each one
    /// names (`http://host:port`, `https://`, or `dns:HOST:PORT`, e.g. one headless Service over
    /// every indexer pod), looked up again every `dns_refresh_secs`.
    pub discover: Vec<String>,
    /// How many shards the indexers of `discover` form.
    pub shard_count: usize,
    /// The longest one try at one replica may take before the router tries the next replica
    /// of that shard; 0 sets no limit (the request's own time limit still holds).
    pub try_timeout_ms: u64,
    /// Send a read that a replica has not answered within the 95th percentile of the shard's
    /// recent answer times to a second replica as well, and take the first answer: one slow
    /// replica (a snapshot, a long pause) then does not slow every search.
    pub hedge: bool,
    /// The shortest wait before a read is hedged, however fast the shard usually answers.
    pub hedge_min_delay_ms: u64,
    /// How often shards' replicas named by DNS (`dns:HOST:PORT`) are resolved again.
    pub dns_refresh_secs: u64,
    /// Replicas serving `https://` are verified with this CA certificate (PEM) instead of the
    /// system's roots.
    pub ca_cert_path: Option<PathBuf>,
}

/// The most shards a router fans out to, and the most replicas of one shard.
pub const MAX_ROUTER_SHARDS: usize = 1024;
/// See [`MAX_ROUTER_SHARDS`].
pub const MAX_SHARD_REPLICAS: usize = 64;

impl RouterConfig {
    /// Checks that there are shards, each with replicas, within the limits (or indexers to
    /// discover them from).
    pub fn validate(&self) -> Result<(), String> {
        if !self.discover.is_empty() {
            if !self.shards.is_empty() {
                return Err("set router.shards (--shard) or router.discover (--discover), not both".into());
            }
            if self.shard_count == 0 || self.shard_count > MAX_ROUTER_SHARDS {
                return Err(format!(
                    "router.shard_count (--shards) must be 1 to {MAX_ROUTER_SHARDS} with router.discover, got {}",
                    self.shard_count
                ));
            }
            if self.discover.len() > MAX_SHARD_REPLICAS {
                return Err(format!(
                    "router.discover must list at most {MAX_SHARD_REPLICAS} addresses or names, got {}",
                    self.discover.len()
                ));
            }
            return Ok(());
        }
        if self.shards.is_empty() || self.shards.len() > MAX_ROUTER_SHARDS {
            return Err(format!(
                "router.shards must list 1 to {MAX_ROUTER_SHARDS} shards (--shard URL[,URL...] once per shard), got {}",
                self.shards.len()
            ));
        }
        for (shard, replicas) in self.shards.iter().enumerate() {
            if replicas.is_empty() || replicas.len() > MAX_SHARD_REPLICAS {
                return Err(format!(
                    "router.shards[{shard}] must list 1 to {MAX_SHARD_REPLICAS} replica addresses, got {}",
                    replicas.len()
                ));
            }
        }
        Ok(())
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            shards: Vec::new(),
            discover: Vec::new(),
            shard_count: 0,
            try_timeout_ms: 5_000,
            hedge: true,
            hedge_min_delay_ms: 10,
            dns_refresh_secs: 15,
            ca_cert_path: None,
        }
    }
}
