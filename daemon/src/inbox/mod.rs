//! The inbox service: durable items addressed to a device — a task sent to a
//! certificate's phones, an approval to give, a delegation accepted or ended — and the
//! long-poll that reads them (`GET /v1/inbox?after=&wait=`).
//!
//! An item is stored (and made durable) before anyone is told of it. Reading with a cursor
//! first drops the items up to that cursor: the app has them. Waiters on this node wake on
//! this node's posts at once; on a store several nodes share they also re-read every 200 ms,
//! as task long-polls do, to see other nodes' posts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::model::inbox::{InboxEvent, InboxRecord, PUSH_PLATFORM, PushBody};
use crate::model::task::CallbackRecord;
use crate::store::{Storage, StoreError};

/// At most this many items per answer; the cursor moves on to the next ones.
pub const PAGE: usize = 100;

/// How often a waiter on a shared store looks again.
const SHARED_POLL: Duration = Duration::from_millis(200);

pub struct InboxService {
    store: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    posted: Notify,
    /// `[push] url`: each item also goes into the callback outbox as a content-free wake-up.
    push_url: std::sync::OnceLock<String>,
    /// Wakes the outbox's dispatcher when a push is queued.
    pub(crate) pushed: Notify,
}

/// One answer of [`InboxService::read`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<InboxRecord>,
    /// Give it back as `after` for the next items (it passes every item of this page).
    pub cursor: u64,
}

fn random_item_id() -> Result<String, StoreError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| StoreError::Refused(format!("OS RNG: {e}")))?;
    Ok(format!("i_{}", hex::encode(b)))
}

impl InboxService {
    pub fn new(store: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> InboxService {
        InboxService {
            store,
            clock,
            posted: Notify::new(),
            push_url: std::sync::OnceLock::new(),
            pushed: Notify::new(),
        }
    }

    /// Wake apps through a push service: every item from now on is also POSTed to `url`
    /// as `{device_id, type, id}`, by the callback outbox (mutual TLS, retried).
    pub fn push_to(&self, url: String) {
        let _ = self.push_url.set(url);
    }

    /// Store an item for `device_id` (and its push wake-up), durably, then wake its
    /// waiters.
    pub async fn post(&self, device_id: &str, event: InboxEvent) -> Result<(), StoreError> {
        let item =
            InboxRecord { id: random_item_id()?, device_id: device_id.to_owned(), created_at: self.clock.now(), event };
        let seq = self.store.push_inbox(&item)?;
        if let Some(url) = self.push_url.get() {
            self.store.put_callback(&CallbackRecord {
                task_id: item.id.clone(),
                url: url.clone(),
                attempts: 0,
                next_at_ms: self.clock.now_ms(),
                platform: PUSH_PLATFORM.to_owned(),
                push: Some(PushBody {
                    device_id: device_id.to_owned(),
                    kind: item.event.kind().to_owned(),
                    id: item.id.clone(),
                }),
            })?;
        }
        self.store.flush().await?;
        tracing::debug!(device_id, kind = item.event.kind(), seq, "inbox item posted");
        self.posted.notify_waiters();
        if self.push_url.get().is_some() {
            self.pushed.notify_one();
        }
        Ok(())
    }

    /// [`InboxService::post`] to each device, in order; the first failure is returned
    /// after trying every device (an item lost for one must not cost the others theirs).
    pub async fn post_each(&self, devices: &[String], event: &InboxEvent) -> Result<(), StoreError> {
        let mut first = None;
        for d in devices {
            if let Err(e) = self.post(d, event.clone()).await {
                tracing::error!(device_id = %d, error = %e, "inbox item not posted");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The device's items after `after` (dropping those up to it: the app has them),
    /// waiting up to `wait` for one when there is none.
    pub async fn read(&self, device_id: &str, after: u64, wait: Duration) -> Result<Page, StoreError> {
        if after > 0 {
            self.store.trim_inbox(device_id, after)?;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.posted.notified();
            let items = self.store.inbox_after(device_id, after, PAGE)?;
            if !items.is_empty() {
                let cursor = items.last().map_or(after, |(seq, _)| *seq);
                return Ok(Page { items: items.into_iter().map(|(_, i)| i).collect(), cursor });
            }
            let bound = match self.store.shared() {
                true => deadline.min(tokio::time::Instant::now() + SHARED_POLL),
                false => deadline,
            };
            if tokio::time::timeout_at(bound, notified).await.is_err() && bound == deadline {
                return Ok(Page { items: Vec::new(), cursor: after });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inbox::InboxEvent;
    use crate::store::Store;

    fn service() -> (tempfile::TempDir, Arc<InboxService>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Storage> = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        (dir, Arc::new(InboxService::new(store, crate::clock::system())))
    }

    fn accepted(n: u32) -> InboxEvent {
        InboxEvent::DelegationAccepted { delegation_id: format!("d{n}") }
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_a_post_and_the_cursor_drops_what_it_passed() {
        let (_dir, inbox) = service();
        let empty = inbox.read("dev-a", 0, Duration::ZERO).await.unwrap();
        assert_eq!(empty, Page { items: vec![], cursor: 0 });

        let waiting = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.read("dev-a", 0, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        inbox.post("dev-b", accepted(0)).await.unwrap();
        inbox.post("dev-a", accepted(1)).await.unwrap();
        let page = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap().unwrap();
        assert_eq!(page.items.len(), 1, "only dev-a's item");
        assert_eq!((page.items[0].device_id.as_str(), &page.items[0].event), ("dev-a", &accepted(1)));
        assert!(page.items[0].id.starts_with("i_"));

        inbox.post("dev-a", accepted(2)).await.unwrap();
        let next = inbox.read("dev-a", page.cursor, Duration::ZERO).await.unwrap();
        assert_eq!(next.items.iter().map(|i| &i.event).collect::<Vec<_>>(), vec![&accepted(2)]);
        let again = inbox.read("dev-a", 0, Duration::ZERO).await.unwrap();
        assert_eq!(again.items.len(), 1, "the first item went when the cursor passed it");
        assert_eq!(inbox.read("dev-b", 0, Duration::ZERO).await.unwrap().items.len(), 1, "dev-b's untouched");
    }
}
