//! `facedex router`: one FaceSearch endpoint over an index split into shards. Each search goes
//! to one replica of every shard ([`shards`]) and their answers are merged into the one an
//! unsharded index would give ([`merge`]); a query photo's faces are found by one shard only
//! ([`photo`]); [`service`] holds the handlers, [`server`] runs them.

pub mod merge;
mod photo;
pub mod server;
pub mod service;
pub mod shards;
