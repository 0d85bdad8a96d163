-- Notification bodies may be stored compressed: `snappy` (raw Snappy of the UTF-8 text, in a
-- BLOB) or `identity` (the text itself, as every body written before this column existed).
-- A large group's webhook body is tens of KB of repetitive JSON; compressed it is about a
-- sixth, which is that much less written to the WAL and copied again at each checkpoint.
ALTER TABLE outbox_bodies ADD COLUMN encoding TEXT NOT NULL DEFAULT 'identity';
