-- Warning engine: rule overrides and the engine's persisted state (alerts/rules.py,
-- alerts/engine_state.py).

-- Per-scope overrides of alerts.rules.RuleParams, flat JSON objects ({"warning_m": 15.2}).
-- scope_id: kind scope "rain_gauge" or "rain_gauge.rain"; hazard/site ids; channel ids.
-- Later scopes win: kind, kind.channel, hazard, site, channel.
CREATE TABLE IF NOT EXISTS engine_rules (
    scope       text NOT NULL CHECK (scope IN ('kind', 'hazard', 'site', 'channel')),
    scope_id    text NOT NULL CHECK (scope_id <> ''),
    params      jsonb NOT NULL CHECK (jsonb_typeof(params) = 'object'),
    updated_by  text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_id)
);

-- What an engine cannot rebuild from the readings store: hysteresis levels and dwell clocks,
-- per-channel watermarks, learnt baselines and reference rates, the levels last emitted per
-- target and kind. One row per engine name, rewritten in the same transaction as the level
-- changes it produced, so a crash loses neither or both.
CREATE TABLE IF NOT EXISTS engine_state (
    engine      text PRIMARY KEY CHECK (engine <> ''),
    clock       double precision NOT NULL,   -- engine clock, seconds since the epoch
    saved_at    timestamptz NOT NULL DEFAULT now(),
    channel_ids integer[] NOT NULL,
    targets     text[] NOT NULL,             -- "hazard:HP1", "site:S1", "device:D1"
    devices     text[] NOT NULL,
    arrays      bytea NOT NULL               -- numpy .npz of the saved arrays
);
