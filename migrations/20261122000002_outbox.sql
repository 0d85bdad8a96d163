-- Notifications waiting to be delivered, written in the same transaction as the alert event that
-- causes them (an outbox), so a crash never loses one: after a restart they are sent again.

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ns      INTEGER NOT NULL,
    kind            TEXT    NOT NULL,     -- 'post' or 'log'
    target          TEXT    NOT NULL,     -- URL or file path
    headers         TEXT    NOT NULL,     -- JSON object of extra HTTP headers
    timeout_ms      INTEGER NOT NULL,
    body            TEXT    NOT NULL,
    status          TEXT    NOT NULL,     -- 'pending', 'sent', 'failed'
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ns INTEGER NOT NULL,
    last_error      TEXT
);

CREATE INDEX outbox_due ON outbox (status, next_attempt_ns);
