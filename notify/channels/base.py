"""The one interface every channel implements.

`send` delivers one message and returns an Outcome (notify/outcomes.py); it never raises for
a provider's refusal. `lookup` answers, after a crash, whether the provider already took a
delivery (matched on its tag or on what was recorded when it was sent); a channel that
cannot be asked answers "unknown", and the delivery is then not resent (README: the rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from notify.outcomes import Lookup, Outcome


@dataclass(frozen=True)
class Outgoing:
    delivery_id: int
    tag: str  # GW<base36 id>, also at the end of `text`
    to: str | None  # full E.164 number for phone channels (never logged)
    masked_to: str
    text: str  # body with the tag
    language: str
    valid_until: datetime
    now: datetime
    recipient_id: str = ""
    subject: str = ""


class Channel(Protocol):
    name: str

    def send(self, msg: Outgoing) -> Outcome: ...

    def lookup(self, msg: Outgoing, since: datetime) -> Lookup: ...
