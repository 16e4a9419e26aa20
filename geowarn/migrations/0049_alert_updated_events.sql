-- An "updated" alert event: the same level with new evidence (the engine refreshed a failure
-- forecast while the level held; alerts/lifecycle/writes.py), at most one per configured
-- interval (rules key update_interval_s). It changes neither level nor status.
ALTER TABLE alert_events DROP CONSTRAINT IF EXISTS alert_events_kind_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_kind_check
    CHECK (kind IN ('opened', 'raised', 'lowered', 'cleared', 'resolved', 'updated'));
ALTER TABLE alert_events DROP CONSTRAINT IF EXISTS alert_events_updated_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_updated_check
    CHECK (kind <> 'updated' OR (level = previous_level AND level > 0));
