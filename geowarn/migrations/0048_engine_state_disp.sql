-- The displacement episode state is saved with the rest of the engine state
-- (alerts/engine/state.py scope "disp", one row per displacement channel keyed by channel id:
-- acceleration run, reference rate, forecast and its issue time, step log, running offset),
-- so a restarted engine judges displacement as the one that lived through the data.
ALTER TABLE engine_state_rows DROP CONSTRAINT IF EXISTS engine_state_rows_scope_check;
ALTER TABLE engine_state_rows ADD CONSTRAINT engine_state_rows_scope_check
    CHECK (scope IN ('channel', 'target', 'device', 'disp'));
