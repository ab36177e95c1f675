-- The dashboard's signed-out sessions. A session is a signed cookie that
-- needs no row; signing out records its id here until it would have
-- expired anyway, so that every process refuses the old cookie.
CREATE TABLE tds_ui_revoked (
    session_id TEXT      PRIMARY KEY,
    expires_at TIMESTAMP NOT NULL
);
