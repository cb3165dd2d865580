//! One module per subcommand.

pub mod client;
pub mod config;
pub mod detect;
pub mod index;
pub mod index_import;
pub mod people;
pub mod roles;
pub mod router;
pub mod search;
pub mod serve;
pub mod status;
