//! Runs the gRPC server: FaceSearch and People (behind optional bearer-token auth), health and
//! reflection on one port, optional TLS, periodic snapshots, and a final snapshot on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use facedex_index::FaceStore;
use facedex_proto::FILE_DESCRIPTOR_SET;
use facedex_proto::face_search_server::FaceSearchServer;
use facedex_proto::people_server::PeopleServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use facedex_pipeline::PhotoAnalyzer;

use crate::access::{Access, AccessTokens};
use crate::config::{ServerConfig, TlsConfig};
use crate::people::editor::{PeopleEditor, StoreEditor};
use crate::people::service::PeopleService;
use crate::search::deleter::FaceDeleter;
use crate::search::service::FaceSearchService;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read TLS {what} {path}: {source}")]
    TlsFile {
        /// "certificate" or "key".
        what: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token settings contradict each other or hold a bad token.
    #[error("server tokens: {0}")]
    Tokens(#[from] crate::access::TokenProblem),
    /// A setting is out of its range.
    #[error("{0}")]
    InvalidConfig(String),
    /// A token file could not be read.
    #[error("cannot read {setting}_file {path}: {source}")]
    TokenFile {
        /// `server.read_token`, `server.write_token` or `embed.token`.
        setting: &'static str,
        /// Its path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The transport failed (TLS setup, accept loop).
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor set.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The handlers of one server, for its gRPC port and its web console alike.
#[derive(Clone)]
pub struct ApiServices {
    /// FaceSearch.
    pub face_search: FaceSearchService,
    /// People.
    pub people: PeopleService,
    /// The tokens both check.
    pub tokens: AccessTokens,
}

impl ApiServices {
    /// The handlers over `store`, checking `config`'s tokens; edits and deletions go to
    /// `people_editor` and `face_deleter`, or to the store itself when unset.
    pub fn new(
        store: Arc<FaceStore>,
        analyzer: Option<Arc<PhotoAnalyzer>>,
        config: &ServerConfig,
        people_editor: Option<Arc<dyn PeopleEditor>>,
        face_deleter: Option<Arc<dyn FaceDeleter>>,
    ) -> Result<Self, ServerError> {
        config.validate().map_err(ServerError::InvalidConfig)?;
        let tokens = AccessTokens::from_config(config)?;
        let mut face_search = FaceSearchService::new(Arc::clone(&store), analyzer, config).with_tokens(tokens.clone());
        if let Some(deleter) = face_deleter {
            face_search = face_search.with_deleter(deleter);
        }
        let editor = people_editor.unwrap_or_else(|| Arc::new(StoreEditor::new(Arc::clone(&store))));
        let people = PeopleService::new(store, editor, face_search.read_time_limit, tokens.clone());
        Ok(Self {
            face_search,
            people,
            tokens,
        })
    }
}

/// A bound, not yet running server: bind first to learn the port (`listen_addr` may use 0).
pub struct BoundServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    /// Where People edits go; the store itself when unset.
    people_editor: Option<Arc<dyn PeopleEditor>>,
    /// Where deletions go; the store itself when unset.
    face_deleter: Option<Arc<dyn FaceDeleter>>,
    /// The shard this server's index serves, named on every answer (`INDEX/COUNT`).
    served_shard: Option<http::HeaderValue>,
}

impl BoundServer {
    /// Binds `config.listen_addr`.
    pub async fn bind(config: &ServerConfig) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind {
            addr: config.listen_addr,
            source,
        };
        let listener = TcpListener::bind(config.listen_addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            people_editor: None,
            face_deleter: None,
            served_shard: None,
        })
    }

    /// Sends People edits to `editor` (an indexer's log of edits) instead of the store.
    pub fn with_people_editor(self, editor: Arc<dyn PeopleEditor>) -> Self {
        Self {
            people_editor: Some(editor),
            ..self
        }
    }

    /// Names shard `index` of `count` on every answer (an indexer's `--shard`), so that a router
    /// listing this server under another shard passes it over.
    pub fn with_served_shard(self, index: u32, count: u32) -> Self {
        Self {
            served_shard: Some(crate::shard_header::value(index, count)),
            ..self
        }
    }

    /// Sends deletions to `deleter` (an indexer's faces topic) instead of the store.
    pub fn with_face_deleter(self, deleter: Arc<dyn FaceDeleter>) -> Self {
        Self {
            face_deleter: Some(deleter),
            ..self
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight calls and writes a final
    /// snapshot if anything changed since the last one.
    pub async fn serve(
        self,
        store: Arc<FaceStore>,
        analyzer: Option<Arc<PhotoAnalyzer>>,
        config: ServerConfig,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let services = self.services(Arc::clone(&store), analyzer, &config)?;
        self.serve_services(services, store, config, shutdown).await
    }

    /// The FaceSearch and People handlers this server will run, with its tokens, editor and
    /// deleter: the web console calls the same ones.
    pub fn services(
        &self,
        store: Arc<FaceStore>,
        analyzer: Option<Arc<PhotoAnalyzer>>,
        config: &ServerConfig,
    ) -> Result<ApiServices, ServerError> {
        ApiServices::new(
            store,
            analyzer,
            config,
            self.people_editor.clone(),
            self.face_deleter.clone(),
        )
    }

    /// Serves `services` (from [`Self::services`]) as [`Self::serve`] does.
    pub async fn serve_services(
        self,
        services: ApiServices,
        store: Arc<FaceStore>,
        config: ServerConfig,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let ApiServices {
            face_search: service,
            people,
            tokens,
        } = services;
        let (guarded, gate) = (tokens.any(), tokens);
        // Twice the photo limit: a photo somewhat over it still reaches the handler, which says
        // which setting refused it; a message beyond this is refused by tonic (OUT_OF_RANGE,
        // naming its limit) before it is buffered whole.
        let max_message_bytes = config.max_image_bytes.saturating_mul(2).saturating_add(1024 * 1024);
        // The read-level check runs again here, before tonic decodes a message of up to
        // `max_message_bytes`: a caller without a valid token costs no decoding. Writes are
        // checked per method in the handlers.
        let face_search_gate = gate.clone();
        let face_search = InterceptedService::new(
            FaceSearchServer::new(service).max_decoding_message_size(max_message_bytes),
            move |request: Request<()>| {
                face_search_gate
                    .authorize(request.metadata(), Access::Read, "FaceSearch")
                    .map(|()| request)
            },
        );
        let people_gate = gate.clone();
        let people = InterceptedService::new(PeopleServer::new(people), move |request: Request<()>| {
            people_gate
                .authorize(request.metadata(), Access::Read, "People")
                .map(|()| request)
        });
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<FaceSearchServer<FaceSearchService>>().await;
        health.set_serving::<PeopleServer<PeopleService>>().await;
        let reflection = reflection()?;

        let builder = server_builder(config.tls.as_ref())?;
        let snapshots = tokio::spawn(snapshot_periodically(
            Arc::clone(&store),
            config.snapshot_interval_secs,
            shutdown.clone(),
        ));
        tracing::info!(addr = %self.local_addr, tls = config.tls.is_some(), auth = guarded, "serving FaceSearch");
        let served = builder
            .layer(crate::undecodable::layer())
            .layer(crate::shard_header::layer(self.served_shard.clone()))
            .add_service(face_search)
            .add_service(people)
            .add_service(health_service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(self.incoming(), shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        let _ = snapshots.await;
        if store.has_unsnapshotted_changes() {
            match tokio::task::spawn_blocking(move || store.snapshot()).await {
                Ok(Ok(snapshot)) => tracing::info!(generation = snapshot.generation, "final snapshot written"),
                Ok(Err(error)) => tracing::error!(%error, "final snapshot failed"),
                Err(error) => tracing::error!(%error, "final snapshot task failed"),
            }
        }
        Ok(served?)
    }
}

impl BoundServer {
    /// The connections to the bound address, with TCP_NODELAY: without it, Nagle's algorithm
    /// and delayed ACKs hold every small response for ~40 ms.
    pub(crate) fn incoming(self) -> TcpIncoming {
        TcpIncoming::from(self.listener).with_nodelay(Some(true))
    }
}

/// gRPC reflection over facedex's services and health, which every facedex server offers
/// beside its own services.
pub(crate) fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    ServerError,
> {
    Ok(tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?)
}

/// Writes a snapshot every `interval_secs` when something changed.
async fn snapshot_periodically(store: Arc<FaceStore>, interval_secs: u64, shutdown: CancellationToken) {
    if interval_secs == 0 {
        return;
    }
    let mut ticks = tokio::time::interval(Duration::from_secs(interval_secs));
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if !store.has_unsnapshotted_changes() {
            continue;
        }
        let store = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || store.snapshot()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "periodic snapshot failed"),
            Err(error) => tracing::error!(%error, "periodic snapshot task failed"),
        }
    }
}

/// A gRPC server builder, serving TLS with `tls`'s certificate and key when given.
pub(crate) fn server_builder(tls: Option<&TlsConfig>) -> Result<Server, ServerError> {
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        let read = |what, path: &std::path::PathBuf| {
            std::fs::read(path).map_err(|source| ServerError::TlsFile {
                what,
                path: path.clone(),
                source,
            })
        };
        let identity = Identity::from_pem(read("certificate", &tls.cert_path)?, read("key", &tls.key_path)?);
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    Ok(builder)
}
