//! Natural batching (application-level group commit). Callers submit one item and await its
//! own result; one task takes everything that queued up while the previous batch ran and
//! executes it as one batch. An idle system pays one round trip per item, a busy one one
//! round trip (and one commit) per batch, with no timer in between.
//!
//! Batches run one at a time, in submission order: a caller whose items must stay ordered
//! (a charger's connect before its disconnect) submits them in that order and gets it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// What a batch executor returns: one result per item, in the items' order.
pub type BatchFuture<R> = Pin<Box<dyn Future<Output = Vec<R>> + Send>>;

/// The submitting side of a batcher. Cheap to clone.
pub struct Batcher<I, R> {
    tx: mpsc::UnboundedSender<(I, oneshot::Sender<R>)>,
}

impl<I, R> Clone for Batcher<I, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

/// Reported for every batch run (metrics).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

impl<I: Send + 'static, R: Send + 'static> Batcher<I, R> {
    /// Starts the batching task on the current runtime. `execute` gets up to `max_batch`
    /// items and must return exactly one result per item, in order; an item it returns no
    /// result for is answered with `None` by [`Batcher::submit`].
    pub fn start<F>(max_batch: usize, observe: Option<BatchObserver>, execute: F) -> Self
    where
        F: Fn(Vec<I>) -> BatchFuture<R> + Send + Sync + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, oneshot::Sender<R>)>();
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let mut queued = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut queued, max_batch).await > 0 {
                let (items, replies): (Vec<I>, Vec<oneshot::Sender<R>>) = queued.drain(..).unzip();
                if let Some(observe) = &observe {
                    observe(items.len());
                }
                // a panic in one batch must not end the batcher: its callers get `None` (their
                // replies are dropped) and the next batch runs as usual
                let results = match AssertUnwindSafe(execute(items)).catch_unwind().await {
                    Ok(results) => results,
                    Err(_) => {
                        tracing::error!("a batch panicked: its items are answered as failed");
                        continue;
                    }
                };
                for (reply, result) in replies.into_iter().zip(results) {
                    // the caller may have given up waiting; its item was executed all the same
                    let _ = reply.send(result);
                }
            }
        });
        Self { tx }
    }

    /// Queues `item` at once (so items keep the order of the calls, not of the polls) and
    /// returns a future of its result: `None` if the batcher is gone or its executor returned
    /// no result for the item.
    pub fn submit(&self, item: I) -> impl Future<Output = Option<R>> + Send + 'static {
        let (reply, result) = oneshot::channel();
        let queued = self.tx.send((item, reply)).is_ok();
        async move {
            if !queued {
                return None;
            }
            result.await.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn items_queued_while_a_batch_runs_form_the_next_batch_in_order() {
        let started = Arc::new(tokio::sync::Notify::new());
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let batches: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let batcher = {
            let (started, gate, batches) = (started.clone(), gate.clone(), batches.clone());
            Batcher::start(100, None, move |items: Vec<u32>| {
                let (started, gate, batches) = (started.clone(), gate.clone(), batches.clone());
                Box::pin(async move {
                    if items == [0] {
                        // the first batch holds until the others have queued up behind it
                        started.notify_one();
                        let _ = gate.acquire().await;
                    }
                    if let Ok(mut seen) = batches.lock() {
                        seen.push(items.clone());
                    }
                    items.into_iter().map(|i| i * 10).collect()
                }) as BatchFuture<u32>
            })
        };
        let first = tokio::spawn(batcher.submit(0));
        started.notified().await;
        let rest: Vec<_> = (1..=5).map(|i| batcher.submit(i)).collect();
        gate.add_permits(1);
        assert_eq!(first.await.ok().flatten(), Some(0));
        let rest = futures_util::future::join_all(rest).await;
        assert_eq!(rest, vec![Some(10), Some(20), Some(30), Some(40), Some(50)]);
        let seen = batches.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(seen, vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[tokio::test]
    async fn a_batch_that_panics_fails_its_items_and_the_batcher_goes_on() {
        let batcher: Batcher<u32, u32> = Batcher::start(1, None, |items: Vec<u32>| {
            Box::pin(async move {
                if items == [13] {
                    panic!("unlucky batch");
                }
                items
            })
        });
        assert_eq!(batcher.submit(13).await, None);
        assert_eq!(batcher.submit(14).await, Some(14));
    }

    #[tokio::test]
    async fn an_item_without_a_result_is_answered_none_and_batches_are_capped() {
        let sizes = Arc::new(AtomicUsize::new(0));
        let observed = sizes.clone();
        let batcher: Batcher<u32, u32> = Batcher::start(
            2,
            Some(Arc::new(move |n| {
                observed.fetch_max(n, Ordering::SeqCst);
            })),
            |items: Vec<u32>| {
                Box::pin(async move { items.into_iter().filter(|i| i % 2 == 0).collect() })
            },
        );
        // 0, 3, 4, 7, 8, 11 in batches of two; the executor drops the odd ones
        let queued: Vec<_> = (0..6u32).map(|i| batcher.submit(i * 2 + i % 2)).collect();
        let results = futures_util::future::join_all(queued).await;
        assert_eq!(results, vec![Some(0), None, Some(4), None, Some(8), None]);
        assert_eq!(sizes.load(Ordering::SeqCst), 2);
    }
}
