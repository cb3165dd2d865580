//! [`Replicas`]: clients of servers that can each answer the same calls (the embed workers; the
//! replicas of one index shard). A call goes to the next server in turn; one that is down,
//! overloaded or slower than the per-try limit is skipped for the next, and a server refusing
//! the input itself ends the call, since every other one would refuse it too.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

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

/// When a call that has not answered yet is also sent to the next server: after the 95th
/// percentile of this set's recent answer times (a hedged request, as in "The Tail at Scale"),
/// never sooner than `min_delay`. Only one extra server per call; the first answer wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hedging {
    /// The shortest wait before the extra server is asked.
    pub min_delay: Duration,
}

/// Answers timed before hedging starts: fewer would make a noisy percentile.
const MIN_TIMED_ANSWERS: usize = 20;
/// Answer times kept for the percentile.
const TIMED_ANSWERS: usize = 256;

/// The servers of a set now, each with its address.
pub(crate) type Servers<C> = Arc<Vec<(String, C)>>;

/// Clients of servers that answer the same calls, tried in turn. The servers can be replaced
/// while calls run (a discovery refresh): a call keeps the list it started with.
pub(crate) struct Replicas<C> {
    clients: RwLock<Servers<C>>,
    next: AtomicUsize,
    try_timeout: Option<Duration>,
    hedging: Option<Hedging>,
    /// The most recent answer times, oldest first.
    answer_times: Mutex<VecDeque<Duration>>,
}

impl<C: Clone> Replicas<C> {
    /// `clients` by address, each try limited to `try_timeout` when given.
    pub(crate) fn new(clients: Vec<(String, C)>, try_timeout: Option<Duration>) -> Self {
        Self {
            clients: RwLock::new(Arc::new(clients)),
            next: AtomicUsize::new(0),
            try_timeout,
            hedging: None,
            answer_times: Mutex::new(VecDeque::with_capacity(TIMED_ANSWERS)),
        }
    }

    /// The set with slow calls hedged as `hedging` says.
    pub(crate) fn with_hedging(self, hedging: Hedging) -> Self {
        Self {
            hedging: Some(hedging),
            ..self
        }
    }

    /// The servers now.
    pub(crate) fn servers(&self) -> Servers<C> {
        Arc::clone(&self.clients.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Replaces the servers (calls already running keep theirs).
    pub(crate) fn replace(&self, clients: Vec<(String, C)>) {
        *self.clients.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(clients);
    }

    /// Calls `call` on the next server in turn until one answers (its address and answer) or
    /// one refuses the request: a server that fails or passes the per-try limit hands over to
    /// the next, and with hedging one that is slow gets the next one beside it. With no server
    /// at all, nobody answered.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<(String, T), ReplicasError>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let clients = self.servers();
        let servers = clients.len();
        if servers == 0 {
            return Err(ReplicasError::NoneAnswered(Vec::new()));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let try_timeout = self.try_timeout;
        let mut launch = |turn: usize| {
            let (replica, client) = &clients[(start + turn) % servers];
            let answer = call(client.clone());
            async move {
                let started = Instant::now();
                let answer = match try_timeout {
                    Some(limit) => tokio::time::timeout(limit, answer).await.map_err(|_| limit),
                    None => Ok(answer.await),
                };
                (replica.as_str(), started.elapsed(), answer)
            }
        };
        let mut tries = FuturesUnordered::new();
        tries.push(launch(0));
        let mut launched = 1;
        let mut failures = Vec::new();
        let mut hedge = self.hedge_delay().map(|delay| Box::pin(tokio::time::sleep(delay)));
        loop {
            tokio::select! {
                Some((replica, took, answer)) = tries.next() => {
                    let failure = match answer {
                        Ok(Ok(answer)) => {
                            self.record_answer_time(took);
                            return Ok((replica.to_owned(), answer));
                        }
                        Ok(Err(status)) if is_retriable(status.code()) => ReplicaFailureKind::Status {
                            code: status.code(),
                            message: status.message().to_owned(),
                        },
                        Ok(Err(status)) => {
                            return Err(ReplicasError::Refused {
                                replica: replica.to_owned(),
                                status,
                            });
                        }
                        Err(limit) => ReplicaFailureKind::TimedOut {
                            after_ms: limit.as_millis() as u64,
                        },
                    };
                    failures.push(ReplicaFailure {
                        replica: replica.to_owned(),
                        kind: failure,
                    });
                    if launched < servers {
                        tries.push(launch(launched));
                        launched += 1;
                    } else if tries.is_empty() {
                        return Err(ReplicasError::NoneAnswered(failures));
                    }
                }
                () = async { hedge.as_mut().expect("checked by the guard").await }, if hedge.is_some() && launched < servers => {
                    hedge = None;
                    tries.push(launch(launched));
                    launched += 1;
                }
                // Unreachable while a try is running, which the loop keeps true.
                else => return Err(ReplicasError::NoneAnswered(failures)),
            }
        }
    }

    /// How long a call waits before it is hedged: `None` without hedging or before enough
    /// answers were timed.
    fn hedge_delay(&self) -> Option<Duration> {
        let hedging = self.hedging?;
        if self.servers().len() < 2 {
            return None;
        }
        let mut times: Vec<Duration> = self
            .answer_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .copied()
            .collect();
        if times.len() < MIN_TIMED_ANSWERS {
            return None;
        }
        let rank = (times.len() * 95).div_ceil(100) - 1;
        let (_, p95, _) = times.select_nth_unstable(rank);
        Some((*p95).max(hedging.min_delay))
    }

    fn record_answer_time(&self, took: Duration) {
        if self.hedging.is_none() {
            return;
        }
        let mut times = self
            .answer_times
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if times.len() == TIMED_ANSWERS {
            times.pop_front();
        }
        times.push_back(took);
    }
}

#[cfg(test)]
mod tests {
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
            assert!(
                matches!(&answer, Ok((replica, server)) if replica == server && (*server == "a" || *server == "c")),
                "{answer:?}"
            );
        }
        // Starts at a, then b (down, so c), then c.
        assert_eq!(*tried.lock().expect("not poisoned"), ["a", "b", "c", "c"]);
    }

    /// A server that answers after `delay` (virtual time: the clock is paused).
    async fn answer_after(server: &'static str, delay_ms: u64) -> Result<&'static str, Status> {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        Ok(server)
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_slower_than_the_usual_is_hedged_to_the_next_server() {
        let hedging = Hedging {
            min_delay: Duration::from_millis(5),
        };
        let replicas = Replicas::new(vec![("a".into(), "a"), ("b".into(), "b")], None).with_hedging(hedging);
        // Without answer times there is no usual yet: a slow server is waited for.
        let slow_a = |server| answer_after(server, if server == "a" { 1000 } else { 10 });
        let started = Instant::now();
        assert_eq!(replicas.call(slow_a).await.ok(), Some(("a".to_owned(), "a")));
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
        // Both usually answer in 10 ms.
        for _ in 0..MIN_TIMED_ANSWERS {
            replicas.call(|server| answer_after(server, 10)).await.expect("answers");
        }
        assert_eq!(replicas.hedge_delay(), Some(Duration::from_millis(10)));
        // Now a call that starts at the stuck "a" gets "b" beside it after 10 ms, and b's answer
        // comes 10 ms later; one that starts at "b" just answers.
        let mut calls = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let (replica, _) = replicas.call(slow_a).await.expect("answers");
            calls.push((replica, started.elapsed().as_millis()));
        }
        calls.sort();
        assert_eq!(calls, [("b".to_owned(), 10), ("b".to_owned(), 20)]);
        // Without hedging the same call waits for a.
        let plain = Replicas::new(vec![("a".into(), "a"), ("b".into(), "b")], None);
        let started = Instant::now();
        assert_eq!(plain.call(slow_a).await.ok(), Some(("a".to_owned(), "a")));
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
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
