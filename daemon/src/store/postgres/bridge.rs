//! Synchronous calls over the async database client.
//!
//! The store's runtime (one worker thread of its own) owns the connections' I/O: every
//! connection task is spawned there. A call polls its query future on the calling thread,
//! with that runtime entered (so the pool can spawn a new connection and time out), and
//! parks the thread between wake-ups. The future only talks to connection tasks through
//! channels, so nothing the calling thread's own runtime runs is ever waited on: no
//! deadlock, whatever the daemon's runtime is doing.
//!
//! On a worker thread of a multi-thread runtime a call first waits in place for up to
//! [`IN_PLACE`]: a healthy database answers well within it, commit and fsync included, and
//! handing the worker's other tasks to another thread costs more than the wait. Measured
//! with `mcs-bench --stores`: handing off at once, 0.37–0.41 × sled's co-sign throughput;
//! after 2 ms, 0.39–0.41; after 10 ms, 0.48–0.50. A call still unanswered then (a lock
//! wait, a failover, a slow disk) goes on inside `block_in_place`, so the worker's other
//! tasks move to another thread and the daemon keeps serving.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::store::StoreError;

/// The store's runtime, shared by the [`PgStore`](super::PgStore) handles of one database.
#[derive(Clone)]
pub(crate) struct Bridge {
    runtime: Arc<Runtime>,
}

/// Shut down without waiting when the last handle goes, wherever that happens (dropping a
/// runtime inside another one's context would panic).
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// How long a call on a runtime worker waits in place before handing the worker's other
/// tasks off (see the module's documentation).
const IN_PLACE: std::time::Duration = std::time::Duration::from_millis(10);

/// Poll `f` on this thread, parking between wake-ups, until it is ready or `until` (if
/// given) passes; `Err` gives the future back unfinished.
fn poll_here<F: Future>(
    mut f: std::pin::Pin<&mut F>,
    until: Option<std::time::Instant>,
) -> Result<F::Output, std::pin::Pin<&mut F>> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return Ok(out);
        }
        // A spurious wake-up only costs one more poll.
        match until {
            None => std::thread::park(),
            Some(t) => match t.checked_duration_since(std::time::Instant::now()) {
                Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                _ => return Err(f),
            },
        }
    }
}

impl Bridge {
    pub(crate) fn new() -> Result<Bridge, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mcsd-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(format!("the store's runtime: {e}")))?;
        Ok(Bridge { runtime: Arc::new(Runtime(Some(rt))) })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        // Only taken out in Drop.
        self.runtime.0.as_ref().expect("runtime").handle()
    }

    /// Run `f` to completion from synchronous code (see the module's documentation).
    pub(crate) fn run<T>(&self, f: impl Future<Output = T>) -> T {
        let on_worker = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let _entered = self.handle().enter();
        let f = std::pin::pin!(f);
        if !on_worker {
            return poll_here(f, None).unwrap_or_else(|_| unreachable!("no deadline"));
        }
        match poll_here(f, Some(std::time::Instant::now() + IN_PLACE)) {
            Ok(out) => out,
            Err(f) => {
                tokio::task::block_in_place(|| poll_here(f, None).unwrap_or_else(|_| unreachable!("no deadline")))
            }
        }
    }
}

/// Drive a connection on the store's runtime (call inside [`Bridge::run`]).
pub(crate) fn drive<C>(conn: C) -> tokio::task::JoinHandle<()>
where
    C: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "store: a database connection ended");
        }
    })
}

/// TLS to the database with the daemon's rustls.
pub(crate) fn tls(config: Arc<rustls::ClientConfig>) -> tokio_postgres_rustls::MakeRustlsConnect {
    tokio_postgres_rustls::MakeRustlsConnect::new((*config).clone())
}
