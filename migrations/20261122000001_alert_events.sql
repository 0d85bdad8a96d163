-- Alert events as rules emit them, and the current state of every alert.

CREATE TABLE alert_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    task           TEXT    NOT NULL,
    node           TEXT    NOT NULL,
    group_id       TEXT    NOT NULL,
    alert_id       TEXT    NOT NULL,
    level          TEXT    NOT NULL,
    previous_level TEXT    NOT NULL,
    time_ns        INTEGER NOT NULL,
    duration_ns    INTEGER NOT NULL,
    message        TEXT    NOT NULL,
    body           TEXT    NOT NULL  -- the event in Kapacitor's alert JSON
);

CREATE INDEX alert_events_by_alert ON alert_events (alert_id, seq);

-- One row per alert (rule, alert node, group): what it resumes from after a restart.
CREATE TABLE alert_state (
    task            TEXT    NOT NULL,
    node            TEXT    NOT NULL,
    group_id        TEXT    NOT NULL,
    alert_id        TEXT    NOT NULL,
    level           TEXT    NOT NULL,
    first_triggered INTEGER NOT NULL,
    last_event_ns   INTEGER NOT NULL,
    message         TEXT    NOT NULL,
    PRIMARY KEY (task, node, group_id)
);
