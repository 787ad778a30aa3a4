-- mcsd schema 3: the inbox (items addressed to a device, read after a cursor).
--
-- `seq` is the cursor: one sequence for all devices, so a device's items are increasing in
-- it, and a number is never reused (a cursor never points back into older items).
CREATE TABLE inbox (
    seq         bigserial PRIMARY KEY,
    device_id   text NOT NULL CHECK (device_id <> ''),
    record      bytea NOT NULL
);
CREATE INDEX inbox_by_device ON inbox (device_id, seq);
