"""Twilio voice: the message read aloud (TwiML <Say>, Mandarin zh-CN or English), repeated.

Calls carry no text Twilio could give back, so a crash is reconciled on the Calls list
filtered by recipient and sender: a call created at or after the interrupted attempt began,
whose sid no other delivery has recorded, is that delivery's call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from notify.channels.base import Outgoing
from notify.channels.twilio_client import RedirectingHttpClient, translate
from notify.outcomes import PROVIDER_STATES, Lookup, Outcome
from notify.pacing import TokenBucket

REPEAT = 3
VOICES = {"zh": ("zh-CN", "Polly.Zhiyu"), "en": ("en-US", "Polly.Joanna")}


def twiml(text: str, language: str, *, repeat: int = REPEAT) -> str:
    lang, voice = VOICES.get(language, VOICES["zh"])
    say = f'<Say language="{lang}" voice="{voice}">{escape(text)}</Say><Pause length="1"/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{say * repeat}</Response>'


class TwilioVoice:
    name = "voice"

    def __init__(self, client: object, http: RedirectingHttpClient, sender: str, *,
                 callback_url: str | None, pacing: TokenBucket | None = None,
                 known_sid: Callable[[str], bool] | None = None) -> None:
        self.client = client
        self.http = http
        self.sender = sender
        self.callback_url = callback_url
        self.pacing = pacing
        self.known_sid = known_sid or (lambda sid: False)

    def send(self, msg: Outgoing) -> Outcome:
        if msg.valid_until <= msg.now:
            return Outcome("expired", code="expired", message="validity period passed")
        if not msg.to:
            return Outcome("rejected", code="no_phone", message="no phone number")
        if self.pacing is not None:
            self.pacing.acquire()
        # The tag is not read aloud: it is only for SMS look-ups.
        spoken = msg.text.rsplit(" #", 1)[0]
        kwargs: dict[str, object] = {"to": msg.to, "from_": self.sender,
                                     "twiml": twiml(spoken, msg.language)}
        if self.callback_url:
            kwargs["status_callback"] = (f"{self.callback_url.rstrip('/')}/twilio/status?"
                                         f"{urlencode({'d': msg.delivery_id, 'c': 'voice'})}")
        try:
            call = self.client.calls.create(**kwargs)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - translated in one place
            return translate(error=exc, headers=self.http.last_headers)
        return Outcome("accepted", provider_id=str(call.sid),
                       state=PROVIDER_STATES.get(str(call.status), "queued"))

    def lookup(self, msg: Outgoing, since: datetime) -> Lookup:
        if not msg.to:
            return Lookup("not_found")
        try:
            calls = self.client.calls.list(  # type: ignore[attr-defined]
                to=msg.to, from_=self.sender, limit=50)
        except Exception:  # noqa: BLE001 - the provider cannot answer now
            return Lookup("unknown")
        start = since - timedelta(seconds=5)  # clocks of two machines
        for c in sorted(calls, key=lambda c: str(c.sid)):
            created = c.date_created
            if created is not None and created >= start and not self.known_sid(str(c.sid)):
                return Lookup("found", str(c.sid), PROVIDER_STATES.get(str(c.status),
                                                                        "queued"))
        return Lookup("not_found")
