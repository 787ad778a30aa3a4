//! Synchronous calls over the async database client.
//!
//! The store's runtime (one worker thread of its own) owns the connections' I/O: every
//! connection task is spawned there. A call polls its query future on the calling thread,
//! with that runtime entered (so the pool can spawn a new connection and time out), and
//! parks the thread between wake-ups. The future only talks to connection tasks through
//! channels, so nothing the calling thread's own runtime runs is ever waited on: no
//! deadlock, whatever the daemon's runtime is doing. On a worker thread of a multi-thread
//! runtime the wait is inside `block_in_place`, so the worker's other tasks are handed to
//! another thread meanwhile.

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

/// Poll `f` to completion on this thread, parking between wake-ups.
fn poll_here<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        // A spurious wake-up only costs one more poll.
        std::thread::park();
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
        let go = || {
            let _entered = self.handle().enter();
            poll_here(f)
        };
        match on_worker {
            true => tokio::task::block_in_place(go),
            false => go(),
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
