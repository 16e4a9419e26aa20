-- Exercises (演练): named drills. While an exercise is active in a database, every alert
-- opened in it belongs to the exercise (alerts.exercise, set by the trigger below, whoever
-- writes the alert: a replay's engine, a simulator's, or any other). The notifier treats an
-- exercise alert as a drill (notify/drill.py): only the exercise's participants are sent
-- anything, every text says it is a drill, everyone else is written to the file channel.
-- An alert opened before the exercise stays live, and an exercise alert stays one after the
-- exercise ends (its later events are still drills).

CREATE TABLE IF NOT EXISTS exercises (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    title       text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    started_by  text NOT NULL DEFAULT current_user,
    ended_at    timestamptz,
    CHECK (ended_at IS NULL OR ended_at >= started_at)
);
-- One active exercise a database: an alert never has to choose between two.
CREATE UNIQUE INDEX IF NOT EXISTS exercises_one_active_idx
    ON exercises ((true)) WHERE ended_at IS NULL;

-- Who takes part: recipient ids as the deliveries name them (person:ID, household:ID,
-- hazard:POINT:monitor:N, hazard:POINT:responsible).
CREATE TABLE IF NOT EXISTS exercise_participants (
    exercise     text NOT NULL REFERENCES exercises (name) ON DELETE CASCADE,
    recipient_id text NOT NULL CHECK (recipient_id ~ '^(person|household|hazard):.+'),
    added_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exercise, recipient_id)
);

ALTER TABLE alerts ADD COLUMN IF NOT EXISTS exercise text REFERENCES exercises (name);
CREATE INDEX IF NOT EXISTS alerts_exercise_idx ON alerts (exercise) WHERE exercise IS NOT NULL;

CREATE OR REPLACE FUNCTION geowarn_alert_exercise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.exercise IS NULL THEN
        NEW.exercise := (SELECT name FROM exercises WHERE ended_at IS NULL);
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS alerts_exercise_trg ON alerts;
CREATE TRIGGER alerts_exercise_trg BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION geowarn_alert_exercise();
