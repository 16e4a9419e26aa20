-- Field reports (宏观巡查): what a group-monitoring member (群测群防员) sees on a patrol of a
-- hazard point, submitted from a phone, kept as evidence. A monitor user reports only on the
-- hazard points assigned to it (api_users.hazard_ids).
ALTER TABLE api_users ADD COLUMN IF NOT EXISTS hazard_ids text[] NOT NULL DEFAULT '{}';

CREATE TABLE IF NOT EXISTS field_reports (
    report_id     bigserial PRIMARY KEY,
    hazard_id     text NOT NULL REFERENCES hazard_points (hazard_id) ON UPDATE CASCADE,
    reporter      text NOT NULL,                  -- api_users.username
    kind          text NOT NULL CHECK (kind IN ('new_cracks', 'cracks_widening', 'bulging',
                      'seepage', 'turbid_water', 'falling_rocks', 'tilted_trees_or_poles',
                      'unusual_sounds', 'other')),
    severity      text NOT NULL CHECK (severity IN ('minor', 'moderate', 'severe')),
    note          text CHECK (length(note) <= 2000),
    observed_at   timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    lon           double precision CHECK (lon BETWEEN -180 AND 180),
    lat           double precision CHECK (lat BETWEEN -90 AND 90),
    photo         bytea,
    photo_type    text CHECK (photo_type IN ('image/jpeg', 'image/png', 'image/webp')),
    photo_size    integer CHECK (photo_size BETWEEN 1 AND 5242880),
    CHECK ((photo IS NULL) = (photo_type IS NULL) AND (photo IS NULL) = (photo_size IS NULL)),
    CHECK (observed_at <= received_at + interval '5 minutes')
);
CREATE INDEX IF NOT EXISTS field_reports_hazard_idx ON field_reports (hazard_id, observed_at);
