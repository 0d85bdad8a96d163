-- Alerts keyed by a row id the dispatcher assigns in order, so a new alert is appended to the
-- table instead of inserted at a random place by its fingerprint (which dirtied about one page
-- per alert written); the fingerprint becomes a plain column (lookups by fingerprint happen in
-- memory only).

CREATE TABLE alerts_by_row (
    id            INTEGER PRIMARY KEY,
    fingerprint   INTEGER NOT NULL,      -- the label fingerprint as a signed 64-bit integer
    labels        TEXT    NOT NULL,      -- JSON object
    annotations   TEXT    NOT NULL,      -- JSON object
    starts_ns     INTEGER NOT NULL,
    ends_ns       INTEGER,               -- NULL while a rule alert fires; may lag the real end
    updated_ns    INTEGER NOT NULL,
    generator_url TEXT    NOT NULL,
    source        TEXT    NOT NULL,      -- JSON: {"kind":"rule","rule":..,"key":..,"routed":..}, {"kind":"api"}, ...
    timeout       INTEGER NOT NULL       -- 1 when ends_ns comes from the resolve timeout
);

INSERT INTO alerts_by_row (fingerprint, labels, annotations, starts_ns, ends_ns, updated_ns,
                           generator_url, source, timeout)
    SELECT fingerprint, labels, annotations, starts_ns, ends_ns, updated_ns, generator_url,
           source, timeout
    FROM alerts;

DROP TABLE alerts;
ALTER TABLE alerts_by_row RENAME TO alerts;
