-- Notification bodies (tens of KB for a large group) move to a table of their own. SQLite
-- rewrites a whole record, overflow pages included, whenever one of its columns changes; with
-- the body beside the status, marking a notification sent or scheduling its retry rewrote the
-- body too. Now those updates touch a row of a few dozen bytes and the body is written once.
CREATE TABLE outbox_bodies (
    id   INTEGER PRIMARY KEY,   -- outbox.id
    body TEXT    NOT NULL
);

INSERT INTO outbox_bodies (id, body) SELECT id, body FROM outbox;

ALTER TABLE outbox DROP COLUMN body;
