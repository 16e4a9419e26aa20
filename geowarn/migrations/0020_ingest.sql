-- Ingest bookkeeping: dead letters, per-device message sequence numbers, gateway counters.

-- Every rejected message (or rejected part of a message) with its reason. The raw payload is
-- kept up to a bounded size so an engineer can see what the device sent.
CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    topic         text NOT NULL,
    device_id     text,
    reason        text NOT NULL,
    detail        text NOT NULL,
    channel       text,
    reading_ts    timestamptz,
    payload       bytea NOT NULL,
    payload_size  integer NOT NULL,
    gateway       text
);
CREATE INDEX IF NOT EXISTS dead_letters_received_idx ON dead_letters (received_at);
CREATE INDEX IF NOT EXISTS dead_letters_device_idx ON dead_letters (device_id, received_at);

-- The last sequence numbers seen per device, with a digest of the payload: the same number with
-- the same payload is a redelivery (stored nothing twice anyway); with another payload it is a
-- duplicate sequence number, which a firmware team needs to hear about.
CREATE TABLE IF NOT EXISTS device_sequences (
    device_id     text NOT NULL,
    seq           bigint NOT NULL,
    digest        bytea NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX IF NOT EXISTS device_sequences_received_idx ON device_sequences (received_at);

-- Counters each gateway publishes periodically (geowarn ingest stats, the API).
CREATE TABLE IF NOT EXISTS ingest_stats (
    gateway       text PRIMARY KEY,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz NOT NULL,
    counters      jsonb NOT NULL
);

-- Liveness of gateway instances, for handing a dead gateway's share to a live one
-- (ingest/takeover.py).
CREATE TABLE IF NOT EXISTS gateway_heartbeats (
    gateway       text PRIMARY KEY,
    group_name    text NOT NULL,
    seen_at       timestamptz NOT NULL
);
