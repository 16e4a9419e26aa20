"""Twilio SMS: one message per delivery, with the validity period and a status callback.

The status callback URL carries the delivery id (?d=<id>), so callbacks are matched without
the number; the message body ends with the delivery tag, which is how a crash is reconciled:
Messages list filtered by recipient and sender (newest first), matched on the tag.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from notify.channels.base import Outgoing
from notify.channels.twilio_client import RedirectingHttpClient, translate
from notify.outcomes import PROVIDER_STATES, Lookup, Outcome
from notify.pacing import TokenBucket

MAX_VALIDITY_S = 36_000  # Twilio's upper bound for ValidityPeriod
LOOKUP_PAGE = 100


class TwilioSms:
    name = "sms"

    def __init__(self, client: object, http: RedirectingHttpClient, sender: str, *,
                 callback_url: str | None, pacing: TokenBucket | None = None) -> None:
        self.client = client
        self.http = http
        self.sender = sender
        self.callback_url = callback_url
        self.pacing = pacing

    def _callback(self, msg: Outgoing) -> str | None:
        if not self.callback_url:
            return None
        return f"{self.callback_url.rstrip('/')}/twilio/status?{urlencode({'d': msg.delivery_id})}"

    def send(self, msg: Outgoing) -> Outcome:
        validity = int((msg.valid_until - msg.now).total_seconds())
        if validity < 1:
            return Outcome("expired", code="expired", message="validity period passed")
        if not msg.to:
            return Outcome("rejected", code="no_phone", message="no phone number")
        if self.pacing is not None:
            self.pacing.acquire()
        kwargs: dict[str, object] = {"to": msg.to, "from_": self.sender, "body": msg.text,
                                     "validity_period": min(validity, MAX_VALIDITY_S)}
        callback = self._callback(msg)
        if callback:
            kwargs["status_callback"] = callback
        try:
            message = self.client.messages.create(**kwargs)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - translated in one place, below
            return translate(error=exc, headers=self.http.last_headers)
        state = PROVIDER_STATES.get(str(message.status), "queued")
        return Outcome("accepted", provider_id=str(message.sid), state=state)

    def lookup(self, msg: Outgoing, since: datetime) -> Lookup:
        if not msg.to:
            return Lookup("not_found")
        try:
            found = self.client.messages.list(  # type: ignore[attr-defined]
                to=msg.to, from_=self.sender, limit=LOOKUP_PAGE)
        except Exception:  # noqa: BLE001 - the provider cannot answer now
            return Lookup("unknown")
        for m in found:
            if str(m.body or "").endswith("#" + msg.tag):
                return Lookup("found", str(m.sid), PROVIDER_STATES.get(str(m.status),
                                                                        "queued"))
        return Lookup("not_found")
