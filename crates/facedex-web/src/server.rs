//! Binding and serving the console: plain HTTP, or HTTPS with the server's own certificate
//! (`server.tls`), until the shutdown token is cancelled.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use facedex_pipeline::{ArchiveConfig, ArchiveRegistry};
use facedex_proto::face_search_server::FaceSearch;
use facedex_proto::people_server::People;
use facedex_server::{AccessTokens, ApiServices, TlsConfig};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use crate::cache::ThumbnailCache;
use crate::config::WebConfig;
use crate::error::WebError;
use crate::pictures::{IndexedPhoto, QUEUED_PHOTOS, ThumbnailQueue, prerender};
use crate::progress::{RunProgress, StagesReport};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The gRPC handlers the console calls, in process.
#[derive(Clone)]
pub struct ConsoleHandlers {
    /// FaceSearch: an index's (`serve`, `indexer`, `index`) or a router's.
    pub face_search: Arc<dyn FaceSearch>,
    /// People; a router has none.
    pub people: Option<Arc<dyn People>>,
    /// The tokens both check, for what the console serves itself (pictures, the run).
    pub tokens: AccessTokens,
    /// The server has the models: photos can be searched.
    pub searches_photos: bool,
    /// The similarity floor of a search that sets none (`server.default_min_score`).
    pub default_min_score: f32,
}

impl From<&ApiServices> for ConsoleHandlers {
    fn from(services: &ApiServices) -> Self {
        Self {
            face_search: Arc::new(services.face_search.clone()),
            people: Some(Arc::new(services.people.clone())),
            tokens: services.tokens.clone(),
            searches_photos: services.face_search.searches_photos(),
            default_min_score: services.face_search.default_min_score(),
        }
    }
}

/// What the console is made of.
pub struct ConsoleParts {
    /// The handlers it calls.
    pub handlers: ConsoleHandlers,
    /// How photos are read from their archives (object-store options, allowed roots, size).
    pub archive: ArchiveConfig,
    /// `[web]`.
    pub web: WebConfig,
    /// The largest query photo accepted, in bytes (`server.max_image_bytes`).
    pub max_upload_bytes: usize,
    /// The most pixels a photo may have (`vision.max_image_pixels`).
    pub max_image_pixels: u64,
    /// The run in this process, for the pipeline page.
    pub run: Option<Arc<RunProgress>>,
    /// The distributed pipeline's stages, for the pipeline page of an indexer.
    pub stages: Option<Arc<dyn StagesReport>>,
}

/// Everything a request needs.
pub(crate) struct ConsoleState {
    pub(crate) handlers: ConsoleHandlers,
    pub(crate) archives: ArchiveRegistry,
    pub(crate) cache: ThumbnailCache,
    /// One permit per thumbnail or photo view being rendered (`web.max_concurrent_renders`).
    pub(crate) renders: Semaphore,
    pub(crate) run: Option<Arc<RunProgress>>,
    pub(crate) stages: Option<Arc<dyn StagesReport>>,
    pub(crate) config: WebConfig,
    pub(crate) max_upload_bytes: usize,
    pub(crate) max_image_pixels: u64,
    /// Served over TLS: cookies are `Secure`.
    pub(crate) secure: bool,
}

/// The console, ready to serve.
pub struct Console {
    parts: ConsoleParts,
    queue: ThumbnailQueue,
    queued: mpsc::Receiver<IndexedPhoto>,
}

impl Console {
    /// The console over `parts`; the settings are checked when it is served.
    pub fn new(parts: ConsoleParts) -> Self {
        let (sender, queued) = mpsc::channel(QUEUED_PHOTOS);
        Self {
            parts,
            queue: ThumbnailQueue(sender),
            queued,
        }
    }

    /// Where a run hands over the photos it indexed, for their thumbnails to be rendered
    /// ahead of any request; the console renders what is queued until every queue is dropped.
    pub fn thumbnail_queue(&self) -> ThumbnailQueue {
        self.queue.clone()
    }
}

/// A bound, not yet serving console.
pub struct BoundConsole {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
}

impl BoundConsole {
    /// Binds `addr`, with `tls`'s certificate and key when given.
    pub async fn bind(addr: SocketAddr, tls: Option<&TlsConfig>) -> Result<Self, WebError> {
        let bind_error = |source| WebError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let tls = tls.map(tls_acceptor).transpose()?;
        Ok(Self {
            listener,
            local_addr,
            tls,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR/` or `https://ADDR/`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", self.local_addr)
    }

    /// Serves `console` until `shutdown` is cancelled; `data_dir` holds the default
    /// thumbnail cache.
    pub async fn serve(self, console: Console, data_dir: &Path, shutdown: CancellationToken) -> Result<(), WebError> {
        let Console { parts, queue, queued } = console;
        drop(queue);
        parts.web.validate().map_err(WebError::InvalidConfig)?;
        let cache_dir = parts
            .web
            .thumbnail_cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("thumbnails"));
        let cache = ThumbnailCache::open(&cache_dir, parts.web.thumbnail_cache_max_bytes).map_err(|source| {
            WebError::Cache {
                dir: cache_dir.clone(),
                source,
            }
        })?;
        let state = Arc::new(ConsoleState {
            handlers: parts.handlers,
            archives: ArchiveRegistry::new(parts.archive),
            cache,
            renders: Semaphore::new(parts.web.max_concurrent_renders),
            run: parts.run,
            stages: parts.stages,
            max_upload_bytes: parts.max_upload_bytes,
            max_image_pixels: parts.max_image_pixels,
            config: parts.web,
            secure: self.tls.is_some(),
        });
        let prerendering = tokio::spawn(prerender(Arc::clone(&state), queued));
        let router = crate::api::router(state);
        tracing::info!(url = %self.url(), "serving the web console");
        let served = match self.tls {
            None => axum::serve(self.listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(|source| WebError::Bind {
                    addr: self.local_addr,
                    source,
                }),
            Some(acceptor) => {
                serve_tls(self.listener, acceptor, router, shutdown).await;
                Ok(())
            }
        };
        // What a finished run queued is rendered before the console ends.
        prerendering
            .await
            .map_err(|error| WebError::Internal(format!("the thumbnail renderer failed: {error}")))?;
        served
    }
}

/// Accepts TLS connections and serves HTTP/1.1 on each until `shutdown`.
async fn serve_tls(listener: TcpListener, acceptor: TlsAcceptor, router: axum::Router, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(%error, "web console: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIME_LIMIT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "web console: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// A TLS acceptor with `tls`'s PEM certificate chain and key, offering HTTP/1.1.
fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, WebError> {
    let tls_error = |path: &PathBuf, reason: String| WebError::Tls {
        path: path.clone(),
        reason,
    };
    let read = |path: &PathBuf| std::fs::read(path).map_err(|error| tls_error(path, error.to_string()));
    let certificates = rustls_pemfile::certs(&mut read(&tls.cert_path)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| tls_error(&tls.cert_path, error.to_string()))?;
    if certificates.is_empty() {
        return Err(tls_error(&tls.cert_path, "no PEM certificate in it".into()));
    }
    let key = rustls_pemfile::private_key(&mut read(&tls.key_path)?.as_slice())
        .map_err(|error| tls_error(&tls.key_path, error.to_string()))?
        .ok_or_else(|| tls_error(&tls.key_path, "no PEM private key in it".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| tls_error(&tls.cert_path, error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| tls_error(&tls.cert_path, error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
