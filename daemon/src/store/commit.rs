//! Group commit: concurrent [`Durability::flush`](super::Durability::flush) callers share
//! one fsync, so a burst of N durable operations costs a few syncs rather than N.

use super::{Store, StoreError};

/// Group-commit bookkeeping for [`Store::group_flush`].
#[derive(Default)]
pub(super) struct GroupCommit {
    state: std::sync::Mutex<GroupState>,
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct GroupState {
    /// Flush requests so far (each caller takes the next number).
    requested: u64,
    /// Every request up to this number is durable.
    flushed: u64,
    flushing: bool,
    /// fsyncs done (for tests and metrics).
    fsyncs: u64,
    /// A failed flush and the request number it covered.
    error: Option<(u64, sled::Error)>,
}

impl GroupCommit {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn fsyncs(&self) -> u64 {
        self.lock().fsyncs
    }

    /// After a reopen: the failure belongs to the files that are gone.
    pub(super) fn clear_error(&self) {
        self.lock().error = None;
    }
}

impl Store {
    /// Make every write so far durable (fsync), with group commit: callers that arrive
    /// while a flush runs share the next one, so a burst of N durable operations costs a
    /// few fsyncs rather than N. No caller returns before a flush that started after its
    /// call (and so after its writes) has finished.
    pub(super) async fn group_flush(&self) -> Result<(), StoreError> {
        let lock = || self.group.state.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, lead) = {
            let mut g = lock();
            g.requested += 1;
            let lead = !g.flushing;
            g.flushing = true;
            (g.requested, lead)
        };
        if !lead {
            // Someone leads a flush; wait for one that covers us, or take over.
            loop {
                let notified = self.group.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                // `None`: keep waiting; `Some(None)`: lead; `Some(Some(r))`: covered.
                let outcome = {
                    let mut g = lock();
                    if g.flushed >= mine {
                        Some(Some(
                            g.error
                                .as_ref()
                                .filter(|(upto, _)| *upto >= mine)
                                .map_or(Ok(()), |(_, e)| Err(StoreError::from(e.clone()))),
                        ))
                    } else if !g.flushing {
                        g.flushing = true;
                        Some(None)
                    } else {
                        None
                    }
                };
                match outcome {
                    Some(Some(done)) => return done,
                    Some(None) => break,
                    None => notified.await,
                }
            }
        }
        // Lead: flush until every request seen so far is covered.
        let mut result = Ok(());
        loop {
            let target = lock().requested;
            let outcome = {
                let _timer = crate::metrics::Timer::start(crate::metrics::METRICS.store_flush_duration.clone());
                self.files()?.db.flush_async().await
            };
            let mut g = lock();
            g.flushed = target;
            g.fsyncs += 1;
            if let Err(e) = outcome {
                // sled refuses every write after a failed flush, until it is reopened.
                self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                g.error = Some((target, e.clone()));
                if target >= mine {
                    result = Err(e.into());
                }
            }
            self.group.done.notify_waiters();
            if g.requested == g.flushed {
                g.flushing = false;
                self.group.done.notify_waiters();
                return result;
            }
        }
    }
}
