//! facedex's web console: a single-page app for people (search by photo, browse and edit
//! persons, watch an indexing run) and the small JSON API under `/api/` it runs on.
//!
//! The API calls the very FaceSearch and People handlers the gRPC port serves
//! ([`ConsoleHandlers`]: an index's, or a router's FaceSearch alone), with the request's token
//! as their metadata, so checks, limits and errors are the same on both. What gRPC has no call for lives here: face
//! thumbnails and photo views cut from the originals ([`render`], cached on disk by
//! [`cache`]), and the run's live counters ([`progress`]).
//!
//! The page itself is built from `web/` with Vite and embedded at build time ([`assets`]).

mod api;
mod assets;
mod auth;
mod cache;
mod config;
mod error;
mod json;
mod pictures;
mod progress;
mod render;
mod server;

pub use config::WebConfig;
pub use error::WebError;
pub use pictures::{IndexedPhoto, ThumbnailQueue};
pub use progress::{RunPhase, RunProgress, RunView, StagesReport};
pub use server::{BoundConsole, Console, ConsoleHandlers, ConsoleParts};
