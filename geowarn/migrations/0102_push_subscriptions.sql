-- Web Push subscriptions of console users (people in the directory), for notify/'s push
-- channel: the endpoint and keys a browser's PushManager.subscribe() returned.
CREATE TABLE IF NOT EXISTS push_subscriptions (
    id            bigserial PRIMARY KEY,
    person_id     text NOT NULL REFERENCES people (person_id) ON UPDATE CASCADE,
    endpoint      text NOT NULL UNIQUE CHECK (endpoint ~ '^https?://'),
    p256dh        text NOT NULL,
    auth          text NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS push_subscriptions_person_idx ON push_subscriptions (person_id)
    WHERE active;
