"""Twilio voice: the message read aloud (TwiML <Say>, Mandarin zh-CN or English), repeated.

Reconciliation after a crash (an attempt that may have reached Twilio): Twilio's call
records carry nothing we can set and read back (a Message returns its body, where the SMS
channel's tag #GW... sits; a Call returns no TwiML, URL or label), so no tag can be matched.
What identifies the call instead: the Calls list filtered by To and From, newest first, read
back to the attempt's start; a call created from `SKEW` before the attempt began until
`WINDOW` after it (the longest a create request can take), whose sid no delivery has
recorded, is a candidate. Not StartTime: it stays empty until Twilio dials, so a call still
queued would be missed and called twice. It is "found" only when exactly one candidate
exists and no other delivery to the same person or number is in the same uncertain state;
none is "not_found" (safe to call); anything else is "unknown" and is asked again later
(others' sids get recorded meanwhile, by their callbacks or their own reconciliation), and
after the attempts run out the delivery stays 'uncertain' for officers, never guessed and
never called twice. A status callback carries the delivery id (?d=) and settles it directly
(notify/deliveries.advance).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from itertools import islice
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from notify.channels.base import Outgoing
from notify.channels.twilio_client import RedirectingHttpClient, translate
from notify.outcomes import PROVIDER_STATES, Lookup, Outcome
from notify.pacing import TokenBucket

REPEAT = 3
SKEW = timedelta(seconds=5)  # clocks of two machines
WINDOW = timedelta(seconds=60)  # beyond the client's timeout: a create never takes longer
LOOKUP_MAX = 200  # calls read back at most (newest first) before answering "unknown"
VOICES = {"zh": ("zh-CN", "Polly.Zhiyu"), "en": ("en-US", "Polly.Joanna")}


def twiml(text: str, language: str, *, repeat: int = REPEAT) -> str:
    lang, voice = VOICES.get(language, VOICES["zh"])
    say = f'<Say language="{lang}" voice="{voice}">{escape(text)}</Say><Pause length="1"/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{say * repeat}</Response>'


class TwilioVoice:
    name = "voice"

    def __init__(self, client: object, http: RedirectingHttpClient, sender: str, *,
                 callback_url: str | None, pacing: TokenBucket | None = None,
                 known_sid: Callable[[str], bool] | None = None,
                 contenders: Callable[[Outgoing], int] | None = None) -> None:
        self.client = client
        self.http = http
        self.sender = sender
        self.callback_url = callback_url
        self.pacing = pacing
        self.known_sid = known_sid or (lambda sid: False)
        # Other voice deliveries to the same person or number whose attempt is uncertain too.
        self.contenders = contenders or (lambda msg: 0)

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
        start, end = since - SKEW, since + WINDOW
        candidates = []
        try:
            calls = self.client.calls.stream(  # type: ignore[attr-defined]
                to=msg.to, from_=self.sender, page_size=50)
            read = 0
            for c in islice(calls, LOOKUP_MAX):
                read += 1
                created = c.date_created
                if created is None:
                    continue
                if created < start:
                    break  # newest first: the rest are older than the attempt
                if created <= end and not self.known_sid(str(c.sid)):
                    candidates.append(c)
            else:
                if read == LOOKUP_MAX:
                    return Lookup("unknown")  # more calls than we read: cannot tell
        except Exception:  # noqa: BLE001 - the provider cannot answer now
            return Lookup("unknown")
        if not candidates:
            return Lookup("not_found")
        if len(candidates) == 1 and self.contenders(msg) == 0:
            c = candidates[0]
            return Lookup("found", str(c.sid), PROVIDER_STATES.get(str(c.status), "queued"))
        return Lookup("unknown")
