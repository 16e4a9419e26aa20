-- The gateway's device cache (ingest/device_cache.py) re-reads the devices changed since its
-- last look. By updated_at alone it had to look back a fixed overlap (a transaction stamps
-- now() when it starts and may commit later), which re-read every device registered or
-- changed in the last 5 minutes on every refresh: 30,000 devices just registered cost the
-- gateway seconds on its message path. changed_xid is the transaction that wrote the row
-- last; a refresh asks for the rows whose writer the previous refresh's snapshot did not
-- see (pg_visible_in_snapshot), an index range from that snapshot's xmin on: exactly what
-- changed since, whenever it committed. Set by the trigger on every insert and update,
-- whoever writes the row.
ALTER TABLE devices ADD COLUMN IF NOT EXISTS changed_xid xid8;

CREATE OR REPLACE FUNCTION devices_stamp_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS devices_stamp_xid ON devices;
CREATE TRIGGER devices_stamp_xid BEFORE INSERT OR UPDATE ON devices
    FOR EACH ROW EXECUTE FUNCTION devices_stamp_xid();

CREATE INDEX IF NOT EXISTS devices_changed_xid_idx ON devices (changed_xid);
