-- The engine's arrival mark (alerts/engine/arrival.py, issue 7): late readings are fetched by
-- arrival (readings.ingested_at) from each channel's last look on. A restart looks at every
-- channel from the oldest mark, saved here (NULL: an engine saved before marks were kept,
-- which restarts from its saved_at less the 30 s overlap it used then).
ALTER TABLE engine_state ADD COLUMN IF NOT EXISTS arrived timestamptz;
