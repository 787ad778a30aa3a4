-- mcsd schema 4: where each key's certificate ends, as a column with an index, so the
-- hourly expiry check reads the keys in its window instead of every row
-- (KeyStorage::keys_ending). put_key writes it with the record; rows written before this
-- schema get it here from their record (one format byte, then the JSON KeyRecord).
ALTER TABLE keys ADD COLUMN cert_not_after bigint;
UPDATE keys
   SET cert_not_after = ((convert_from(substring(record FROM 2), 'UTF8')::jsonb) -> 'certificate' ->> 'not_after')::bigint
 WHERE get_byte(record, 0) = 1;
CREATE INDEX keys_by_cert_end ON keys (cert_not_after, id) WHERE cert_not_after IS NOT NULL;
