-- Device registry, part 2: credentials, health, commands (devices/registry.py and friends).

CREATE INDEX IF NOT EXISTS devices_kind_idx ON devices (kind);
CREATE INDEX IF NOT EXISTS devices_status_idx ON devices (status);

-- One MQTT secret per device, stored only as a Mosquitto-format PBKDF2-SHA512 hash
-- ("$7$<iterations>$<b64 salt>$<b64 hash>", see devices/credentials.py) so the broker's password
-- file can be regenerated at any time without knowing any secret. NULL hash = revoked.
CREATE TABLE IF NOT EXISTS device_credentials (
    device_id   text PRIMARY KEY REFERENCES devices (device_id) ON UPDATE CASCADE,
    secret_hash text CHECK (secret_hash LIKE '$7$%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz,
    revoked_at  timestamptz
);

-- Service accounts on the broker that are not devices (the ingest gateway).
CREATE TABLE IF NOT EXISTS broker_accounts (
    username    text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    role        text NOT NULL CHECK (role IN ('gateway')),
    secret_hash text NOT NULL CHECK (secret_hash LIKE '$7$%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);

-- Latest known state of each device, written by the gateway (presence, status reports,
-- readings). One row per device, updated in place; history lives in readings/audit.
CREATE TABLE IF NOT EXISTS device_health (
    device_id       text PRIMARY KEY REFERENCES devices (device_id) ON UPDATE CASCADE,
    online          boolean,
    presence_at     timestamptz,
    last_seen       timestamptz,
    last_reading_at timestamptz,
    battery_pct     double precision,
    battery_v       double precision,
    supply_v        double precision,
    signal_dbm      double precision,
    temperature_c   double precision,
    firmware        text,
    sensor_state    jsonb NOT NULL DEFAULT '{}'::jsonb,
    status_at       timestamptz
);

CREATE TABLE IF NOT EXISTS device_commands (
    command_id   text PRIMARY KEY CHECK (command_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    device_id    text NOT NULL REFERENCES devices (device_id) ON UPDATE CASCADE,
    name         text NOT NULL,
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,
    state        text NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'sent', 'succeeded', 'failed', 'timed_out',
                                  'cancelled')),
    queued_at    timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz,
    replied_at   timestamptz,
    deadline     timestamptz NOT NULL,
    reply        jsonb,
    requested_by text NOT NULL
);
CREATE INDEX IF NOT EXISTS device_commands_device_idx ON device_commands (device_id, queued_at);
-- The dispatcher and the expiry sweep only ever look at open commands.
CREATE INDEX IF NOT EXISTS device_commands_open_idx ON device_commands (deadline)
    WHERE state IN ('queued', 'sent');
