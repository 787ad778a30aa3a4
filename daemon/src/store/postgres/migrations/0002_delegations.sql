-- mcsd schema 2: delegations (API.md "Organisations"), implemented by postgres/delegations.rs.
--
-- A delegation is another device's share pair of a key. As with keys, the record keeps the
-- versioned JSON, and the columns are what a step locks or compares: `rev` for the
-- compare-and-swap of every change, the delegate's own PIN counter (raised in one UPDATE
-- from the expected value, like a key's), the key and the device. Its wrapped secrets (the
-- delegate's server share, its verifier, the owner's handover) are `secrets` rows owned by
-- the delegation id, deleted when it ends, as a key's are at revocation.
CREATE TABLE delegations (
    id            text PRIMARY KEY,
    key_id        text NOT NULL,
    device_id     text,
    status        text NOT NULL,
    final         boolean NOT NULL,
    rev           bigint NOT NULL CHECK (rev >= 0),
    pin_failures  integer NOT NULL DEFAULT 0 CHECK (pin_failures >= 0),
    pin_locked    boolean NOT NULL DEFAULT false,
    record        bytea NOT NULL
);
CREATE INDEX delegations_by_key ON delegations (key_id, id);
CREATE INDEX delegations_open ON delegations (id) WHERE NOT final;
