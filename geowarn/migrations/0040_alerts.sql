-- Alerts: the lifecycle of warnings raised by the engine (alerts/lifecycle.py), their level
-- history, and the notification outbox (alerts/outbox.py).
--
-- Levels are alerts.levels.Level: 0 none, 1 blue (IV), 2 yellow (III), 3 orange (II), 4 red (I).
-- Data times are event times of the data that caused a change (replays give the same rows);
-- recorded_at / created_at are wall-clock bookkeeping.

CREATE TABLE IF NOT EXISTS alerts (
    alert_id        bigserial PRIMARY KEY,
    target_type     text NOT NULL CHECK (target_type IN ('hazard', 'site', 'device')),
    target_id       text NOT NULL CHECK (target_id <> ''),
    hazard_kind     text NOT NULL CHECK (hazard_kind IN ('rainfall', 'deformation',
                        'water_level', 'water_quality', 'air_quality', 'combined',
                        'maintenance')),
    status          text NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'acknowledged', 'resolved')),
    -- The level the data last gave (0 once cleared); kept as it was when the alert is resolved.
    level           smallint NOT NULL CHECK (level BETWEEN 0 AND 4),
    peak_level      smallint NOT NULL CHECK (peak_level BETWEEN 1 AND 4),
    opened_at       timestamptz NOT NULL,           -- data time of the opening change
    last_data_time  timestamptz NOT NULL,           -- data time of the latest level change
    engine          text NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    acknowledged_by text,
    acknowledged_at timestamptz,
    ack_note        text,
    resolved_by     text,
    resolved_at     timestamptz,
    resolve_reason  text,
    CHECK (level <= peak_level),
    CHECK (last_data_time >= opened_at),
    -- A resolved alert keeps the acknowledgement it had, if any.
    CHECK (status <> 'open' OR acknowledged_by IS NULL),
    CHECK (status <> 'acknowledged' OR acknowledged_by IS NOT NULL),
    CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL)),
    CHECK ((status = 'resolved') = (resolved_by IS NOT NULL)),
    CHECK ((resolved_by IS NULL) = (resolved_at IS NULL)),
    CHECK ((resolved_by IS NULL) = (resolve_reason IS NULL))
);
-- At most one open (open or acknowledged) alert per target and hazard kind; apply_changes
-- inserts with ON CONFLICT against this index so two racing engines cannot open two.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open_idx
    ON alerts (target_type, target_id, hazard_kind) WHERE status <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_target_idx
    ON alerts (target_type, target_id, hazard_kind, alert_id);
CREATE INDEX IF NOT EXISTS alerts_status_idx ON alerts (status, level);
CREATE INDEX IF NOT EXISTS alerts_last_data_time_idx ON alerts (last_data_time);

CREATE TABLE IF NOT EXISTS alert_events (
    event_id        bigserial PRIMARY KEY,
    alert_id        bigint NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    kind            text NOT NULL
                    CHECK (kind IN ('opened', 'raised', 'lowered', 'cleared', 'resolved')),
    level           smallint NOT NULL CHECK (level BETWEEN 0 AND 4),
    previous_level  smallint NOT NULL CHECK (previous_level BETWEEN 0 AND 4),
    data_time       timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    evidence        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(evidence) = 'object'),
    CHECK (kind <> 'opened' OR (previous_level = 0 AND level > 0)),
    CHECK (kind NOT IN ('cleared', 'resolved') OR level = 0),
    CHECK (kind <> 'raised' OR level > previous_level),
    CHECK (kind <> 'lowered' OR (level < previous_level AND level > 0))
);
-- A replayed level change finds its event already there (idempotence); a resolution is not a
-- level change of the data and may share a data time with the clearing, so it is kept apart.
CREATE UNIQUE INDEX IF NOT EXISTS alert_events_change_idx
    ON alert_events (alert_id, data_time, level) WHERE kind <> 'resolved';
CREATE UNIQUE INDEX IF NOT EXISTS alert_events_one_resolution_idx
    ON alert_events (alert_id) WHERE kind = 'resolved';
CREATE INDEX IF NOT EXISTS alert_events_alert_idx ON alert_events (alert_id, event_id);

-- One notification request per level-change event, written in the event's transaction; a
-- replayed event never notifies twice (event_id is unique). Senders claim rows with
-- FOR UPDATE SKIP LOCKED and a lease (next_attempt_at), then mark them sent or failed.
CREATE TABLE IF NOT EXISTS notification_outbox (
    id              bigserial PRIMARY KEY,
    event_id        bigint NOT NULL UNIQUE REFERENCES alert_events (event_id) ON DELETE CASCADE,
    alert_id        bigint NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    target_type     text NOT NULL,
    target_id       text NOT NULL,
    hazard_kind     text NOT NULL,
    event_kind      text NOT NULL,
    level           smallint NOT NULL CHECK (level BETWEEN 0 AND 4),
    previous_level  smallint NOT NULL CHECK (previous_level BETWEEN 0 AND 4),
    data_time       timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    last_error      text,
    CHECK ((state = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS notification_outbox_pending_idx
    ON notification_outbox (next_attempt_at, id) WHERE state = 'pending';
