//! The Embedder service of `facedex embed` and its client: [`service`] answers ingest workers
//! with the in-process models, [`client`] is the pipeline's `FaceModels` over such workers.
//! Both sides of one gRPC contract live here so they change together.

pub mod client;
pub mod service;
