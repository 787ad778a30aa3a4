-- mcsd schema 1: one table per aggregate of the Storage interface (daemon/src/store/storage.rs).
--
-- Every aggregate row keeps the store's versioned record (`record`: one format byte, then
-- JSON, as codec.rs writes it for sled), so a reader that meets an unknown format refuses
-- the row instead of guessing. Next to it are only the columns a step must query, lock or
-- compare in SQL: ids, indexes, the compare-and-swap revisions and the PIN counter. The
-- wrapped secrets (HSM-made AES-GCM blobs, never plaintext) live in `secrets`, apart from
-- the records, so that revocation deletes exactly them.
--
-- Applied by the migration runner (postgres/migrate.rs) inside one transaction holding the
-- advisory lock, and recorded in `schema_version`, which the runner creates itself.

-- Enrollments: id -> record; activation compares and swaps on `state` (pending -> activated).
CREATE TABLE enrollments (
    id          text PRIMARY KEY,
    state       text NOT NULL,
    record      bytea NOT NULL
);

-- Keys: public data and security state. The PIN failure counter and the lock are columns
-- of their own: count_pin_failure takes the row lock (SELECT ... FOR UPDATE) and raises the
-- counter only from the expected value, so concurrent wrong PINs on any number of nodes
-- are counted one after the other; it never goes below zero. `rev` rises with every write
-- to the row, for edits that compare and swap.
CREATE TABLE keys (
    id            text PRIMARY KEY,
    device_id     text NOT NULL,
    enrollment_id text NOT NULL,
    status        text NOT NULL,
    pin_failures  integer NOT NULL DEFAULT 0 CHECK (pin_failures >= 0),
    pin_locked    boolean NOT NULL DEFAULT false,
    rev           bigint NOT NULL DEFAULT 0 CHECK (rev >= 0),
    record        bytea NOT NULL
);
-- A phone's key list (sled's `device_keys` index).
CREATE INDEX keys_by_device ON keys (device_id, id);

-- Certificate chains, each distinct one once, referenced from key records by digest.
CREATE TABLE ca_chains (
    sha256      text PRIMARY KEY,
    chain       bytea NOT NULL
);

-- Wrapped secrets: a key's share and PIN verifier, a task's input and result. `owner` is
-- the key or task id, `kind` the SecretKind. `kek_version` names the KEK that wrapped the
-- blob, so a rotation can find what is left under an old one.
CREATE TABLE secrets (
    owner       text NOT NULL,
    kind        text NOT NULL,
    kek_version integer NOT NULL DEFAULT 0,
    blob        bytea NOT NULL,
    PRIMARY KEY (owner, kind)
);
CREATE INDEX secrets_by_kek ON secrets (kek_version);

-- Scan and csr tasks. Transitions compare and swap on `rev` (UPDATE ... WHERE rev = the
-- expected one), so a task is claimed, completed or expired once across all nodes. The
-- open tasks of a platform (quota: count and bytes, earliest expiry) are read by index.
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
CREATE INDEX tasks_by_expiry ON tasks (expires_at) WHERE NOT final;

-- `once` roaming grants already used (key id, platform): inserting the pair twice fails,
-- which is how a transition consumes a grant once across nodes.
CREATE TABLE consumed_grants (
    key_id      text NOT NULL,
    platform    text NOT NULL,
    task_id     text NOT NULL,
    PRIMARY KEY (key_id, platform)
);

-- The callback outbox: one row per task to notify. A sender leases due rows with
-- SELECT ... FOR UPDATE SKIP LOCKED, stamping `lease_token` and `lease_until`; only the
-- holder of the token may complete or reschedule the row, and an expired lease is free
-- again, so a node killed while holding one loses nothing.
CREATE TABLE callbacks (
    task_id     text PRIMARY KEY,
    platform    text NOT NULL,
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

-- The daemon's own SM2 keys: created once (INSERT ... ON CONFLICT DO NOTHING, then read
-- back the winner), with their wrapped private key.
CREATE TABLE daemon_keys (
    name        text PRIMARY KEY,
    record      bytea NOT NULL,
    blob        bytea NOT NULL
);

-- The audit chain: the sequence number is the primary key, so a step whose entry's number
-- is taken fails whole, on whichever node wrote first. Each entry names its node.
CREATE TABLE audit_entries (
    seq         bigint PRIMARY KEY CHECK (seq >= 0),
    node_id     text NOT NULL,
    record      bytea NOT NULL
);

-- Signed checkpoints of the chain, each at an existing entry.
CREATE TABLE audit_checkpoints (
    seq         bigint PRIMARY KEY REFERENCES audit_entries (seq),
    record      bytea NOT NULL
);

-- Small facts (sled's `meta` tree).
CREATE TABLE meta (
    name        text PRIMARY KEY,
    value       bytea NOT NULL
);
