//! [`RemoteModels`]: the pipeline's [`FaceModels`] over `facedex embed` workers. Calls go round
//! robin over the configured endpoints; a worker that is down or overloaded is skipped for the
//! next, and when none answers the failure is transient, so ingest retries with backoff
//! instead of dead-lettering photos for an outage.

use std::sync::Arc;

use facedex_pipeline::{AttributeModelInfo, FaceModels, ModelInfo, PipelineError};
use facedex_proto::embed::embedder_client::EmbedderClient;
use facedex_proto::embed::{
    AttributeModel, AttributesRequest, DetectRequest, EmbedRequest, GetModelInfoRequest, LetterboxedPhoto,
};
use facedex_proto::pipeline_conversions::chip_crop_from_proto;
use facedex_proto::trait_conversions::attributes_from_proto;
use facedex_vision::attributes::FaceAttribute;
use facedex_vision::{DetectedFace, LetterboxedPhoto as DomainPhoto};
use futures::future::BoxFuture;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::access::{TokenProblem, token};
use crate::bearer::BearerToken;
use crate::config::EmbedConfig;
use crate::embed::service::MAX_EMBED_MESSAGE_BYTES;
use crate::replicas::{Replicas, ReplicasError, lazy_channel, read_ca};
use crate::search::server::ServerError;

/// A client of one embed worker, sending the token with every call.
type Client = EmbedderClient<InterceptedService<Channel, BearerToken>>;

/// How an ingest worker reaches the embed workers: the token it presents (`embed.token`) and
/// the CA it verifies `https://` workers with (`embed.ca_cert_path`; the system's roots when
/// unset).
#[derive(Clone, Default)]
pub struct EmbedClientAuth {
    token: BearerToken,
    ca_pem: Option<Vec<u8>>,
}

impl EmbedClientAuth {
    /// The token and CA `config` names, read from their files.
    pub fn from_config(config: &EmbedConfig) -> Result<Self, ServerError> {
        let token = token(config.token.as_deref(), config.token_file.as_deref(), "embed.token")?;
        let token = BearerToken::new(token.as_deref())
            .map_err(|_| ServerError::Tokens(TokenProblem::NotPrintable { setting: "embed.token" }))?;
        let ca_pem = read_ca(config.ca_cert_path.as_deref())?;
        Ok(Self { token, ca_pem })
    }
}

/// Embed workers behind one [`FaceModels`].
pub struct RemoteModels {
    replicas: Replicas<Client>,
    info: ModelInfo,
}

impl RemoteModels {
    /// Connects lazily to every endpoint and asks the first that answers for its model info.
    /// Fails when no endpoint answers, or two answer with different embedding models.
    pub async fn connect(endpoints: &[String], auth: &EmbedClientAuth) -> Result<Arc<Self>, PipelineError> {
        if endpoints.is_empty() {
            return Err(PipelineError::Models {
                reason: "no embed endpoints are configured (embed.endpoints, --embed)".into(),
                transient: false,
            });
        }
        let mut clients = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let channel = lazy_channel(endpoint, auth.ca_pem.as_deref()).map_err(|error| PipelineError::Models {
                reason: format!("embed endpoint {endpoint:?}: {error}"),
                transient: false,
            })?;
            let client = EmbedderClient::with_interceptor(channel, auth.token.clone())
                .max_decoding_message_size(MAX_EMBED_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_EMBED_MESSAGE_BYTES);
            clients.push((endpoint.clone(), client));
        }
        let mut info: Option<ModelInfo> = None;
        let mut last_error = String::new();
        for (endpoint, client) in &clients {
            match client.clone().get_model_info(GetModelInfoRequest {}).await {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    if let Some(known) = &info
                        && known.model_id != answer.model_id
                    {
                        return Err(PipelineError::Models {
                            reason: format!(
                                "embed workers run different models: {} and {} ({endpoint}); one index holds one embedding space",
                                known.model_id, answer.model_id
                            ),
                            transient: false,
                        });
                    }
                    let attribute_models = attribute_models(answer.attribute_models, endpoint)?;
                    if let Some(known) = &info
                        && known.attribute_models != attribute_models
                    {
                        return Err(PipelineError::Models {
                            reason: format!(
                                "embed workers run different attribute models ({endpoint} differs from the first); every worker needs the same vision.attributes"
                            ),
                            transient: false,
                        });
                    }
                    info = Some(ModelInfo {
                        model_id: answer.model_id,
                        detector_input_px: answer.detector_input_px,
                        fit_input_to_photo: answer.fit_input_to_photo,
                        execution_provider: answer.execution_provider,
                        max_detect_batch: answer.max_detect_batch as usize,
                        max_embed_batch: answer.max_embed_batch as usize,
                        attribute_models,
                    });
                }
                Err(status) => last_error = format!("{endpoint}: {}", status.message()),
            }
        }
        let info = info.ok_or(PipelineError::Models {
            reason: format!("no embed worker answered: {last_error}"),
            transient: true,
        })?;
        if info.attribute_models.is_empty() {
            // Not an error (`vision.attributes = []` on the workers is a choice), but a worker
            // of a facedex from before per-face models says the same: make it visible.
            tracing::warn!(
                endpoints = ?endpoints,
                "the embed workers run no per-face attribute models (vision.attributes = [] there, or a facedex older than them): faces are indexed without age, gender or other attributes"
            );
        }
        Ok(Arc::new(Self {
            replicas: Replicas::new(clients, None),
            info,
        }))
    }

    /// Calls `call` on one worker after another, starting at the next in turn, until one
    /// answers or a worker refuses the input itself.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, PipelineError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let answer = self.replicas.call(call).await.map_err(|error| match error {
            ReplicasError::Refused { replica, status } => PipelineError::Models {
                reason: format!("{replica} refused the call: {}", status.message()),
                transient: false,
            },
            ReplicasError::NoneAnswered(failures) => PipelineError::Models {
                reason: format!(
                    "no embed worker answered ({})",
                    failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                ),
                transient: true,
            },
        })?;
        Ok(answer.1)
    }
}

impl FaceModels for RemoteModels {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn detect(&self, photos: Vec<DomainPhoto>) -> BoxFuture<'_, Result<Vec<Vec<DetectedFace>>, PipelineError>> {
        Box::pin(async move {
            let request = DetectRequest {
                photos: photos.iter().map(LetterboxedPhoto::from).collect(),
            };
            let response = self
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.detect(request).await }
                })
                .await?
                .into_inner();
            response
                .photos
                .into_iter()
                .map(|photo| {
                    photo
                        .faces
                        .into_iter()
                        .map(DetectedFace::try_from)
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| PipelineError::Models {
                    reason: format!("an embed worker answered with a malformed detection: {error}"),
                    transient: false,
                })
        })
    }

    fn embed(&self, crops: Vec<u8>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, PipelineError>> {
        Box::pin(async move {
            let request = EmbedRequest { crops };
            let response = self
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.embed(request).await }
                })
                .await?
                .into_inner();
            if response.model_id != self.info.model_id {
                return Err(PipelineError::Models {
                    reason: format!(
                        "an embed worker now runs model {} instead of {}; restart the ingest workers",
                        response.model_id, self.info.model_id
                    ),
                    transient: false,
                });
            }
            Ok(response
                .embeddings
                .into_iter()
                .map(|embedding| embedding.values)
                .collect())
        })
    }

    fn attributes(&self, model: usize, chips: Vec<u8>) -> BoxFuture<'_, Result<Vec<FaceAttribute>, PipelineError>> {
        Box::pin(async move {
            let request = AttributesRequest {
                model: model as u32,
                chips,
            };
            let response = self
                .call(|mut client| {
                    let request = request.clone();
                    async move { client.run_attributes(request).await }
                })
                .await?
                .into_inner();
            attributes_from_proto(response.attributes).map_err(|error| PipelineError::Models {
                reason: format!("an embed worker answered with a malformed attribute: {error}"),
                transient: false,
            })
        })
    }
}

/// The attribute models a worker lists, with their crops checked.
fn attribute_models(models: Vec<AttributeModel>, endpoint: &str) -> Result<Vec<AttributeModelInfo>, PipelineError> {
    models
        .into_iter()
        .map(|model| {
            let crop = chip_crop_from_proto(model.crop).map_err(|error| PipelineError::Models {
                reason: format!("{endpoint} lists attribute model {:?} with {error}", model.name),
                transient: false,
            })?;
            Ok(AttributeModelInfo { name: model.name, crop })
        })
        .collect()
}
