-- GIS: hazard points (隐患点), shelters (避灾安置点), threatened households and regional
-- meteorological geohazard risk warnings.
--
-- PostGIS is not assumed (the target servers may not have it): geometries are stored as
-- RFC 7946 GeoJSON in jsonb, validated and re-oriented by gis/geometry.py before they get
-- here, with a lon/lat bounding box beside them so SQL can pre-filter cheaply; exact spatial
-- tests run in Python with shapely.

CREATE TABLE IF NOT EXISTS hazard_points (
    hazard_id     text PRIMARY KEY
                  CHECK (hazard_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name          text NOT NULL CHECK (name <> ''),
    hazard_type   text NOT NULL CHECK (hazard_type IN ('landslide', 'collapse', 'debris_flow',
                                                       'ground_subsidence', 'ground_fissure')),
    scale         text NOT NULL CHECK (scale IN ('small', 'medium', 'large', 'giant')),
    -- GB/T 2260 six-digit administrative division code of the county (区县).
    county_code   text NOT NULL CHECK (county_code ~ '^[1-9][0-9]{5}$'),
    geometry      jsonb NOT NULL CHECK (geometry->>'type' IN ('Polygon', 'MultiPolygon')),
    min_lon       double precision NOT NULL CHECK (min_lon BETWEEN -180 AND 180),
    min_lat       double precision NOT NULL CHECK (min_lat BETWEEN -90 AND 90),
    max_lon       double precision NOT NULL CHECK (max_lon BETWEEN -180 AND 180),
    max_lat       double precision NOT NULL CHECK (max_lat BETWEEN -90 AND 90),
    households    integer NOT NULL DEFAULT 0 CHECK (households >= 0),
    people        integer NOT NULL DEFAULT 0 CHECK (people >= 0),
    property_10k_yuan double precision NOT NULL DEFAULT 0 CHECK (property_10k_yuan >= 0),
    responsible_name  text,
    responsible_phone text,
    -- 群测群防员: [{"name": ..., "phone": ...}, ...]
    monitors      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(monitors) = 'array'),
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'under_treatment', 'cancelled')),
    -- 销号: who approved it, at which level (derived from people at cancellation time).
    cancelled_at       timestamptz,
    cancel_level       text CHECK (cancel_level IN ('county', 'city', 'province')),
    cancel_approved_by text,
    cancel_document    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    CHECK ((cancelled_at IS NULL) = (cancel_level IS NULL)),
    CHECK (min_lon <= max_lon AND min_lat <= max_lat)
);
CREATE INDEX IF NOT EXISTS hazard_points_county_idx ON hazard_points (county_code);
CREATE INDEX IF NOT EXISTS hazard_points_bbox_idx
    ON hazard_points (min_lon, max_lon, min_lat, max_lat);

CREATE TABLE IF NOT EXISTS shelters (
    shelter_id    text PRIMARY KEY
                  CHECK (shelter_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name          text NOT NULL CHECK (name <> ''),
    lon           double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat           double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    capacity      integer NOT NULL CHECK (capacity > 0),
    -- People currently sheltered; may exceed capacity in an emergency (free capacity is 0).
    occupancy     integer NOT NULL DEFAULT 0 CHECK (occupancy >= 0),
    contact_name  text,
    contact_phone text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS shelters_lonlat_idx ON shelters (lon, lat);

-- Personal data: listing functions mask phone numbers unless the caller may see them.
CREATE TABLE IF NOT EXISTS households (
    household_id  text PRIMARY KEY
                  CHECK (household_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    hazard_id     text NOT NULL REFERENCES hazard_points (hazard_id) ON UPDATE CASCADE,
    head          text NOT NULL CHECK (head <> ''),
    members       integer NOT NULL CHECK (members >= 1),
    phone         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS households_hazard_idx ON households (hazard_id);

-- Regional meteorological geohazard risk warnings (地质灾害气象风险预警), per county codes
-- and/or a polygon. level: 1 blue, 2 yellow, 3 orange, 4 red (alerts.levels.Level).
CREATE TABLE IF NOT EXISTS regional_warnings (
    warning_id    text PRIMARY KEY CHECK (warning_id <> ''),
    issuer        text NOT NULL CHECK (issuer <> ''),
    level         smallint NOT NULL CHECK (level BETWEEN 1 AND 4),
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz NOT NULL,
    county_codes  text[] NOT NULL DEFAULT '{}',
    geometry      jsonb CHECK (geometry IS NULL
                               OR geometry->>'type' IN ('Polygon', 'MultiPolygon')),
    headline      text,
    source        text NOT NULL CHECK (source IN ('geojson', 'cap')),
    -- A CAP Cancel ends a warning early; it is kept so that history can be replayed.
    cancelled_at  timestamptz,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_to > valid_from),
    CHECK (cardinality(county_codes) > 0 OR geometry IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS regional_warnings_validity_idx
    ON regional_warnings (valid_from, valid_to);
