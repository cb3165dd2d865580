//! Dynamic batching across callers: requests from many tasks (or gRPC clients) queue on a
//! bounded channel; a dedicated thread takes the first, waits up to `max_wait` for more until
//! `max_items`, runs the model once on all of them and hands each caller its share. One thread
//! per model keeps inference off the async runtime.

use std::time::{Duration, Instant};

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

struct Job<T, R> {
    items: Vec<T>,
    reply: oneshot::Sender<Result<Vec<R>, String>>,
}

/// A handle to a batching thread; cheap to share behind an `Arc`.
pub struct Batcher<T, R> {
    jobs: mpsc::Sender<Job<T, R>>,
    name: &'static str,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the thread. `run` gets every item of a batch in request order and must return
    /// one result per item; an error fails every request of that batch with its message.
    pub fn spawn<F, E>(name: &'static str, limits: BatchLimits, mut run: F) -> std::io::Result<Self>
    where
        F: FnMut(Vec<T>) -> Result<Vec<R>, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let (jobs, mut queue) = mpsc::channel::<Job<T, R>>(limits.queue_capacity.max(1));
        let clock = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        std::thread::Builder::new()
            .name(format!("facedex-{name}"))
            .spawn(move || {
                while let Some(first) = queue.blocking_recv() {
                    let mut batch = vec![first];
                    let mut items = batch[0].items.len();
                    let deadline = Instant::now() + limits.max_wait;
                    while items < limits.max_items {
                        let next =
                            clock.block_on(async { tokio::time::timeout_at(deadline.into(), queue.recv()).await });
                        match next {
                            Ok(Some(job)) => {
                                items += job.items.len();
                                batch.push(job);
                            }
                            Ok(None) | Err(_) => break, // closed, or waited long enough
                        }
                    }
                    ::metrics::gauge!(metrics::MODEL_QUEUE_DEPTH, "model" => name).set(queue.len() as f64);
                    ::metrics::histogram!(metrics::MODEL_BATCH_SIZE, "model" => name).record(items as f64);
                    let started = Instant::now();
                    run_batch(&mut run, batch);
                    ::metrics::histogram!(metrics::MODEL_RUN_DURATION, "model" => name)
                        .record(started.elapsed().as_secs_f64());
                }
            })?;
        Ok(Self { jobs, name })
    }

    /// Queues `items` and waits for their results. Fails when the batch's model run failed or
    /// the thread is gone.
    pub async fn submit(&self, items: Vec<T>) -> Result<Vec<R>, String> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Job { items, reply })
            .await
            .map_err(|_| format!("the {} thread has stopped", self.name))?;
        result
            .await
            .map_err(|_| format!("the {} thread stopped before answering", self.name))?
    }
}

fn run_batch<T, R, E: std::fmt::Display>(run: &mut impl FnMut(Vec<T>) -> Result<Vec<R>, E>, batch: Vec<Job<T, R>>) {
    let counts: Vec<usize> = batch.iter().map(|job| job.items.len()).collect();
    let mut replies = Vec::with_capacity(batch.len());
    let mut items = Vec::with_capacity(counts.iter().sum());
    for job in batch {
        items.extend(job.items);
        replies.push(job.reply);
    }
    let expected = items.len();
    match run(items) {
        Ok(results) if results.len() == expected => {
            let mut results = results.into_iter();
            for (reply, count) in replies.into_iter().zip(counts) {
                // A caller that gave up (cancelled) no longer listens; nothing to do.
                let _ = reply.send(Ok(results.by_ref().take(count).collect()));
            }
        }
        Ok(results) => {
            let message = format!("the model returned {} results for {expected} inputs", results.len());
            for reply in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
        Err(error) => {
            let message = error.to_string();
            for reply in replies {
                let _ = reply.send(Err(message.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
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
            Batcher::spawn("doubler", limits, move |items: Vec<u32>| {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(items.into_iter().map(|item| item * 2).collect())
            })
            .expect("thread"),
        );
        let callers: Vec<_> = (0..16u32)
            .map(|caller| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.submit(vec![caller, caller + 100]).await })
            })
            .collect();
        for (caller, handle) in callers.into_iter().enumerate() {
            let caller = caller as u32;
            assert_eq!(handle.await.expect("join"), Ok(vec![caller * 2, (caller + 100) * 2]));
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
        let batcher =
            Batcher::spawn("failing", limits, |_: Vec<u8>| Err::<Vec<u8>, _>("out of memory")).expect("thread");
        assert_eq!(batcher.submit(vec![1]).await, Err("out of memory".to_owned()));
        assert_eq!(batcher.submit(Vec::new()).await, Ok(Vec::new()));
    }
}
