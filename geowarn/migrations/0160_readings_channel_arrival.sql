-- The engine judges readings by arrival as well as by data time: a logger's buffered
-- backlog stored after its live reports resumed lies behind the engine's watermark, and a
-- query on data time alone never fetched it (alerts/engine/data.py load_late). That query
-- asks, for each channel, the readings stored since the engine's last step: one probe of
-- this index per channel, whatever the table's size. The same on plain PostgreSQL and on
-- the TimescaleDB hypertable (the index is created on every chunk; the query's lower bound
-- on ts keeps old chunks out). On a large existing table this builds for a while and
-- blocks writes meanwhile: run the upgrade in a quiet period.
CREATE INDEX IF NOT EXISTS readings_channel_ingested_idx ON readings (channel_id, ingested_at);
