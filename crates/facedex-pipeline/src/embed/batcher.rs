//! Dynamic batching across callers: requests from many tasks (or gRPC clients) queue on a
//! bounded channel; a dedicated thread takes the first, waits up to `max_wait` for more until
//! `max_items`, runs the model once on all of them and hands each caller its share. One thread
//! per model keeps inference off the async runtime. A request is one caller's input as it came
//! (a list of photos, a buffer of crops) with its item count: nothing is split or copied on
//! the way in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::metrics;

/// Limits of one batcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Items per model run (a single request larger than this runs alone).
    pub max_items: usize,
    /// How long the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Requests queued before callers wait (backpressure).
    pub queue_capacity: usize,
}

/// Why a request got no results.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError<E> {
    /// The model run of its batch failed; every request of that batch shares the error.
    #[error("the model run failed")]
    Run(#[source] Arc<E>),
    /// The model returned a different number of results than it was given items.
    #[error("the model returned {results} results for {items} inputs")]
    WrongCount {
        /// Results returned.
        results: usize,
        /// Items given.
        items: usize,
    },
    /// The batching thread is gone (shut down, or it panicked).
    #[error("the {0} thread has stopped")]
    Stopped(Arc<str>),
}

struct Job<T, R, E> {
    input: T,
    items: usize,
    reply: oneshot::Sender<Result<Vec<R>, BatchError<E>>>,
}

/// Held while a model runs; batchers that share one run one model at a time (CPU models
/// each use every core, and two at once only fight over them).
pub type RunLock = Arc<Mutex<()>>;

/// A handle to a batching thread; cheap to share behind an `Arc`.
pub struct Batcher<T, R, E> {
    jobs: mpsc::Sender<Job<T, R, E>>,
    /// The model's name: the thread's, the metrics' label, the errors'.
    name: Arc<str>,
}

impl<T, R, E> Batcher<T, R, E>
where
    T: Send + 'static,
    R: Send + 'static,
    E: Send + Sync + 'static,
{
    /// Starts the thread. `run` gets the inputs of a batch in request order and must return one
    /// result per item, in the same order; an error fails every request of that batch. With
    /// `run_lock`, a run waits until no other batcher holding the same lock is running.
    pub fn spawn<F>(
        name: impl Into<Arc<str>>,
        limits: BatchLimits,
        run_lock: Option<RunLock>,
        mut run: F,
    ) -> std::io::Result<Self>
    where
        F: FnMut(Vec<T>) -> Result<Vec<R>, E> + Send + 'static,
    {
        let name: Arc<str> = name.into();
        let label = name.clone();
        let (jobs, mut queue) = mpsc::channel::<Job<T, R, E>>(limits.queue_capacity.max(1));
        let clock = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        std::thread::Builder::new()
            .name(format!("facedex-{name}"))
            .spawn(move || {
                while let Some(first) = queue.blocking_recv() {
                    let mut items = first.items;
                    let mut batch = vec![first];
                    let deadline = Instant::now() + limits.max_wait;
                    while items < limits.max_items {
                        let next =
                            clock.block_on(async { tokio::time::timeout_at(deadline.into(), queue.recv()).await });
                        match next {
                            Ok(Some(job)) => {
                                items += job.items;
                                batch.push(job);
                            }
                            Ok(None) | Err(_) => break, // closed, or waited long enough
                        }
                    }
                    ::metrics::gauge!(metrics::MODEL_QUEUE_DEPTH, "model" => label.clone()).set(queue.len() as f64);
                    ::metrics::histogram!(metrics::MODEL_BATCH_SIZE, "model" => label.clone()).record(items as f64);
                    let _running = run_lock.as_ref().map(|lock| lock.lock());
                    let started = Instant::now();
                    run_batch(&mut run, batch);
                    ::metrics::histogram!(metrics::MODEL_RUN_DURATION, "model" => label.clone())
                        .record(started.elapsed().as_secs_f64());
                }
            })?;
        Ok(Self { jobs, name })
    }

    /// Queues `input`, which holds `items` items, and waits for their results. Fails when the
    /// batch's model run failed or the thread is gone.
    pub async fn submit(&self, input: T, items: usize) -> Result<Vec<R>, BatchError<E>> {
        if items == 0 {
            return Ok(Vec::new());
        }
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Job { input, items, reply })
            .await
            .map_err(|_| BatchError::Stopped(self.name.clone()))?;
        result.await.map_err(|_| BatchError::Stopped(self.name.clone()))?
    }
}

fn run_batch<T, R, E>(run: &mut impl FnMut(Vec<T>) -> Result<Vec<R>, E>, batch: Vec<Job<T, R, E>>) {
    let mut replies = Vec::with_capacity(batch.len());
    let mut inputs = Vec::with_capacity(batch.len());
    for job in batch {
        inputs.push(job.input);
        replies.push((job.reply, job.items));
    }
    let expected: usize = replies.iter().map(|(_, items)| items).sum();
    let failure = match run(inputs) {
        Ok(results) if results.len() == expected => {
            let mut results = results.into_iter();
            for (reply, items) in replies {
                // A caller that gave up (cancelled) no longer listens; nothing to do.
                let _ = reply.send(Ok(results.by_ref().take(items).collect()));
            }
            return;
        }
        Ok(results) => BatchError::WrongCount {
            results: results.len(),
            items: expected,
        },
        Err(error) => BatchError::Run(Arc::new(error)),
    };
    for (reply, _) in replies {
        let _ = reply.send(Err(clone_failure(&failure)));
    }
}

fn clone_failure<E>(failure: &BatchError<E>) -> BatchError<E> {
    match failure {
        BatchError::Run(error) => BatchError::Run(Arc::clone(error)),
        BatchError::WrongCount { results, items } => BatchError::WrongCount {
            results: *results,
            items: *items,
        },
        BatchError::Stopped(name) => BatchError::Stopped(name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_model_runs_and_get_their_own_results() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        let limits = BatchLimits {
            max_items: 64,
            max_wait: Duration::from_millis(50),
            queue_capacity: 64,
        };
        let batcher = Arc::new(
            Batcher::spawn("doubler", limits, None, move |inputs: Vec<Vec<u32>>| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(inputs.into_iter().flatten().map(|item| item * 2).collect())
            })
            .expect("thread"),
        );
        let callers: Vec<_> = (0..16u32)
            .map(|caller| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(vec![caller, caller + 100], 2).await })
            })
            .collect();
        for (caller, handle) in callers.into_iter().enumerate() {
            let caller = caller as u32;
            let results = handle.await.expect("join").expect("results");
            assert_eq!(results, vec![caller * 2, (caller + 100) * 2]);
        }
        assert!(
            runs.load(Ordering::SeqCst) < 16,
            "16 callers within 50 ms share model runs"
        );
    }

    #[tokio::test]
    async fn a_failed_run_fails_its_callers_with_the_reason() {
        let limits = BatchLimits {
            max_items: 4,
            max_wait: Duration::ZERO,
            queue_capacity: 4,
        };
        let batcher = Batcher::spawn("failing", limits, None, |_: Vec<Vec<u8>>| {
            Err::<Vec<u8>, _>("out of memory".to_owned())
        })
        .expect("thread");
        let Err(BatchError::Run(error)) = batcher.submit(vec![1], 1).await else {
            panic!("the run failed");
        };
        assert_eq!(error.as_str(), "out of memory");
        assert!(batcher.submit(Vec::new(), 0).await.expect("nothing to run").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batchers_sharing_a_run_lock_never_run_at_once() {
        let lock: RunLock = Arc::default();
        let running = Arc::new(AtomicUsize::new(0));
        let overlaps = Arc::new(AtomicUsize::new(0));
        let limits = BatchLimits {
            max_items: 1,
            max_wait: Duration::ZERO,
            queue_capacity: 8,
        };
        let spawn = |name| {
            let (running, overlaps) = (running.clone(), overlaps.clone());
            Arc::new(
                Batcher::spawn(name, limits, Some(lock.clone()), move |inputs: Vec<u8>| {
                    if running.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, String>(inputs)
                })
                .expect("thread"),
            )
        };
        let (first, second) = (spawn("first"), spawn("second"));
        let calls: Vec<_> = (0..10u8)
            .map(|item| {
                let batcher = if item % 2 == 0 { first.clone() } else { second.clone() };
                tokio::spawn(async move { batcher.submit(item, 1).await })
            })
            .collect();
        for call in calls {
            call.await.expect("join").expect("result");
        }
        assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    }
}
