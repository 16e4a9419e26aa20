-- Data-quality findings (an implausible value, a repeating or flat series) are their own
-- alert kind for the maintainer, on the device (alerts/engine/tick_quality.py); like
-- "maintenance" (a silent device) it never feeds a hazard level.

ALTER TABLE alerts DROP CONSTRAINT IF EXISTS alerts_hazard_kind_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_hazard_kind_check
    CHECK (hazard_kind IN ('rainfall', 'deformation', 'water_level', 'water_quality',
                           'air_quality', 'combined', 'maintenance', 'data_quality'));
