//! Opening the configured store: sled at `[store] path`, or PostgreSQL at `[store] url`.

use std::sync::Arc;

use super::{PgOptions, PgStore, Storage, Store, StoreError};
use crate::config::{Backend, PgTlsConfig, PostgresConfig, StoreConfig};

/// The store `cfg` names, opened (for postgres: connected, migrated, this node's lock held).
pub fn open(cfg: &StoreConfig) -> Result<Arc<dyn Storage>, StoreError> {
    match (cfg.backend, &cfg.postgres) {
        (Backend::Postgres, Some(pg)) => Ok(Arc::new(open_postgres(pg)?)),
        _ => Ok(Arc::new(Store::open_with_cache(&cfg.path, cfg.cache_mb)?)),
    }
}

/// [`open`] for a tool that runs beside a serving node (`mcsd audit verify`, `backup`,
/// `restore`, `hsm rotate-kek`): on PostgreSQL without taking the node's lock, so it does
/// not wait for the node to stop. It must write no audit entry.
/// Open the store to check it, changing nothing: PostgreSQL without the node lock and
/// without migrating (a schema that is not this binary's is refused); sled as `run` opens
/// it (its lock refuses a second process).
pub fn open_check(cfg: &StoreConfig) -> Result<Arc<dyn Storage>, StoreError> {
    match (cfg.backend, &cfg.postgres) {
        (Backend::Postgres, Some(pg)) => {
            Ok(Arc::new(PgStore::open(PgOptions { lock_node: false, migrate: false, ..postgres_options(pg)? })?))
        }
        _ => open(cfg),
    }
}

pub fn open_tool(cfg: &StoreConfig) -> Result<Arc<dyn Storage>, StoreError> {
    match (cfg.backend, &cfg.postgres) {
        (Backend::Postgres, Some(pg)) => {
            Ok(Arc::new(PgStore::open(PgOptions { lock_node: false, ..postgres_options(pg)? })?))
        }
        _ => open(cfg),
    }
}

/// What `url` and the rest of `[store]` say, as the client's options.
pub fn postgres_options(pg: &PostgresConfig) -> Result<PgOptions, StoreError> {
    let refused = |why: String| StoreError::Refused(why);
    let mut config: tokio_postgres::Config =
        pg.url.parse().map_err(|e| refused(format!("store.url is not a libpq connection string: {e}")))?;
    if let Some(file) = &pg.password_file {
        let password = std::fs::read_to_string(file)
            .map_err(|e| StoreError::Io { path: file.display().to_string(), source: e })?;
        config.password(password.trim_end_matches(['\n', '\r']));
    }
    if config.get_application_name().is_none() {
        config.application_name(format!("mcsd {}", pg.node_id));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    // Notice a dead server (a failover) on idle pooled connections, not only on use.
    config.keepalives(true).keepalives_idle(std::time::Duration::from_secs(30));
    let tls = match &pg.tls {
        None => None,
        Some(t) => Some(Arc::new(client_tls(t)?)),
    };
    // A configured CA means TLS is wanted: never fall back to plain text (libpq's `prefer`,
    // the default), unless the string itself says otherwise.
    if tls.is_some() && config.get_ssl_mode() == tokio_postgres::config::SslMode::Prefer {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    Ok(PgOptions { pool_size: pg.pool_size, tls, ..PgOptions::new(config, &pg.node_id) })
}

pub fn open_postgres(pg: &PostgresConfig) -> Result<PgStore, StoreError> {
    PgStore::open(postgres_options(pg)?)
}

fn client_tls(t: &PgTlsConfig) -> Result<rustls::ClientConfig, StoreError> {
    let refused = |why: String| StoreError::Refused(format!("store TLS: {why}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::pem::load_certs(&t.ca_file).map_err(|e| refused(e.to_string()))? {
        roots.add(cert).map_err(|e| refused(format!("{}: {e}", t.ca_file.display())))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(e.to_string()))?
        .with_root_certificates(roots);
    match &t.client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = crate::pem::load_certs(cert).map_err(|e| refused(e.to_string()))?;
            let key = crate::pem::load_key(key).map_err(|e| refused(e.to_string()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| refused(e.to_string()))
        }
    }
}

/// `mcsd restore`: the configured (empty) store rebuilt from a backup image of the same
/// backend. Returns the records restored.
pub fn restore(cfg: &StoreConfig, image: &[u8]) -> Result<u64, StoreError> {
    match (cfg.backend, &cfg.postgres) {
        (Backend::Postgres, Some(pg)) => {
            PgStore::open(PgOptions { lock_node: false, ..postgres_options(pg)? })?.restore_image(image)
        }
        _ if super::postgres::is_pg_image(image) => Err(StoreError::Refused(
            "this is a backup of a PostgreSQL store; the configured store is sled (use mcsd store migrate to move \
             between backends)"
                .into(),
        )),
        _ => Ok(Store::restore(&cfg.path, image)? as u64),
    }
}
