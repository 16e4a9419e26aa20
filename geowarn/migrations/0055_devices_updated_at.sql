-- The gateway's device cache refreshes incrementally (ingest/device_cache.py): every
-- refresh_s it reads only the devices whose updated_at moved since its last look, instead of
-- the whole registry (3 s at 30,000 devices, on the path of every message). This index makes
-- that read follow the devices that changed.
CREATE INDEX IF NOT EXISTS devices_updated_at_idx ON devices (updated_at);
