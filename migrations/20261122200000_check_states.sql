-- The state of every passive check, so SOFT/HARD, attempts, flap history and the alerts a
-- check has firing survive a restart. Written in batches every few seconds and at shutdown;
-- a retired host's rows are deleted.
CREATE TABLE check_states (
    host            TEXT    NOT NULL,
    service         TEXT    NOT NULL,   -- '' for the host check
    state           INTEGER NOT NULL,   -- 0 OK/UP, 1 WARNING/DOWN, 2 CRITICAL/UNREACHABLE, 3 UNKNOWN
    hard            INTEGER NOT NULL,   -- 1 HARD, 0 SOFT
    attempt         INTEGER NOT NULL,
    hard_state      INTEGER NOT NULL,
    summary         TEXT    NOT NULL,
    perfdata        TEXT    NOT NULL,
    long_output     TEXT    NOT NULL,
    last_result_ns  INTEGER NOT NULL,
    last_change_ns  INTEGER NOT NULL,
    interval_ns     INTEGER,
    stale           INTEGER NOT NULL,
    history         TEXT    NOT NULL,   -- the last 21 states, oldest first, one digit each
    flapping        INTEGER NOT NULL,
    percent_change  REAL    NOT NULL,
    firing_severity TEXT,               -- severity label of the state alert firing, if any
    flap_firing     INTEGER NOT NULL,   -- the Flapping alert is firing
    PRIMARY KEY (host, service)
);
