"""Voice reconciliation through the real twilio client against the local fake: after an
interrupted attempt the Calls list (To/From, newest first, back to the attempt) decides, and
only an unambiguous answer counts (see notify/channels/twilio_voice.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notify.channels.base import Outgoing
from notify.channels.twilio_client import make_client
from notify.channels.twilio_voice import TwilioVoice
from tests.fixtures.fake_twilio import ACCOUNT, TOKEN, FakeTwilio
from tests.notify_twilio_env import SENDER, free_port

RESIDENT, OTHER = "+8613600000001", "+8613600000002"


def _msg(delivery_id: int, to: str, now: datetime) -> Outgoing:
    return Outgoing(delivery_id, f"GW{delivery_id}", to, to[:6] + "****" + to[-4:],
                    f"请立即撤离 #GW{delivery_id}", "zh", now + timedelta(hours=1), now,
                    f"household:HH-{delivery_id}")


def _voice(fake: FakeTwilio, *, known: set[str] | None = None, contenders: int = 0,
           base: str | None = None) -> TwilioVoice:
    client, http = make_client(ACCOUNT, TOKEN, api_base=base or fake.base_url, timeout=5.0)
    return TwilioVoice(client, http, SENDER, callback_url=None,
                       known_sid=lambda sid: sid in (known or set()),
                       contenders=lambda msg: contenders)


def test_the_one_unclaimed_call_of_the_attempt_is_found(fake_twilio: FakeTwilio) -> None:
    now = datetime.now(UTC)
    voice = _voice(fake_twilio)
    sent = voice.send(_msg(1, RESIDENT, now))
    assert sent.kind == "accepted" and sent.provider_id
    found = voice.lookup(_msg(1, RESIDENT, now), now)
    assert (found.answer, found.provider_id) == ("found", sent.provider_id)
    assert voice.lookup(_msg(2, OTHER, now), now).answer == "not_found"
    # The call is another delivery's once its sid is recorded: this one was never sent.
    claimed = _voice(fake_twilio, known={sent.provider_id})
    assert claimed.lookup(_msg(3, RESIDENT, now), now).answer == "not_found"
    # A call older than the attempt is not the attempt's.
    later = now + timedelta(minutes=10)
    assert voice.lookup(_msg(4, RESIDENT, later), later).answer == "not_found"


def test_ambiguity_is_never_guessed(fake_twilio: FakeTwilio) -> None:
    now = datetime.now(UTC)
    voice = _voice(fake_twilio)
    assert voice.send(_msg(1, RESIDENT, now)).kind == "accepted"
    # Another uncertain delivery to the same person: which call is whose cannot be told.
    assert _voice(fake_twilio, contenders=1).lookup(_msg(1, RESIDENT, now), now).answer \
        == "unknown"
    assert voice.send(_msg(2, RESIDENT, now)).kind == "accepted"
    assert voice.lookup(_msg(1, RESIDENT, now), now).answer == "unknown"  # two candidates
    assert len(fake_twilio.calls(RESIDENT)) == 2  # and nothing was called again


def test_a_provider_that_cannot_answer_is_unknown(fake_twilio: FakeTwilio) -> None:
    now = datetime.now(UTC)
    down = _voice(fake_twilio, base=f"http://127.0.0.1:{free_port()}")
    assert down.lookup(_msg(1, RESIDENT, now), now).answer == "unknown"
    assert ("GET", "Calls") not in fake_twilio.requests
