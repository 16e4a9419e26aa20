-- Warning engine state saved incrementally (alerts/engine/state.py): one row per channel,
-- target and device instead of one blob per engine, so a step writes only the rows whose
-- state changed (an UPSERT of those rows) and a restart reads them back in one query.
--
-- engine_state keeps one header row per engine: its clock and the layout of the packed rows
-- (field names, numpy dtypes and shapes per scope), so a newer engine that saves more fields
-- maps the old rows field by field. The old one-blob columns go: an engine upgraded across
-- this migration starts from its readings again (the alert lifecycle recognises the
-- re-judged level changes as replays).
DELETE FROM engine_state;
ALTER TABLE engine_state
    DROP COLUMN channel_ids,
    DROP COLUMN targets,
    DROP COLUMN devices,
    DROP COLUMN arrays,
    ADD COLUMN layout jsonb NOT NULL CHECK (jsonb_typeof(layout) = 'object');

CREATE TABLE IF NOT EXISTS engine_state_rows (
    engine    text NOT NULL REFERENCES engine_state (engine) ON DELETE CASCADE,
    scope     text NOT NULL CHECK (scope IN ('channel', 'target', 'device')),
    key       text NOT NULL,   -- channel id, "hazard:HP1" / "site:S1" / "device:D1", device id
    packed    bytea NOT NULL,  -- one numpy record of the scope's layout
    -- Channels only: the newest reading time judged (seconds since the epoch; NULL = none),
    -- so the periodic step finds channels with unjudged readings in one server-side query.
    watermark double precision,
    PRIMARY KEY (engine, scope, key)
);
