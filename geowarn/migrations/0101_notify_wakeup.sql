-- Wake notifiers when an event is queued (they LISTEN; no polling of the outbox).
CREATE OR REPLACE FUNCTION geowarn_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('geowarn_outbox', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS notification_outbox_notify ON notification_outbox;
CREATE TRIGGER notification_outbox_notify AFTER INSERT ON notification_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION geowarn_outbox_notify();
