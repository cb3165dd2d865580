//! `facedex embed`'s gRPC service: detection, embedding and the attribute models for ingest
//! workers, every caller's
//! requests batched together by the in-process [`LocalModels`]. Inputs are checked before they
//! reach a model; health and reflection share the port.

use std::net::SocketAddr;
use std::sync::Arc;

use facedex_pipeline::{FaceModels, LocalModels};
use facedex_proto::embed::embedder_server::{Embedder, EmbedderServer};
use facedex_proto::embed::{
    AttributeModel, AttributesRequest, AttributesResponse, DetectRequest, DetectResponse, EmbedRequest, EmbedResponse,
    GetModelInfoRequest, ModelInfo, PhotoDetections,
};
use facedex_proto::pipeline_conversions::chip_crop_to_proto;
use facedex_proto::trait_conversions::attributes_to_proto;
use facedex_proto::{DetectedFace, Embedding};
use facedex_vision::LetterboxedPhoto;
use facedex_vision::align::CROP_BYTES;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::access::{Access, AccessTokens};
use crate::config::EmbedConfig;
use crate::error::ServiceError;
use crate::metrics::observed;
use crate::search::server::{ServerError, reflection, server_builder};

/// The `service` label of this service's request metrics.
const SERVICE: &str = "Embedder";

/// Photos one Detect call may carry.
pub const MAX_DETECT_PHOTOS: usize = 64;
/// Crops one Embed call may carry.
pub const MAX_EMBED_CROPS: usize = 1024;
/// The largest request: a full batch of 640×640 photos or crops, with room to spare.
pub const MAX_EMBED_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// The Embedder service over models in this process.
pub struct EmbedderService {
    models: Arc<LocalModels>,
    /// `embed.token`: every call needs it when set.
    tokens: AccessTokens,
}

impl EmbedderService {
    /// A service answering with `models`, open to every caller.
    pub fn new(models: Arc<LocalModels>) -> Self {
        Self {
            models,
            tokens: AccessTokens::default(),
        }
    }
}

#[tonic::async_trait]
impl Embedder for EmbedderService {
    async fn detect(&self, request: Request<DetectRequest>) -> Result<Response<DetectResponse>, Status> {
        observed(SERVICE, "Detect", async move {
            self.tokens.authorize(request.metadata(), Access::Read, "Detect")?;
            let photos = request.into_inner().photos;
            if photos.is_empty() || photos.len() > MAX_DETECT_PHOTOS {
                return Err(Status::invalid_argument(format!(
                    "a Detect call carries 1 to {MAX_DETECT_PHOTOS} photos, got {}",
                    photos.len()
                )));
            }
            let photos: Vec<LetterboxedPhoto> = photos.into_iter().map(LetterboxedPhoto::from).collect();
            for (index, photo) in photos.iter().enumerate() {
                photo
                    .check()
                    .map_err(|reason| Status::invalid_argument(format!("photos[{index}]: {reason}")))?;
            }
            let detected = self.models.detect(photos).await.map_err(ServiceError::from)?;
            Ok(Response::new(DetectResponse {
                photos: detected
                    .iter()
                    .map(|faces| PhotoDetections {
                        faces: faces.iter().map(DetectedFace::from).collect(),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn embed(&self, request: Request<EmbedRequest>) -> Result<Response<EmbedResponse>, Status> {
        observed(SERVICE, "Embed", async move {
            self.tokens.authorize(request.metadata(), Access::Read, "Embed")?;
            let crops = request.into_inner().crops;
            let count = crops.len() / CROP_BYTES;
            if crops.is_empty() || !crops.len().is_multiple_of(CROP_BYTES) || count > MAX_EMBED_CROPS {
                return Err(Status::invalid_argument(format!(
                    "crops must hold 1 to {MAX_EMBED_CROPS} aligned faces of {CROP_BYTES} bytes (112×112 RGB) each, got {} bytes",
                    crops.len()
                )));
            }
            let embeddings = self.models.embed(crops).await.map_err(ServiceError::from)?;
            Ok(Response::new(EmbedResponse {
                embeddings: embeddings.into_iter().map(|values| Embedding { values }).collect(),
                model_id: self.models.info().model_id.clone(),
            }))
        })
        .await
    }

    async fn get_model_info(&self, request: Request<GetModelInfoRequest>) -> Result<Response<ModelInfo>, Status> {
        observed(SERVICE, "GetModelInfo", async move {
            self.tokens
                .authorize(request.metadata(), Access::Read, "GetModelInfo")?;
            let info = self.models.info();
            Ok(Response::new(ModelInfo {
                model_id: info.model_id.clone(),
                detector_input_px: info.detector_input_px,
                fit_input_to_photo: info.fit_input_to_photo,
                execution_provider: info.execution_provider.clone(),
                max_detect_batch: info.max_detect_batch as u32,
                max_embed_batch: info.max_embed_batch as u32,
                attribute_models: info
                    .attribute_models
                    .iter()
                    .map(|model| AttributeModel {
                        name: model.name.clone(),
                        crop: Some(chip_crop_to_proto(&model.crop)),
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn run_attributes(
        &self,
        request: Request<AttributesRequest>,
    ) -> Result<Response<AttributesResponse>, Status> {
        observed(SERVICE, "RunAttributes", async move {
            self.tokens
                .authorize(request.metadata(), Access::Read, "RunAttributes")?;
            let AttributesRequest { model, chips } = request.into_inner();
            let models = &self.models.info().attribute_models;
            let Some(spec) = models.get(model as usize) else {
                return Err(Status::invalid_argument(format!(
                    "model {model}: this worker runs {} attribute models",
                    models.len()
                )));
            };
            let size = spec.crop.size_px();
            let chip_bytes = spec.crop.chip_bytes();
            let count = chips.len() / chip_bytes;
            if chips.is_empty() || !chips.len().is_multiple_of(chip_bytes) || count > MAX_EMBED_CROPS {
                return Err(Status::invalid_argument(format!(
                    "chips must hold 1 to {MAX_EMBED_CROPS} chips of {chip_bytes} bytes ({size}×{size} RGB) for {}, got {} bytes",
                    spec.name,
                    chips.len()
                )));
            }
            let attributes = self
                .models
                .attributes(model as usize, chips)
                .await
                .map_err(ServiceError::from)?;
            Ok(Response::new(AttributesResponse {
                attributes: attributes_to_proto(&attributes),
            }))
        })
        .await
    }
}

/// Serves the Embedder service (with health and reflection) on `listener` until `shutdown`.
pub async fn serve_embedder(
    listener: TcpListener,
    models: Arc<LocalModels>,
    config: &EmbedConfig,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let tokens = AccessTokens::one(config.token.as_deref(), config.token_file.as_deref(), "embed.token")?;
    // Checked before tonic decodes a message (up to MAX_EMBED_MESSAGE_BYTES), and again in
    // each handler, where the refusal is counted.
    let gate = tokens.clone();
    let service = EmbedderService { models, tokens };
    let service = InterceptedService::new(
        EmbedderServer::new(service)
            .max_decoding_message_size(MAX_EMBED_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_EMBED_MESSAGE_BYTES),
        move |request: Request<()>| {
            gate.authorize(request.metadata(), Access::Read, "Embedder")
                .map(|()| request)
        },
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(
            <EmbedderServer<EmbedderService> as NamedService>::NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let reflection = reflection()?;
    let address: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?address, tls = config.tls.is_some(), "serving Embedder");
    server_builder(config.tls.as_ref())?
        .layer(crate::undecodable::layer())
        .add_service(service)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await?;
    Ok(())
}
