-- mcsd schema 1: one table per aggregate of the Storage interface (daemon/src/store/storage.rs),
-- implemented by postgres/*.rs.
--
-- Every aggregate row keeps the store's versioned record (`record`: one format byte, then
-- JSON, as codec.rs writes it for sled), so a reader that meets an unknown format refuses
-- the row instead of guessing. Next to it are only the columns a step must query, lock or
-- compare in SQL: ids, indexes, the compare-and-swap revisions and the PIN state. The
-- wrapped secrets (HSM-made AES-GCM blobs, never plaintext) live in `secrets`, apart from
-- the records, so that revocation deletes exactly them.
--
-- Applied by the migration runner (postgres/migrate.rs) inside one transaction holding the
-- advisory lock, and recorded in `schema_version`, which the runner creates itself.

-- Enrollments: id -> record; activation locks the row and moves `state` pending -> activated.
CREATE TABLE enrollments (
    id          text PRIMARY KEY,
    state       text NOT NULL,
    record      bytea NOT NULL
);

-- Keys: public data and security state. The PIN failure counter and the lock are the
-- columns, not the record's copy (readers take them from here): count_pin_failure raises
-- the counter in one UPDATE from the expected value (the row lock orders concurrent wrong
-- PINs from any number of nodes), and the CHECK keeps it from going below zero.
CREATE TABLE keys (
    id            text PRIMARY KEY,
    device_id     text NOT NULL,
    enrollment_id text NOT NULL,
    status        text NOT NULL,
    pin_failures  integer NOT NULL DEFAULT 0 CHECK (pin_failures >= 0),
    pin_locked    boolean NOT NULL DEFAULT false,
    record        bytea NOT NULL
);
-- A phone's key list (sled's `device_keys` index).
CREATE INDEX keys_by_device ON keys (device_id, id);

-- Wrapped secrets: a key's share and PIN verifier, a task's input and result, a daemon
-- key (`owner` = `daemon:<name>`). `kind` is the SecretKind's label.
CREATE TABLE secrets (
    owner       text NOT NULL,
    kind        text NOT NULL,
    blob        bytea NOT NULL,
    PRIMARY KEY (owner, kind)
);

-- Scan and csr tasks. Transitions lock the row and compare `rev`, so a task is claimed,
-- completed or expired once across all nodes. The open tasks of a platform (quota: count
-- and bytes, earliest expiry) are read by index under a per-platform advisory lock.
CREATE TABLE tasks (
    id            text PRIMARY KEY,
    platform      text NOT NULL,
    status        text NOT NULL,
    final         boolean NOT NULL,
    rev           bigint NOT NULL CHECK (rev >= 0),
    expires_at    bigint NOT NULL,
    charged_bytes bigint NOT NULL DEFAULT 0 CHECK (charged_bytes >= 0),
    record        bytea NOT NULL
);
CREATE INDEX tasks_open_by_platform ON tasks (platform, expires_at) WHERE NOT final;

-- The callback outbox: one row per task to notify. A sender leases a due row
-- (SELECT ... FOR UPDATE SKIP LOCKED), stamping `lease_token` and `lease_until`; only the
-- holder of the token may complete or reschedule it, and an expired lease is free again,
-- so a node killed while holding one loses nothing.
CREATE TABLE callbacks (
    task_id     text PRIMARY KEY,
    next_at_ms  bigint NOT NULL,
    lease_token text,
    lease_until bigint,
    record      bytea NOT NULL
);
CREATE INDEX callbacks_due ON callbacks (next_at_ms);

-- Seals: replaced by compare and swap on `rev`.
CREATE TABLE seals (
    id          text PRIMARY KEY,
    rev         bigint NOT NULL CHECK (rev >= 0),
    record      bytea NOT NULL
);

-- The seal maker: at most one row.
CREATE TABLE seal_maker (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    record      bytea NOT NULL
);

-- The daemon's own SM2 keys, created once (INSERT ... ON CONFLICT DO NOTHING, then read
-- back the winner); the wrapped private key is in `secrets`.
CREATE TABLE daemon_keys (
    name        text PRIMARY KEY,
    record      bytea NOT NULL
);

-- The audit log: one hash chain per node (see ARCHITECTURE.md, "Audit across nodes"). A
-- step whose entry's number is taken in its node's chain fails whole.
CREATE TABLE audit_entries (
    node_id     text NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 0),
    record      bytea NOT NULL,
    PRIMARY KEY (node_id, seq)
);

-- Signed checkpoints of each chain.
CREATE TABLE audit_checkpoints (
    node_id     text NOT NULL,
    seq         bigint NOT NULL CHECK (seq >= 0),
    record      bytea NOT NULL,
    PRIMARY KEY (node_id, seq)
);

-- The adapters' key-value state (plugin ABI kv_get / kv_put / kv_cas), per adapter.
CREATE TABLE plugin_kv (
    namespace   text NOT NULL,
    key         bytea NOT NULL,
    value       bytea NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- Small facts (sled's `meta` tree).
CREATE TABLE meta (
    name        text PRIMARY KEY,
    value       bytea NOT NULL
);
