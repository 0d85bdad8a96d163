-- The alert manager's durable state: alerts, silences, the notification log; outbox rows now
-- name their receiver (the delivery queue) and group (delivered in order within a group).

CREATE TABLE alerts (
    fingerprint   INTEGER PRIMARY KEY,   -- the label fingerprint as a signed 64-bit integer
    labels        TEXT    NOT NULL,      -- JSON object
    annotations   TEXT    NOT NULL,      -- JSON object
    starts_ns     INTEGER NOT NULL,
    ends_ns       INTEGER,               -- NULL while a rule alert fires
    updated_ns    INTEGER NOT NULL,
    generator_url TEXT    NOT NULL,
    source        TEXT    NOT NULL,      -- JSON: {"kind":"rule","rule":..,"key":..,"routed":..}, {"kind":"api"}, ...
    timeout       INTEGER NOT NULL       -- 1 when ends_ns comes from the resolve timeout
);

CREATE TABLE silences (
    id         TEXT    PRIMARY KEY,
    spec       TEXT    NOT NULL,         -- JSON of the silence
    updated_ns INTEGER NOT NULL
);

CREATE TABLE nflog (
    receiver   TEXT    NOT NULL,
    group_key  TEXT    NOT NULL,
    firing     TEXT    NOT NULL,         -- fingerprints notified firing, hex, comma-separated
    resolved   TEXT    NOT NULL,         -- fingerprints notified resolved
    sent_ns    INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    PRIMARY KEY (receiver, group_key)
);

ALTER TABLE outbox ADD COLUMN receiver  TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN group_key TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_by_receiver ON outbox (receiver, status, next_attempt_ns);
CREATE INDEX outbox_by_group ON outbox (receiver, group_key, status, id);
