//! The conformance suite on PostgreSQL: each store a fresh database on the tests' shared
//! throw-away cluster, and a restart that drops every handle and connects again — what a
//! node killed and started again finds, since every step committed before it returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::testing::Cluster;
use super::{PgOptions, PgStore};
use crate::store::Storage;
use crate::store::conformance::Factory;

struct Postgres {
    cluster: Arc<Cluster>,
    /// Each store's connection settings, by the address of its handle.
    configs: Mutex<HashMap<usize, tokio_postgres::Config>>,
}

fn id(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const u8 as usize
}

pub(super) fn options(config: tokio_postgres::Config, node: &str) -> PgOptions {
    PgOptions { pool_size: 8, ..PgOptions::new(config, node) }
}

impl Postgres {
    fn new() -> Postgres {
        Postgres { cluster: Cluster::shared(), configs: Default::default() }
    }

    fn open(&self, config: tokio_postgres::Config) -> Arc<dyn Storage> {
        let store: Arc<dyn Storage> = Arc::new(PgStore::open(options(config.clone(), "node-a")).expect("open"));
        self.configs.lock().unwrap().insert(id(&store), config);
        store
    }
}

impl Factory for Postgres {
    fn fresh(&self) -> Arc<dyn Storage> {
        self.open(crate::store::conformance::block_on(self.cluster.fresh_database()))
    }

    fn restart(&self, store: Arc<dyn Storage>) -> Arc<dyn Storage> {
        let config = self.configs.lock().unwrap().remove(&id(&store)).expect("a store of this factory");
        drop(store);
        self.open(config)
    }
}

crate::conformance_tests!(Postgres::new());
