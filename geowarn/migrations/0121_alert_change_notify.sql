-- Every change of an alert (the engine's level changes, acknowledgements, resolutions,
-- comments) has its audit_log row; a NOTIFY on each lets the API's live stream (server-sent
-- events) wake at once instead of polling. The payload is the audit row's id, the stream's
-- resumable event id.
CREATE OR REPLACE FUNCTION geowarn_notify_alert_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('geowarn_alert_changes', NEW.id::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS audit_log_alert_notify ON audit_log;
CREATE TRIGGER audit_log_alert_notify AFTER INSERT ON audit_log
    FOR EACH ROW WHEN (NEW.object_type = 'alert') EXECUTE FUNCTION geowarn_notify_alert_change();
