-- The device registry's core: devices and their channels. Readings reference channels by a
-- 4-byte id so that a reading row stays narrow (TimescaleDB compresses it by channel_id).
CREATE TABLE IF NOT EXISTS devices (
    device_id     text PRIMARY KEY
                  -- Safe as one MQTT topic level and as a Mosquitto ACL pattern (%c).
                  CHECK (device_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    kind          text,            -- catalogue sensor kind; NULL for national loggers
    profile       text NOT NULL DEFAULT 'native' CHECK (profile IN ('native', 'national')),
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'maintenance', 'retired')),
    name          text,
    lon           double precision CHECK (lon BETWEEN -180 AND 180),
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    elevation_m   double precision,
    installed_on  date,
    hazard_id     text,            -- hazard point (隐患点) the device watches
    site_id       text,            -- or a river / pollution site
    reporting_interval_s integer CHECK (reporting_interval_s > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz,
    CHECK (profile = 'national' OR kind IS NOT NULL),
    CHECK ((lon IS NULL) = (lat IS NULL))
);
CREATE INDEX IF NOT EXISTS devices_hazard_idx ON devices (hazard_id) WHERE hazard_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS channels (
    channel_id    serial PRIMARY KEY,
    device_id     text NOT NULL REFERENCES devices (device_id) ON UPDATE CASCADE,
    channel       text NOT NULL,   -- channel key: "opening", or "L1_LF_1.opening" (national)
    kind          text NOT NULL,   -- catalogue sensor kind
    spec          text NOT NULL,   -- catalogue channel name within the kind
    unit          text NOT NULL,   -- canonical unit the values are stored in
    cal_scale     double precision NOT NULL DEFAULT 1 CHECK (cal_scale <> 0),
    cal_offset    double precision NOT NULL DEFAULT 0,
    learnt        boolean NOT NULL DEFAULT false,  -- added from a report, not registered
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_id, channel)
);
