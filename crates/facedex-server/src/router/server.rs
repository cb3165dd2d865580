//! Runs a router: FaceSearch over the shards (behind the same optional tokens as an indexer's),
//! health and reflection on one port, optional TLS.

use std::sync::Arc;

use facedex_proto::face_search_server::FaceSearchServer;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::service::interceptor::InterceptedService;

use crate::access::{Access, AccessTokens};
use crate::config::ServerConfig;
use crate::router::service::RouterService;
use crate::router::shards::ShardSet;
use crate::search::server::{BoundServer, ServerError, reflection, server_builder};

/// Serves FaceSearch over `shards` on `bound` until `shutdown` is cancelled (discovered
/// shards are kept up to date meanwhile, for every holder of `shards`).
pub async fn serve_router(
    bound: BoundServer,
    shards: Arc<ShardSet>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    config.validate().map_err(ServerError::InvalidConfig)?;
    let tokens = AccessTokens::from_config(&config)?;
    let gate = tokens.clone();
    if shards.discovers() {
        // The first answers need replicas: resolve before serving, then keep up.
        shards.refresh().await;
        let refreshing = Arc::clone(&shards);
        let until = shutdown.clone();
        tokio::spawn(async move { refreshing.refresh_until(until).await });
    }
    let service = RouterService::new(shards, &config).with_tokens(tokens);
    // As on an indexer: a query photo somewhat over the limit reaches the handler, which says
    // which setting refused it.
    let max_message_bytes = config.max_image_bytes.saturating_mul(2).saturating_add(1024 * 1024);
    let face_search = InterceptedService::new(
        FaceSearchServer::new(service).max_decoding_message_size(max_message_bytes),
        move |request: Request<()>| {
            gate.authorize(request.metadata(), Access::Read, "FaceSearch")
                .map(|()| request)
        },
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<FaceSearchServer<RouterService>>().await;
    tracing::info!(addr = %bound.local_addr(), tls = config.tls.is_some(), "serving FaceSearch as a router");
    server_builder(config.tls.as_ref())?
        .layer(crate::undecodable::layer())
        .add_service(face_search)
        .add_service(health_service)
        .add_service(reflection()?)
        .serve_with_incoming_shutdown(bound.incoming(), shutdown.cancelled_owned())
        .await?;
    Ok(())
}
