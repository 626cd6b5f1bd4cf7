-- Cloakroom's session schema for SQLite, version 1.
--
-- One row per session. `data` and `notes` are JSON objects mapping each
-- name to its value's JSON text. `user_json` repeats the stored user
-- binding (the JSON text under the reserved name), kept by every write,
-- and `user_key` is set when the session joins its user's index. Times
-- are milliseconds since the Unix epoch, as the application's clock gives
-- them; a session is live while expires_at > now, and expires_at never
-- passes deadline.
CREATE TABLE IF NOT EXISTS cloakroom_sessions (
    id         BLOB    NOT NULL PRIMARY KEY,
    data       TEXT    NOT NULL,
    notes      TEXT    NOT NULL,
    created    INTEGER NOT NULL,
    deadline   INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_json  TEXT,
    user_key   TEXT
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS cloakroom_sessions_expires_at
    ON cloakroom_sessions (expires_at);
CREATE INDEX IF NOT EXISTS cloakroom_sessions_user_key
    ON cloakroom_sessions (user_key) WHERE user_key IS NOT NULL;
