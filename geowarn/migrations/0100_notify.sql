-- Notifications (notify/): the people directory, the duty roster, one row per delivery
-- (event, recipient, channel, round), escalation state, inbound replies and the CAP feed.
--
-- Personal data: people.phone is the only full copy of a directory person's number (it is
-- needed to send). Deliveries keep the recipient's id and the masked number only; the
-- notifier looks the number up again when it sends.

CREATE TABLE IF NOT EXISTS people (
    person_id     text PRIMARY KEY CHECK (person_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name          text NOT NULL CHECK (name <> ''),
    phone         text CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),   -- E.164
    language      text NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'en')),
    roles         text[] NOT NULL CHECK (cardinality(roles) > 0),
    -- GB/T 2260 code of the county (6 digits; a city or province code covers its counties)
    -- or a 9-digit township code inside a county.
    county_code   text NOT NULL CHECK (county_code ~ '^[1-9][0-9]{5}([0-9]{3})?$'),
    device_ids    text[] NOT NULL DEFAULT '{}',   -- devices a maintainer looks after
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS people_county_idx ON people (county_code);
CREATE INDEX IF NOT EXISTS people_phone_idx ON people (phone);

-- "The county duty officer" is whoever the roster says is on duty at the event's time.
CREATE TABLE IF NOT EXISTS duty_roster (
    id            bigserial PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('township_officer', 'county_officer',
                                                'city_officer', 'expert')),
    county_code   text NOT NULL CHECK (county_code ~ '^[1-9][0-9]{5}([0-9]{3})?$'),
    person_id     text NOT NULL REFERENCES people (person_id) ON UPDATE CASCADE,
    from_at       timestamptz NOT NULL,
    to_at         timestamptz NOT NULL,
    CHECK (to_at > from_at),
    UNIQUE (role, county_code, person_id, from_at)
);
CREATE INDEX IF NOT EXISTS duty_roster_when_idx ON duty_roster (role, from_at, to_at);

-- One row per (event, recipient, channel, round, purpose), written before the provider is
-- called (purpose: an officer gets the warning and, apart, the shelter shortfall).
-- round 0 is the first message; escalation reminders are rounds 1, 2, ...
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id    bigserial PRIMARY KEY,
    event_id       bigint NOT NULL REFERENCES alert_events (event_id) ON DELETE CASCADE,
    alert_id       bigint NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    recipient_id   text NOT NULL CHECK (recipient_id <> ''),
    recipient_name text NOT NULL,
    masked_phone   text,
    audience       text NOT NULL,   -- monitor, county_officer, resident_evacuate, ...
    channel        text NOT NULL,   -- file, sms, voice, webhook, push
    round          integer NOT NULL DEFAULT 0 CHECK (round >= 0),
    purpose        text NOT NULL CHECK (purpose IN ('warning', 'update', 'all_clear',
                                                    'escalation', 'unplaced', 'test')),
    language       text NOT NULL DEFAULT 'zh',
    body           text NOT NULL,   -- without the tag (#GW<id>) appended when sent
    shelter_id     text,
    state          text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'sending', 'queued', 'sent', 'delivered',
                                    'undelivered', 'failed', 'rejected', 'expired',
                                    'uncertain')),
    attempts       integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    attempt_at     timestamptz,   -- when the current provider attempt began
    claimed_by     text,
    provider_id    text,
    error_code     text,
    error_text     text,
    valid_until    timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    accepted_at    timestamptz,
    UNIQUE (event_id, recipient_id, channel, round, purpose)
);
CREATE INDEX IF NOT EXISTS deliveries_due_idx ON deliveries (next_attempt_at, delivery_id)
    WHERE state IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS deliveries_alert_idx ON deliveries (alert_id, delivery_id);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_provider_idx ON deliveries (channel, provider_id)
    WHERE provider_id IS NOT NULL;

-- Escalation: one row per alert being watched; cleared when someone acknowledges.
CREATE TABLE IF NOT EXISTS escalations (
    alert_id       bigint PRIMARY KEY REFERENCES alerts (alert_id) ON DELETE CASCADE,
    event_id       bigint NOT NULL REFERENCES alert_events (event_id) ON DELETE CASCADE,
    level          smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    tier           integer NOT NULL DEFAULT 0,
    started_at     timestamptz NOT NULL,
    next_at        timestamptz,
    stopped_at     timestamptz,
    stopped_by     text
);
CREATE INDEX IF NOT EXISTS escalations_due_idx ON escalations (next_at)
    WHERE stopped_at IS NULL;

-- Inbound SMS (replies) and receipts, as Twilio posted them (numbers masked).
CREATE TABLE IF NOT EXISTS inbound_messages (
    id             bigserial PRIMARY KEY,
    provider_id    text NOT NULL UNIQUE,
    masked_from    text NOT NULL,
    person_id      text,
    body           text NOT NULL,
    alert_id       bigint,
    acknowledged   boolean NOT NULL DEFAULT false,
    received_at    timestamptz NOT NULL DEFAULT now()
);

-- CAP 1.2 documents written for each warning event, served as a feed by the API.
CREATE TABLE IF NOT EXISTS cap_feed (
    identifier     text PRIMARY KEY,
    event_id       bigint NOT NULL UNIQUE REFERENCES alert_events (event_id) ON DELETE CASCADE,
    alert_id       bigint NOT NULL,
    msg_type       text NOT NULL CHECK (msg_type IN ('Alert', 'Update', 'Cancel')),
    sent           timestamptz NOT NULL,
    xml            text NOT NULL
);
CREATE INDEX IF NOT EXISTS cap_feed_sent_idx ON cap_feed (sent);
