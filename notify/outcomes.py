"""What a channel says happened to one send, and the delivery states (pure).

A channel's `send` returns an Outcome; notify/deliveries.py turns it into a row change.
Delivery states only move forward (RANK); a callback that arrives late or twice changes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geowarn.errors import GeoWarnError

OutcomeKind = Literal[
    "accepted",   # the provider took it (provider_id set)
    "retry",      # not sent; try again after retry_after_s or the backoff
    "uncertain",  # may or may not have been sent (read timeout): ask the provider first
    "rejected",   # never retried (bad number, STOP, region not enabled): officers are told
    "failed",     # gave up for another reason
    "expired",    # the validity period passed before it could be sent
]

# Forward-only order of delivery states. Terminal states share the top rank.
RANK = {"pending": 0, "sending": 1, "queued": 2, "sent": 3, "delivered": 4,
        "undelivered": 4, "failed": 4, "rejected": 4, "expired": 4, "uncertain": 4}
TERMINAL = frozenset(s for s, r in RANK.items() if r == 4)
# Twilio's own status words, mapped onto ours.
PROVIDER_STATES = {"accepted": "queued", "queued": "queued", "scheduled": "queued",
                   "sending": "sent", "sent": "sent", "ringing": "sent",
                   "in-progress": "sent", "delivered": "delivered", "completed": "delivered",
                   "read": "delivered", "undelivered": "undelivered", "failed": "failed",
                   "busy": "undelivered", "no-answer": "undelivered", "canceled": "failed"}


class ChannelError(GeoWarnError):
    """A channel is misconfigured or its provider answered something we cannot use."""


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    provider_id: str | None = None
    state: str = "queued"  # for accepted: our state for the provider's status
    code: str | None = None  # provider error code ("21211", "timeout", ...)
    message: str = ""
    retry_after_s: float | None = None
    tell_officers: bool = False


@dataclass(frozen=True)
class Lookup:
    """The provider's answer to "did you already take delivery X?"."""

    # unknown: cannot tell now (try again later); cannot: this channel can never tell
    answer: Literal["found", "not_found", "unknown", "cannot"]
    provider_id: str | None = None
    state: str = "queued"


def moves_forward(current: str, new: str) -> bool:
    return current not in TERMINAL and RANK.get(new, -1) > RANK.get(current, 0)
