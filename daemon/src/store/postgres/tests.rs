//! The PostgreSQL engine's own tests: the throw-away cluster itself, the migration runner
//! against it (applied once, a second run a no-op, concurrent runners, a newer or an
//! altered schema refused), the schema's constraints, and what the conformance suite cannot
//! see through the interface (node locks, leads, per-node audit chains, backup images). The
//! list of migrations is checked against the files without a database.

use std::time::{Duration, Instant};

use super::migrate::{LOCK_KEY, migrate_with};
use super::testing::{Cluster, connect, pool};
use super::*;

/// Every table of schema 1 (besides `schema_version`): the backup image copies them all.
const TABLES: &[&str] = super::backup::TABLES;

/// Every migration this binary has, as the runner records them.
fn all_versions() -> Vec<i32> {
    MIGRATIONS.iter().map(|m| m.version).collect()
}

fn all_recorded() -> Vec<(i32, String)> {
    MIGRATIONS.iter().map(|m| (m.version, m.name.to_string())).collect()
}

async fn tables(client: &tokio_postgres::Client) -> Vec<String> {
    let rows = client
        .query("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", &[])
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn recorded(client: &tokio_postgres::Client) -> Vec<(i32, String)> {
    let rows = client.query("SELECT version, name FROM schema_version ORDER BY version", &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

#[test]
fn migrations_are_numbered_in_order_and_match_their_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/postgres/migrations");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    let expected: Vec<String> = MIGRATIONS.iter().map(|m| format!("{:04}_{}.sql", m.version, m.name)).collect();
    assert_eq!(files, expected, "every file in migrations/ is in MIGRATIONS, in order");
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, i as i32 + 1, "versions are 1, 2, 3 …");
        assert_eq!(m.sql, std::fs::read_to_string(dir.join(&expected[i])).unwrap());
    }
    assert_eq!(latest_version(), MIGRATIONS.len() as i32);
}

#[test]
fn the_cluster_runs_as_its_owner_on_a_private_socket_and_stops_on_drop() {
    let cluster = Cluster::start();
    eprintln!("test cluster started in {:?}", cluster.started_in);
    let socket = cluster.socket_dir().join(".s.PGSQL.5432");
    assert!(socket.exists(), "the socket is in the cluster's directory");
    let dir = cluster.socket_dir().to_path_buf();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = connect(&cluster.config("postgres")).await;
        let row =
            client.query_one("SELECT current_user::text, current_setting('listen_addresses')", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), "postgres");
        assert_eq!(row.get::<_, String>(1), "", "no TCP listener");
        let a = cluster.fresh_database().await;
        let b = cluster.fresh_database().await;
        assert_ne!(a.get_dbname(), b.get_dbname(), "each test gets its own database");
    });
    drop(rt);
    drop(cluster);
    assert!(!socket.exists(), "the server is gone");
    assert!(!dir.exists(), "and its directory with it");
}

#[tokio::test]
async fn migrations_apply_once_and_a_second_run_is_a_no_op() {
    let cluster = Cluster::shared();
    let mut client = connect(&cluster.fresh_database().await).await;
    assert_eq!(tables(&client).await, Vec::<String>::new());

    assert_eq!(migrate(&mut client).await.unwrap(), all_versions());
    let mut expected: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    expected.push("schema_version".into());
    expected.sort();
    assert_eq!(tables(&client).await, expected);
    assert_eq!(recorded(&client).await, all_recorded());

    // Data written under schema 1 is untouched by a second run.
    client.execute("INSERT INTO meta (name, value) VALUES ('probe', '\\x01')", &[]).await.unwrap();
    assert_eq!(migrate(&mut client).await.unwrap(), Vec::<i32>::new(), "nothing left to apply");
    assert_eq!(recorded(&client).await, all_recorded());
    let probe: i64 = client.query_one("SELECT count(*) FROM meta", &[]).await.unwrap().get(0);
    assert_eq!(probe, 1);
}

/// Two nodes starting together: both wait on the advisory lock (held here), then one
/// applies the schema and the other finds it current. Neither fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runners_wait_for_each_other_and_apply_once() {
    let cluster = Cluster::shared();
    let config = cluster.fresh_database().await;
    let holder = connect(&config).await;
    holder.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await.unwrap();

    let pool = pool(&config, 2);
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                migrate(&mut conn).await
            })
        })
        .collect();

    // Both runners block on the lock before either can apply anything (a bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = holder
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the runners never queued on the advisory lock ({waiting} waiting)");
        tokio::task::yield_now().await;
    }
    assert_eq!(tables(&holder).await, Vec::<String>::new(), "nothing applied under the lock");
    holder.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await.unwrap();

    let mut results = Vec::new();
    for r in runners {
        results.push(r.await.unwrap().unwrap());
    }
    results.sort();
    assert_eq!(results, vec![vec![], all_versions()], "one applied the schema, the other found it current");
    assert_eq!(recorded(&holder).await, all_recorded());
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_alone() {
    let cluster = Cluster::shared();
    let mut client = connect(&cluster.fresh_database().await).await;
    migrate(&mut client).await.unwrap();
    // What a newer mcsd would have recorded.
    let (latest, future) = (latest_version(), latest_version() + 1);
    let insert = "INSERT INTO schema_version (version, name, sha256) VALUES ($1, 'future', '00')";
    client.execute(insert, &[&future]).await.unwrap();

    let err = migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::Newer { database, binary } if database == future && binary == latest),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("newer than this mcsd knows ({latest})")), "{err}");
    let mut expected = all_recorded();
    expected.push((future, "future".to_string()));
    assert_eq!(recorded(&client).await, expected);
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let cluster = Cluster::shared();
    let mut client = connect(&cluster.fresh_database().await).await;
    migrate_with(&mut client, &MIGRATIONS[..1]).await.unwrap();
    let edited = [Migration { version: 1, name: "initial", sql: "CREATE TABLE other (x int);" }];
    let err = migrate_with(&mut client, &edited).await.unwrap_err();
    assert!(matches!(err, MigrateError::Altered { version: 1, .. }), "{err:?}");
    assert!(!tables(&client).await.contains(&"other".to_string()), "nothing of it ran");

    // A later migration, on the other hand, is applied after the recorded ones.
    let mut next = MIGRATIONS.to_vec();
    next.push(Migration { version: latest_version() + 1, name: "next", sql: "CREATE TABLE next_one (x int);" });
    let later: Vec<i32> = (2..=latest_version() + 1).collect();
    assert_eq!(migrate_with(&mut client, &next).await.unwrap(), later, "the rest of this mcsd's, then the new one");
    assert!(tables(&client).await.contains(&"next_one".to_string()));
}

/// A failing migration leaves nothing behind: not its own half, not its record.
#[tokio::test]
async fn a_failing_migration_changes_nothing() {
    let cluster = Cluster::shared();
    let mut client = connect(&cluster.fresh_database().await).await;
    let broken = [MIGRATIONS[0], Migration { version: 2, name: "broken", sql: "CREATE TABLE half (x int); SELEKT;" }];
    assert!(matches!(migrate_with(&mut client, &broken).await, Err(MigrateError::Db(_))));
    assert_eq!(tables(&client).await, Vec::<String>::new(), "schema 1 rolled back with it");
    assert_eq!(migrate(&mut client).await.unwrap(), all_versions());
}

/// The constraints the Storage steps lean on: one audit entry per sequence number of a
/// node's chain, a PIN counter that cannot go below zero, one seal maker.
#[tokio::test]
async fn the_schema_enforces_what_the_steps_rely_on() {
    let cluster = Cluster::shared();
    let mut client = connect(&cluster.fresh_database().await).await;
    migrate(&mut client).await.unwrap();
    let refused = |r: Result<u64, tokio_postgres::Error>| r.unwrap_err().code().cloned();
    use tokio_postgres::error::SqlState;

    client.execute("INSERT INTO audit_entries (seq, node_id, record) VALUES (7, 'a', '\\x01')", &[]).await.unwrap();
    client.execute("INSERT INTO audit_entries (seq, node_id, record) VALUES (7, 'b', '\\x01')", &[]).await.unwrap();
    let twice = client.execute("INSERT INTO audit_entries (seq, node_id, record) VALUES (7, 'a', '\\x02')", &[]).await;
    assert_eq!(refused(twice), Some(SqlState::UNIQUE_VIOLATION), "one entry per number in a node's chain");

    client
        .execute(
            "INSERT INTO keys (id, device_id, enrollment_id, status, record) VALUES ('k', 'd', 'e', 'active', '\\x01')",
            &[],
        )
        .await
        .unwrap();
    let below = client.execute("UPDATE keys SET pin_failures = pin_failures - 1 WHERE id = 'k'", &[]).await;
    assert_eq!(refused(below), Some(SqlState::CHECK_VIOLATION));
    // The counter rises by compare and swap: a stale expected value changes nothing.
    let cas = "UPDATE keys SET pin_failures = pin_failures + 1 WHERE id = 'k' AND pin_failures = $1";
    assert_eq!(client.execute(cas, &[&0i32]).await.unwrap(), 1);
    assert_eq!(client.execute(cas, &[&0i32]).await.unwrap(), 0);

    client.execute("INSERT INTO seal_maker (record) VALUES ('\\x01')", &[]).await.unwrap();
    let second = client.execute("INSERT INTO seal_maker (record) VALUES ('\\x02')", &[]).await;
    assert_eq!(refused(second), Some(SqlState::UNIQUE_VIOLATION));
}

#[test]
fn tests_running_together_share_one_cluster() {
    let a = Cluster::shared();
    let b = Cluster::shared();
    assert!(std::sync::Arc::ptr_eq(&a, &b), "one cluster for the tests of the moment");
    let socket = a.socket_dir().join(".s.PGSQL.5432");
    drop(a);
    assert!(socket.exists(), "still running while a test holds it");
    drop(b);
}

fn open_on(config: &tokio_postgres::Config, node: &str) -> Result<PgStore, StoreError> {
    let mut options = super::conformance::options(config.clone(), node);
    options.node_lock_wait = Duration::ZERO;
    PgStore::open(options)
}

fn fresh_config(cluster: &Cluster) -> tokio_postgres::Config {
    crate::store::conformance::block_on(cluster.fresh_database())
}

/// Each node writes its own audit chain, so two running processes with one node id would
/// collide on every entry: the second is refused at start, with the reason.
#[test]
fn a_node_id_is_held_by_one_running_process() {
    let cluster = Cluster::shared();
    let config = fresh_config(&cluster);
    let a = open_on(&config, "node-a").unwrap();
    let twin = open_on(&config, "node-a").err().expect("refused");
    assert!(twin.to_string().contains("node id \"node-a\" is in use"), "{twin}");
    let b = open_on(&config, "node-b").expect("another node id is fine");
    drop((a, b));
}

/// A singleton job (the task sweeper) runs on one node at a time, and moves to another
/// node when the one leading it goes away.
#[test]
fn a_lead_is_held_by_one_node_and_moves_when_it_goes() {
    let cluster = Cluster::shared();
    let config = fresh_config(&cluster);
    let a = open_on(&config, "node-a").unwrap();
    let b = open_on(&config, "node-b").unwrap();
    assert!(a.lead("sweeper"));
    assert!(a.lead("sweeper"), "kept");
    assert!(!b.lead("sweeper"));
    assert!(b.lead("another job"));
    drop(a);
    // The server lets go of the lock once it notices the connection closed.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.lead("sweeper") {
        assert!(Instant::now() < deadline, "the lead never moved");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Per-node chains: the same sequence number in two chains, each read on its own, and the
/// list of chains for `mcsd audit verify`.
#[test]
fn each_node_writes_its_own_audit_chain() {
    use crate::store::AuditStorage;
    let cluster = Cluster::shared();
    let config = fresh_config(&cluster);
    let (a, b) = (open_on(&config, "node-a").unwrap(), open_on(&config, "node-b").unwrap());
    let entry = |seq: u64, node: &str| crate::model::audit::Entry {
        node: None,
        seq,
        at: 1,
        event: "test".into(),
        actor: node.into(),
        key_id: None,
        platform: None,
        task_id: None,
        outcome: "ok".into(),
        detail: serde_json::Value::Null,
        request_id: None,
        peer: None,
        prev: "00".into(),
        hash: "11".into(),
    };
    assert!(a.append_audit(0, &entry(0, "a")).unwrap());
    assert!(b.append_audit(0, &entry(0, "b")).unwrap());
    assert!(a.append_audit(1, &entry(1, "a")).unwrap());
    assert!(!a.append_audit(1, &entry(1, "a")).unwrap(), "taken in a's chain");
    assert_eq!(a.audit_nodes().unwrap(), vec!["node-a".to_string(), "node-b".to_string()]);
    assert_eq!(a.last_audit().unwrap().unwrap().0, 1);
    assert_eq!(b.last_audit().unwrap().unwrap().1.actor, "b");
    let seen_from_a: Vec<u64> = a.as_node("node-b").audit_entries(0).map(|e| e.unwrap().0).collect();
    assert_eq!(seen_from_a, vec![0]);
    assert_eq!(a.audit_entries(0).count(), 2);
}

/// `mcsd backup` / `restore` on PostgreSQL: an image of every table, restored whole into an
/// empty database only, and refused when damaged.
#[test]
fn a_backup_image_restores_into_an_empty_database_only() {
    use crate::store::conformance::{append, enrollment, key};
    use crate::store::{Durability, KeyStorage};
    let cluster = Cluster::shared();
    let from = open_on(&fresh_config(&cluster), "node-a").unwrap();
    from.put_enrollment(&enrollment("e1")).unwrap();
    from.activate(&key("k1", "e1"), b"share", b"verifier", Some(&append(0))).unwrap();
    let image = from.snapshot().unwrap();
    assert!(is_pg_image(&image));

    let to = open_on(&fresh_config(&cluster), "node-a").unwrap();
    assert!(to.is_empty().unwrap());
    let mut damaged = image.clone();
    damaged[20] ^= 1;
    assert!(to.restore_image(&damaged).unwrap_err().to_string().contains("checksum"));
    assert!(to.is_empty().unwrap(), "a refused restore writes nothing");
    to.restore_image(&image).unwrap();
    assert_eq!(to.key("k1").unwrap(), from.key("k1").unwrap());
    assert_eq!(to.key_secret("k1", crate::model::secret::SecretKind::Share).unwrap().as_deref(), Some(&b"share"[..]));
    assert_eq!(to.snapshot().unwrap(), image, "the same image again");
    let again = to.restore_image(&image).unwrap_err().to_string();
    assert!(again.contains("not empty"), "{again}");
}

/// `mcsd store migrate`: everything a sled store holds arrives whole (the share still the
/// wrapped blob, the audit chain under the target's node), and a non-empty target is
/// refused without a write.
#[test]
fn a_sled_store_is_copied_whole_into_an_empty_database_only() {
    use crate::store::conformance::{append, enrollment, key};
    use crate::store::prelude::*;
    use crate::store::{AuditStorage, PluginKvStorage, Store};
    let dir = tempfile::tempdir().unwrap();
    let sled = Store::open(&dir.path().join("db")).unwrap();
    sled.put_enrollment(&enrollment("e1")).unwrap();
    sled.activate(&key("k1", "e1"), b"share-blob", b"verifier-blob", Some(&append(0))).unwrap();
    sled.count_pin_failure("k1", 0, 5, Some(&append(1))).unwrap().unwrap();
    sled.kv_put("local-ca", b"crl", b"revocations").unwrap();
    // An active delegation with its share, verifier and a counted wrong PIN, and an ended
    // one whose secrets are gone.
    use crate::model::delegation::{DelegationKind, DelegationStatus};
    use crate::model::secret::SecretKind;
    use crate::store::{DelegationChange, DelegationOutcome};
    let step = |d: &crate::model::delegation::DelegationRecord, put: Vec<(SecretKind, &'static [u8])>| {
        let change = DelegationChange { put_secrets: put, ..DelegationChange::of(d) };
        assert_eq!(sled.change_delegation(change).unwrap(), DelegationOutcome::Done);
    };
    let mut d1 = crate::store::conformance::delegation("d1", DelegationKind::Delegate);
    assert!(sled.insert_delegation(&d1, None).unwrap());
    (d1.rev, d1.status, d1.device_id) = (1, DelegationStatus::Active, Some("dev2".into()));
    step(
        &d1,
        vec![(SecretKind::DelegateShare, b"d-share-blob"), (SecretKind::DelegatePinVerifier, b"d-verifier-blob")],
    );
    sled.count_delegate_pin_failure("d1", 0, 5, None).unwrap().unwrap();
    let mut d2 = crate::store::conformance::delegation("d2", DelegationKind::Delegate);
    assert!(sled.insert_delegation(&d2, None).unwrap());
    (d2.rev, d2.status) = (1, DelegationStatus::AwaitingPin);
    step(&d2, vec![(SecretKind::DelegateShare, b"d2-share-blob")]);
    (d2.rev, d2.status, d2.end_reason) = (2, DelegationStatus::Revoked, Some("revoked".into()));
    step(&d2, Vec::new());
    sled.insert_daemon_key(
        &crate::model::key::DaemonKeyRecord { name: "audit".into(), public_key: "04aa".into(), created_at: 1 },
        b"daemon-blob",
    )
    .unwrap();

    let cluster = Cluster::shared();
    let pg = open_on(&fresh_config(&cluster), "node-a").unwrap();
    let copied = pg.copy_from_sled(&sled).unwrap();
    assert_eq!((copied.enrollments, copied.keys, copied.audit_entries, copied.daemon_keys), (1, 1, 2, 1));
    assert_eq!(pg.key("k1").unwrap(), sled.key("k1").unwrap(), "the key with its PIN counter");
    assert_eq!(
        pg.key_secret("k1", crate::model::secret::SecretKind::Share).unwrap().as_deref(),
        Some(&b"share-blob"[..])
    );
    assert_eq!(pg.enrollment("e1").unwrap(), sled.enrollment("e1").unwrap());
    assert_eq!(pg.kv_get("local-ca", b"crl").unwrap().as_deref(), Some(&b"revocations"[..]));
    assert_eq!(pg.daemon_key("audit").unwrap(), sled.daemon_key("audit").unwrap());
    assert_eq!(pg.audit_entry(1).unwrap(), sled.audit_entry(1).unwrap());
    assert_eq!(pg.audit_nodes().unwrap(), vec!["node-a".to_string()]);
    assert_eq!(copied.delegations, 2);
    for id in ["d1", "d2"] {
        assert_eq!(pg.delegation(id).unwrap(), sled.delegation(id).unwrap(), "{id}, with its PIN counter");
        for kind in SecretKind::DELEGATION {
            assert_eq!(pg.delegation_secret(id, kind).unwrap(), sled.delegation_secret(id, kind).unwrap(), "{id}");
        }
    }
    assert_eq!(pg.delegation("d1").unwrap().unwrap().pin.failures, 1);
    assert_eq!(pg.delegation_secret("d1", SecretKind::DelegateShare).unwrap().as_deref(), Some(&b"d-share-blob"[..]));
    assert!(pg.delegation_secret("d2", SecretKind::DelegateShare).unwrap().is_none(), "an ended one has none");
    assert_eq!(pg.open_delegations().unwrap().len(), 1);
    assert_eq!(pg.delegation_of_device("k1", "dev2").unwrap().map(|d| d.id), Some("d1".into()));
    // The delegate's counter goes on from the copied value, in its own column.
    assert_eq!(pg.count_delegate_pin_failure("d1", 1, 5, None).unwrap().unwrap().pin.failures, 2);

    let before = pg.snapshot().unwrap();
    let again = pg.copy_from_sled(&sled).unwrap_err().to_string();
    assert!(again.contains("not empty"), "{again}");
    assert_eq!(pg.snapshot().unwrap(), before, "the refusal wrote nothing");
}

/// TLS to the database: `[store] ca_file` makes the connection TLS-only, verified against
/// that CA and the host name; a server certified by another CA is refused.
#[test]
fn tls_to_the_database_is_verified_against_the_configured_ca() {
    use crate::config::{PgTlsConfig, PostgresConfig};
    let cluster = Cluster::start();
    let mut pick = [0u8; 2];
    getrandom::fill(&mut pick).unwrap();
    let addr = std::net::Ipv4Addr::new(127, 77, pick[0], pick[1].max(1));
    let make_ca = |name: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert, key, params)
    };
    let (ca, ca_key, ca_params) = make_ca("db test CA");
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec![addr.to_string()])
        .unwrap()
        .signed_by(&server_key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    cluster.enable_tls(addr, &server.pem(), &server_key.serialize_pem());

    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (dir.path().join("ca.pem"), dir.path().join("other.pem"));
    std::fs::write(&good, ca.pem()).unwrap();
    std::fs::write(&other, make_ca("someone else").0.pem()).unwrap();
    let cfg = |ca_file: &std::path::Path| PostgresConfig {
        url: format!("host={addr} port=5432 user=postgres dbname=postgres"),
        password_file: None,
        pool_size: 2,
        node_id: "tls-node".into(),
        tls: Some(PgTlsConfig { ca_file: ca_file.to_path_buf(), client: None }),
    };
    let store = crate::store::open_postgres(&cfg(&good)).expect("TLS with the right CA");
    let encrypted: bool = store
        .run(async {
            let c = store.inner.pool.get().await?;
            Ok(c.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await?.get(0))
        })
        .unwrap();
    assert!(encrypted, "the connection is TLS");
    drop(store);
    let refused = crate::store::open_postgres(&cfg(&other)).err().expect("another CA's server is refused");
    assert!(matches!(refused, StoreError::Unreachable(_)), "{refused}");
}

/// The node's lock lives on one connection: when that connection goes (here its backend
/// is terminated, as a failover or a server restart would), the store reports failed until
/// recovery has taken the lock again, so the node is never serving unlocked and another
/// process cannot start as it meanwhile.
#[test]
fn a_lost_node_lock_fails_the_store_until_recovery_takes_it_again() {
    use crate::store::Durability;
    let cluster = Cluster::shared();
    let config = fresh_config(&cluster);
    let a = open_on(&config, "node-a").unwrap();
    assert!(a.node_running("node-a").unwrap());
    let terminated: i64 = crate::store::conformance::block_on(async {
        let admin = connect(&config).await;
        let sql = "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
                   WHERE locktype = 'advisory' AND granted AND classid = $1::int4::oid AND objsubid = 2
                     AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
        admin.query_one(sql, &[&NODE_LOCK]).await.unwrap().get(0)
    });
    assert_eq!(terminated, 1, "one connection held the node's lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.probe();
        if a.failed() {
            break;
        }
        assert!(Instant::now() < deadline, "the lost lock was never noticed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(a.flush_blocking().is_err(), "no write is acknowledged meanwhile");
    assert!(a.recover().unwrap(), "recovered");
    assert!(!a.failed());
    assert!(a.node_running("node-a").unwrap(), "the lock is held again");
    assert!(open_on(&config, "node-a").is_err(), "and refuses a second process");
    a.probe();
    assert!(!a.failed(), "a held lock is not a failure");
}

/// Schema 4 fills `cert_not_after` of the rows written before it from their records, so
/// the expiry check's index finds the certificates issued under schema 3.
#[tokio::test]
async fn schema_4_fills_the_certificate_ends_of_earlier_rows() {
    let cluster = Cluster::shared();
    let mut client = connect(&cluster.fresh_database().await).await;
    migrate_with(&mut client, &MIGRATIONS[..3]).await.unwrap();
    let mut with_cert = crate::store::conformance::key("k1", "e1");
    with_cert.certificate = Some(crate::store::conformance::certificate_ending("01", 1_700_000_000));
    let without = crate::store::conformance::key("k2", "e2");
    for k in [&with_cert, &without] {
        client
            .execute(
                "INSERT INTO keys (id, device_id, enrollment_id, status, record) VALUES ($1, 'd', 'e', 'active', $2)",
                &[&k.id, &super::encode_record(k)],
            )
            .await
            .unwrap();
    }
    assert_eq!(migrate(&mut client).await.unwrap(), vec![4]);
    let ends: Vec<(String, Option<i64>)> = client
        .query("SELECT id, cert_not_after FROM keys ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(ends, [("k1".to_string(), Some(1_700_000_000)), ("k2".to_string(), None)]);
}
