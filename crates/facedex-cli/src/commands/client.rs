//! The FaceSearch and People clients as the CLI's commands need them: `--server`, an optional
//! bearer token (a file or FACEDEX_TOKEN) and CA certificate, shared by `facedex search`,
//! `facedex people` and `facedex status`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use facedex_proto::face_search_client::FaceSearchClient;
use facedex_server::BearerToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// How to reach a FaceSearch server.
#[derive(Debug, Args)]
pub struct ServerFlags {
    /// The server, e.g. `http://127.0.0.1:7051` (`https://` for TLS).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7051")]
    pub server: String,
    /// A file holding the bearer token for a server that needs one (`server.read_token`,
    /// `server.write_token` or `server.auth_token`); or set FACEDEX_TOKEN. Never a flag: every
    /// user of the machine can read a command line.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify an `https://` server with.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
}

/// A FaceSearch client that sends the bearer token with every call.
pub type SearchClient = FaceSearchClient<InterceptedService<Channel, BearerToken>>;
/// A People client that sends the bearer token with every call.
pub type PeopleClient = facedex_proto::people_client::PeopleClient<InterceptedService<Channel, BearerToken>>;

impl ServerFlags {
    /// Connects to the server's FaceSearch service.
    pub async fn connect(&self) -> anyhow::Result<SearchClient> {
        let (channel, token) = self.channel().await?;
        Ok(FaceSearchClient::with_interceptor(channel, token).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// Connects to the server's People service.
    pub async fn connect_people(&self) -> anyhow::Result<PeopleClient> {
        let (channel, token) = self.channel().await?;
        Ok(
            facedex_proto::people_client::PeopleClient::with_interceptor(channel, token)
                .max_decoding_message_size(64 * 1024 * 1024),
        )
    }

    /// A channel to the server and the token to send on it.
    async fn channel(&self) -> anyhow::Result<(Channel, BearerToken)> {
        let mut endpoint = Endpoint::from_shared(self.server.clone())
            .with_context(|| format!("invalid server URL {}", self.server))?;
        if self.server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(path) = &self.ca_cert {
                let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.server))?;
        let token = match (&self.token_file, std::env::var("FACEDEX_TOKEN")) {
            (Some(path), _) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?
                    .trim_end()
                    .to_owned(),
            ),
            (None, Ok(token)) => Some(token),
            (None, Err(_)) => None,
        };
        let token = BearerToken::new(token.as_deref()).context("the token is not valid header text")?;
        Ok((channel, token))
    }
}
