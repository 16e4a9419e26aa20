-- A running engine applies a registry change at the cost of what changed (alerts/engine/
-- registry_delta.py, issue 7): it re-reads the devices whose rows a transaction it had not
-- seen wrote (devices.changed_xid, migration 0145). A channel learnt from the gateway's
-- messages (devices/registry.py learn_channel) is inserted without touching its device's
-- row, so channels carry the same stamp, set by the same trigger function, whoever writes
-- the row.
ALTER TABLE channels ADD COLUMN IF NOT EXISTS changed_xid xid8;

DROP TRIGGER IF EXISTS channels_stamp_xid ON channels;
CREATE TRIGGER channels_stamp_xid BEFORE INSERT OR UPDATE ON channels
    FOR EACH ROW EXECUTE FUNCTION devices_stamp_xid();

CREATE INDEX IF NOT EXISTS channels_changed_xid_idx ON channels (changed_xid);
