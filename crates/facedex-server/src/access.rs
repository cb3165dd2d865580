//! Who may call what: a read token for the reads (Search, SearchBatch, GetFace, GetIndexInfo,
//! ListPeople, GetPerson) and a write token for the writes (Delete, CreateSnapshot, the people
//! edits, Recluster), presented as
//! `authorization: Bearer <token>`. The write token reads too. Tokens come from the config
//! file, `FACEDEX__SERVER__…` variables or files (`*_token_file`), never from a command line,
//! where every user of the machine could read them. Health and reflection stay open.

use std::path::{Path, PathBuf};

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::config::ServerConfig;
use crate::search::server::ServerError;

/// What an RPC does to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads it.
    Read,
    /// Changes it.
    Write,
}

/// The tokens a server checks; `None` leaves that kind of call open.
#[derive(Clone, Default)]
pub struct AccessTokens {
    read: Option<String>,
    write: Option<String>,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AccessTokens")
            .field("read", &self.read.as_ref().map(|_| "…"))
            .field("write", &self.write.as_ref().map(|_| "…"))
            .finish()
    }
}

impl AccessTokens {
    /// The tokens `config` names, read from their files where it names files.
    /// `auth_token` is one token for everything; a read token without a write token is
    /// refused (writes would be open to anyone while reads are guarded).
    pub fn from_config(config: &ServerConfig) -> Result<Self, ServerError> {
        let read = token(
            config.read_token.as_deref(),
            config.read_token_file.as_deref(),
            "read_token",
        )?;
        let write = token(
            config.write_token.as_deref(),
            config.write_token_file.as_deref(),
            "write_token",
        )?;
        let tokens = match (&config.auth_token, read, write) {
            (Some(token), None, None) => Self {
                read: Some(token.clone()),
                write: Some(token.clone()),
            },
            (Some(_), _, _) => {
                return Err(ServerError::Tokens(TokenProblem::AuthTokenBesideSplitTokens));
            }
            (None, Some(_), None) => {
                return Err(ServerError::Tokens(TokenProblem::ReadTokenWithoutWriteToken));
            }
            (None, read, write) => Self { read, write },
        };
        Ok(tokens)
    }

    /// One token for every call (the internal Embedder service), from `inline` or `file`.
    pub fn one(inline: Option<&str>, file: Option<&Path>, setting: &'static str) -> Result<Self, ServerError> {
        let token = token(inline, file, setting)?;
        Ok(Self {
            read: token.clone(),
            write: token,
        })
    }

    /// Whether any call needs a token.
    pub fn any(&self) -> bool {
        self.read.is_some() || self.write.is_some()
    }

    /// Lets the call `method` through when its metadata carries a token that allows `access`.
    pub fn authorize(&self, metadata: &MetadataMap, access: Access, method: &str) -> Result<(), Status> {
        let needed = match access {
            Access::Read => self.read.as_ref(),
            Access::Write => self.write.as_ref(),
        };
        let Some(needed) = needed else {
            return Ok(());
        };
        let presented = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let Some(presented) = presented else {
            return Err(Status::unauthenticated(format!(
                "{method} needs `authorization: Bearer <token>` metadata on this server"
            )));
        };
        let matches = |token: Option<&String>| {
            token.is_some_and(|token| constant_time_equal(presented.as_bytes(), token.as_bytes()))
        };
        if matches(Some(needed)) || (access == Access::Read && matches(self.write.as_ref())) {
            return Ok(());
        }
        if access == Access::Write && matches(self.read.as_ref()) {
            return Err(Status::permission_denied(format!(
                "this token may only read; {method} changes the index and needs the write token (server.write_token)"
            )));
        }
        Err(Status::unauthenticated("the bearer token is not valid for this server"))
    }
}

/// What is wrong with the configured tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// `auth_token` beside `read_token` or `write_token`.
    #[error("server.auth_token is one token for every call: set it or server.read_token/server.write_token, not both")]
    AuthTokenBesideSplitTokens,
    /// A read token alone, which would leave writes open.
    #[error(
        "server.read_token is set but server.write_token is not: writes would need no token while reads need one; set server.write_token too"
    )]
    ReadTokenWithoutWriteToken,
    /// A token set both inline and in a file.
    #[error("{setting} is set inline and in a file ({setting}_file): set one, not both")]
    InlineAndFile {
        /// The setting.
        setting: &'static str,
    },
    /// A token that cannot travel in an `authorization` header.
    #[error("{setting} must be non-empty printable ASCII without spaces")]
    NotPrintable {
        /// The setting.
        setting: &'static str,
    },
}

/// A token given inline or in a file (trailing whitespace dropped), not both.
pub(crate) fn token(
    inline: Option<&str>,
    file: Option<&Path>,
    setting: &'static str,
) -> Result<Option<String>, ServerError> {
    let token = match (inline, file) {
        (Some(_), Some(_)) => return Err(ServerError::Tokens(TokenProblem::InlineAndFile { setting })),
        (Some(token), None) => token.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|source| ServerError::TokenFile {
                setting,
                path: PathBuf::from(path),
                source,
            })?
            .trim_end()
            .to_owned(),
        (None, None) => return Ok(None),
    };
    if token.is_empty() || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(ServerError::Tokens(TokenProblem::NotPrintable { setting }));
    }
    Ok(Some(token))
}

/// Compares without an early exit, so response time does not reveal how much of a guessed
/// token was right.
fn constant_time_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(token: Option<&str>) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        metadata
    }

    fn tokens(read: Option<&str>, write: Option<&str>) -> AccessTokens {
        AccessTokens {
            read: read.map(Into::into),
            write: write.map(Into::into),
        }
    }

    #[test]
    fn the_read_token_reads_and_the_write_token_does_both() {
        let tokens = tokens(Some("reader"), Some("writer"));
        let code = |token, access| {
            tokens
                .authorize(&metadata(token), access, "Delete")
                .err()
                .map(|status| status.code())
        };
        assert_eq!(code(Some("reader"), Access::Read), None);
        assert_eq!(code(Some("writer"), Access::Read), None);
        assert_eq!(code(Some("writer"), Access::Write), None);
        assert_eq!(code(Some("reader"), Access::Write), Some(tonic::Code::PermissionDenied));
        assert_eq!(code(Some("nobody"), Access::Read), Some(tonic::Code::Unauthenticated));
        assert_eq!(code(None, Access::Write), Some(tonic::Code::Unauthenticated));
        assert_eq!(code(Some("readers"), Access::Read), Some(tonic::Code::Unauthenticated));
    }

    #[test]
    fn without_tokens_every_call_is_open_and_a_write_token_alone_guards_writes() {
        assert!(
            tokens(None, None)
                .authorize(&metadata(None), Access::Write, "Delete")
                .is_ok()
        );
        let writes_only = tokens(None, Some("writer"));
        assert!(writes_only.authorize(&metadata(None), Access::Read, "Search").is_ok());
        assert!(writes_only.authorize(&metadata(None), Access::Write, "Delete").is_err());
    }

    #[test]
    fn tokens_come_from_files_and_bad_combinations_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("write-token");
        std::fs::write(&file, "s3cret\n").expect("token file");
        let config = ServerConfig {
            read_token: Some("reader".into()),
            write_token_file: Some(file),
            ..ServerConfig::default()
        };
        let loaded = AccessTokens::from_config(&config).expect("tokens");
        assert_eq!(loaded.write.as_deref(), Some("s3cret"));
        let read_only = ServerConfig {
            read_token: Some("reader".into()),
            ..ServerConfig::default()
        };
        assert!(matches!(
            AccessTokens::from_config(&read_only),
            Err(ServerError::Tokens(TokenProblem::ReadTokenWithoutWriteToken))
        ));
        let both = ServerConfig {
            auth_token: Some("one".into()),
            write_token: Some("two".into()),
            ..ServerConfig::default()
        };
        assert!(matches!(
            AccessTokens::from_config(&both),
            Err(ServerError::Tokens(TokenProblem::AuthTokenBesideSplitTokens))
        ));
        let twice = ServerConfig {
            write_token: Some("two".into()),
            write_token_file: Some(dir.path().join("write-token")),
            ..ServerConfig::default()
        };
        let refused = AccessTokens::from_config(&twice).expect_err("inline and in a file");
        assert!(matches!(
            refused,
            ServerError::Tokens(TokenProblem::InlineAndFile { setting: "write_token" })
        ));
        assert!(refused.to_string().contains("write_token_file"), "{refused}");
        let legacy = AccessTokens::from_config(&ServerConfig {
            auth_token: Some("one".into()),
            ..ServerConfig::default()
        })
        .expect("auth_token");
        assert!(
            legacy
                .authorize(&metadata(Some("one")), Access::Write, "Delete")
                .is_ok()
        );
        assert!(legacy.authorize(&metadata(None), Access::Read, "Search").is_err());
    }
}
