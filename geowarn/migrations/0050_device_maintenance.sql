-- Maintenance windows on a device (devices/maintenance.py; `geowarn devices maintenance`, and
-- /api/devices/{id}/maintenance): inside one, the device's readings raise nothing and its
-- displacement offsets are expected (removed, not reported). Cancelled windows are kept for
-- the audit trail (and for replays of the data time they covered until their cancellation).
CREATE TABLE IF NOT EXISTS device_maintenance (
    window_id     bigserial PRIMARY KEY,
    device_id     text NOT NULL REFERENCES devices (device_id) ON DELETE CASCADE,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    reason        text NOT NULL CHECK (reason <> '' AND length(reason) <= 500),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    cancelled_by  text,
    cancelled_at  timestamptz,
    CHECK (ends_at > starts_at),
    CHECK ((cancelled_by IS NULL) = (cancelled_at IS NULL))
);
CREATE INDEX IF NOT EXISTS device_maintenance_device_idx
    ON device_maintenance (device_id, starts_at);
