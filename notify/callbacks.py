"""Twilio status callbacks and inbound SMS: a router served by `geowarn api` (the composition
root services/api_app.py includes it, since api/ may not import notify/) or on its own by
`geowarn notify --callbacks-port PORT` (`create_app`). The paths are the same either way:
/twilio/status and /twilio/inbound.

Every request must carry a valid X-Twilio-Signature (twilio's RequestValidator, over the URL
Twilio called, i.e. GEOWARN_NOTIFY_CALLBACK_URL + path + query, and the form parameters);
Twilio signs the URL it sees, so behind a reverse proxy that setting must be the externally
visible base (scheme, host, port, any path prefix the proxy strips), not the local address;
anything else gets 403 and changes nothing. A status moves a delivery only forward
(deliveries.advance), so repeated or out-of-order callbacks are harmless. An inbound "1",
"收到" or "确认" from a known number acknowledges the newest open alert that person was told
about, which also stops its escalation.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import psycopg
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from twilio.request_validator import RequestValidator

from geowarn.settings import Settings
from notify import deliveries, escalation, people
from notify.channels.twilio_client import translate
from notify.phones import PhoneError, mask, to_e164

log = logging.getLogger(__name__)
ACK_WORDS = {"1", "收到", "确认", "ok", "OK", "Ok"}
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def _public_url(request: Request, base: str | None) -> str:
    if not base:
        return str(request.url)
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base.rstrip('/')}{request.url.path}{query}"


def create_app(url: str, *, auth_token: str, public_base: str | None) -> FastAPI:
    """The callbacks alone (`geowarn notify --callbacks-port`)."""
    app = FastAPI(title="GeoWarn notification callbacks", docs_url=None, redoc_url=None)
    app.include_router(router(url, auth_token=auth_token, public_base=public_base))
    return app


def router(url: str, *, auth_token: str, public_base: str | None) -> APIRouter:
    """The two callback routes, for any app to include. Kept out of the OpenAPI schema: they
    are Twilio's protocol, not the API's, and answer 403 to anyone but Twilio."""
    routes = APIRouter(include_in_schema=False)
    validator = RequestValidator(auth_token)

    async def verified_form(request: Request) -> dict[str, str] | None:
        body = (await request.body()).decode("utf-8", errors="replace")
        form = dict(parse_qsl(body, keep_blank_values=True))
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not validator.validate(_public_url(request, public_base), form,
                                                   signature):
            log.warning("refused a callback with a missing or wrong signature")
            return None
        return form

    @routes.post("/twilio/status")
    async def status(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("forbidden", status_code=403)
        channel = "voice" if request.query_params.get("c") == "voice" or "CallSid" in form \
            else "sms"
        sid = form.get("MessageSid") or form.get("CallSid") or ""
        state = form.get("MessageStatus") or form.get("CallStatus") or ""
        code = form.get("ErrorCode") or None
        d = request.query_params.get("d", "")
        with psycopg.connect(url, autocommit=True) as conn:
            result = deliveries.advance(conn, channel, sid, state, code,
                                        delivery_id=int(d) if d.isdigit() else None)
            if result is not None and code and code.isdigit():
                meaning = translate(code=int(code))
                conn.execute("UPDATE deliveries SET error_text = %s WHERE delivery_id = %s",
                             (meaning.message, result[0]))
        return Response(status_code=204 if result else 200)

    @routes.post("/twilio/inbound")
    async def inbound(request: Request) -> Response:
        form = await verified_form(request)
        if form is None:
            return Response("forbidden", status_code=403)
        with psycopg.connect(url, autocommit=True) as conn:
            handle_inbound(conn, form, now=datetime.now(UTC))
        return Response(_EMPTY_TWIML, media_type="application/xml")

    return routes


def _recipient_ids(conn: psycopg.Connection, phone: str) -> list[str]:
    ids = []
    person = people.by_phone(conn, phone)
    if person is not None:
        ids.append(person.recipient_id)
    ids += [c.recipient_id for c in people.hazard_contacts(conn) if c.phone == phone]
    return ids


def handle_inbound(conn: psycopg.Connection, form: Mapping[str, str], *,
                   now: datetime) -> int | None:
    """Record an inbound SMS; if it is an acknowledgement from someone told about an open
    alert, acknowledge that alert. Returns the alert acknowledged, if any."""
    sid = form.get("MessageSid") or form.get("SmsSid") or ""
    body = (form.get("Body") or "").strip()
    try:
        phone = to_e164(form.get("From") or "")
    except PhoneError:
        phone = ""
    inserted = conn.execute(
        "INSERT INTO inbound_messages (provider_id, masked_from, body) VALUES (%s, %s, %s) "
        "ON CONFLICT (provider_id) DO NOTHING RETURNING id",
        (sid, mask(phone or None), body[:1600])).fetchone()
    if inserted is None or not phone or body not in ACK_WORDS:
        return None  # a repeat of the same inbound message, or not an acknowledgement
    ids = _recipient_ids(conn, phone)
    if not ids:
        return None
    row = conn.execute(
        "SELECT d.alert_id, d.recipient_id FROM deliveries d JOIN alerts a USING (alert_id) "
        "WHERE d.recipient_id = ANY(%s) AND a.status = 'open' "
        "ORDER BY d.delivery_id DESC LIMIT 1", (ids,)).fetchone()
    if row is None:
        return None
    alert_id, recipient = int(row[0]), str(row[1])
    escalation.acknowledge(conn, alert_id, user=f"sms:{recipient}", now=now,
                           note=f"SMS reply {body!r}")
    conn.execute("UPDATE inbound_messages SET person_id = %s, alert_id = %s, "
                 "acknowledged = true WHERE id = %s", (recipient, alert_id, inserted[0]))
    log.info("alert %s acknowledged by SMS from %s", alert_id, mask(phone))
    return alert_id


def serve_in_thread(url: str, settings: Settings, *, port: int,
                    host: str = "127.0.0.1") -> uvicorn.Server:
    """Serve the app with uvicorn in a daemon thread; set `.should_exit` to stop it."""
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token \
        else None
    if token is None:
        from geowarn.errors import ConfigurationError

        raise ConfigurationError("--callbacks-port needs GEOWARN_TWILIO_AUTH_TOKEN to verify "
                                 "Twilio's signatures")
    app = create_app(url, auth_token=token, public_base=settings.notify_callback_url)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True, name="notify-callbacks").start()
    return server
