//! The PostgreSQL groundwork's tests: the throw-away cluster itself.

use super::testing::{Cluster, connect};

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
