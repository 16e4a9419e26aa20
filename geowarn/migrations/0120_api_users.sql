-- Users of the duty officers' API and console (api/), their sessions and API keys, and the
-- login attempts that throttle password guessing.
--
-- Roles: admin, duty_officer, monitor, viewer. Each user is scoped to administrative codes
-- (GB/T 2260): a county code (330110) covers that county, a city code (330100) its counties,
-- a province code (330000) the province. Passwords are argon2id hashes; session tokens and
-- API keys are stored only as SHA-256 hashes of random 256-bit secrets (a stolen table does
-- not open a session).

CREATE TABLE IF NOT EXISTS api_users (
    user_id        bigserial PRIMARY KEY,
    username       text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{1,63}$'),
    display_name   text,
    role           text NOT NULL CHECK (role IN ('admin', 'duty_officer', 'monitor', 'viewer')),
    counties       text[] NOT NULL CHECK (cardinality(counties) > 0),
    password_hash  text NOT NULL,
    person_id      text,            -- the people directory's contact, where there is one
    disabled_at    timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_sessions (
    token_hash     bytea PRIMARY KEY,
    user_id        bigint NOT NULL REFERENCES api_users (user_id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    last_used_at   timestamptz,
    revoked_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX IF NOT EXISTS api_sessions_user_idx ON api_sessions (user_id);

CREATE TABLE IF NOT EXISTS api_keys (
    key_id         bigserial PRIMARY KEY,
    key_hash       bytea NOT NULL UNIQUE,
    user_id        bigint NOT NULL REFERENCES api_users (user_id) ON DELETE CASCADE,
    name           text NOT NULL CHECK (name <> ''),
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);

CREATE TABLE IF NOT EXISTS api_login_attempts (
    id             bigserial PRIMARY KEY,
    username       text NOT NULL,
    client         text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    ok             boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS api_login_attempts_user_idx ON api_login_attempts (username, at);
CREATE INDEX IF NOT EXISTS api_login_attempts_client_idx ON api_login_attempts (client, at);
