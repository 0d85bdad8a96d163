-- The host registry: every host that sent metrics or check results, until it is retired.
CREATE TABLE hosts (
    name          TEXT    PRIMARY KEY,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns  INTEGER NOT NULL,
    sources       TEXT    NOT NULL      -- comma-separated: metrics, checks
);
