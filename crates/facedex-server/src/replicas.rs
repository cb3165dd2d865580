//! [`Replicas`]: clients of servers that can each answer the same calls (the embed workers; the
//! replicas of one index shard). A call goes to the next server in turn; one that is down,
//! overloaded or slower than the per-try limit is skipped for the next, and a server refusing
//! the input itself ends the call, since every other one would refuse it too.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::search::server::ServerError;

/// A lazily connected channel to `endpoint` (`http://` or `https://`, verified with `ca_pem`
/// or the system's roots), with TCP_NODELAY: small answers are not held back by Nagle's
/// algorithm.
pub(crate) fn lazy_channel(endpoint: &str, ca_pem: Option<&[u8]>) -> Result<Channel, tonic::transport::Error> {
    let mut channel = Endpoint::from_shared(endpoint.to_owned())?.tcp_nodelay(true);
    if endpoint.starts_with("https://") {
        let tls = match ca_pem {
            Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
            None => ClientTlsConfig::new().with_enabled_roots(),
        };
        channel = channel.tls_config(tls)?;
    }
    Ok(channel.connect_lazy())
}

/// The CA certificate (PEM) at `path`, when one is configured.
pub(crate) fn read_ca(path: Option<&Path>) -> Result<Option<Vec<u8>>, ServerError> {
    path.map(|path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            what: "CA certificate",
            path: path.to_owned(),
            source,
        })
    })
    .transpose()
}

/// Whether another server may answer where this one failed with `code`: it is down, overloaded,
/// cut off or out of time, as opposed to refusing the request.
pub(crate) fn is_retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

/// How one try at one server failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaFailureKind {
    /// It answered with a status another server may not give.
    Status {
        /// The status code.
        code: Code,
        /// Its message.
        message: String,
    },
    /// It did not answer within the per-try limit.
    TimedOut {
        /// The limit.
        after_ms: u64,
    },
}

/// One server's failed try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// The server's address.
    pub replica: String,
    /// What happened.
    pub kind: ReplicaFailureKind,
}

impl fmt::Display for ReplicaFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ReplicaFailureKind::Status { code, message } => write!(f, "{}: {code:?}: {message}", self.replica),
            ReplicaFailureKind::TimedOut { after_ms } => write!(f, "{}: no answer within {after_ms} ms", self.replica),
        }
    }
}

/// Why a call through [`Replicas`] failed.
#[derive(Debug)]
pub(crate) enum ReplicasError {
    /// A server refused the request itself; the others would too.
    Refused {
        /// The server.
        replica: String,
        /// Its answer.
        status: Status,
    },
    /// Every server failed in a way another might not have, in the order tried.
    NoneAnswered(Vec<ReplicaFailure>),
}

/// Clients of servers that answer the same calls, tried in turn.
pub(crate) struct Replicas<C> {
    clients: Vec<(String, C)>,
    next: AtomicUsize,
    try_timeout: Option<Duration>,
}

impl<C: Clone> Replicas<C> {
    /// `clients` by address, each try limited to `try_timeout` when given.
    pub(crate) fn new(clients: Vec<(String, C)>, try_timeout: Option<Duration>) -> Self {
        debug_assert!(!clients.is_empty(), "a replica set needs at least one server");
        Self {
            clients,
            next: AtomicUsize::new(0),
            try_timeout,
        }
    }

    /// Calls `call` on one server after another, starting at the next in turn, until one
    /// answers (its address and answer) or one refuses the request.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<(&str, T), ReplicasError>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut failures = Vec::new();
        for turn in 0..self.clients.len() {
            let (replica, client) = &self.clients[(start + turn) % self.clients.len()];
            let answer = match self.try_timeout {
                Some(limit) => match tokio::time::timeout(limit, call(client.clone())).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        failures.push(ReplicaFailure {
                            replica: replica.clone(),
                            kind: ReplicaFailureKind::TimedOut {
                                after_ms: limit.as_millis() as u64,
                            },
                        });
                        continue;
                    }
                },
                None => call(client.clone()).await,
            };
            match answer {
                Ok(answer) => return Ok((replica, answer)),
                Err(status) if is_retriable(status.code()) => failures.push(ReplicaFailure {
                    replica: replica.clone(),
                    kind: ReplicaFailureKind::Status {
                        code: status.code(),
                        message: status.message().to_owned(),
                    },
                }),
                Err(status) => {
                    return Err(ReplicasError::Refused {
                        replica: replica.clone(),
                        status,
                    });
                }
            }
        }
        Err(ReplicasError::NoneAnswered(failures))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn replicas(try_timeout: Option<Duration>) -> Replicas<&'static str> {
        Replicas::new(
            vec![("a".into(), "a"), ("b".into(), "b"), ("c".into(), "c")],
            try_timeout,
        )
    }

    #[tokio::test]
    async fn calls_go_round_robin_and_skip_a_server_that_is_down() {
        let replicas = replicas(None);
        let tried = Mutex::new(Vec::new());
        for _ in 0..3 {
            let answer = replicas
                .call(|server| {
                    tried.lock().expect("not poisoned").push(server);
                    async move {
                        match server {
                            "b" => Err(Status::unavailable("connection refused")),
                            other => Ok(other),
                        }
                    }
                })
                .await;
            assert!(matches!(answer, Ok(("a", "a") | ("c", "c"))), "{answer:?}");
        }
        // Starts at a, then b (down, so c), then c.
        assert_eq!(*tried.lock().expect("not poisoned"), ["a", "b", "c", "c"]);
    }

    #[tokio::test]
    async fn a_refusal_ends_the_call_and_an_outage_names_every_server() {
        let replicas = replicas(Some(Duration::from_millis(20)));
        let refused = replicas
            .call(|_| async { Err::<(), _>(Status::invalid_argument("limit 0")) })
            .await;
        assert!(
            matches!(&refused, Err(ReplicasError::Refused { replica, status }) if replica == "a" && status.code() == Code::InvalidArgument),
            "{refused:?}"
        );
        let down = replicas
            .call(|server| async move {
                if server == "a" {
                    std::future::pending::<()>().await;
                }
                Err::<(), _>(Status::unavailable("connection refused"))
            })
            .await;
        let Err(ReplicasError::NoneAnswered(failures)) = down else {
            panic!("{down:?}");
        };
        let described: Vec<String> = failures.iter().map(ToString::to_string).collect();
        assert_eq!(
            described,
            [
                "b: Unavailable: connection refused",
                "c: Unavailable: connection refused",
                "a: no answer within 20 ms"
            ]
        );
    }
}
