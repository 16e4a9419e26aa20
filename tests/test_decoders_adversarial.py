"""The decoders against hostile input, without broker or database: the adversarial corpus
decoded offline gives exactly the reasons and readings it promises, fuzzing over both profiles
never gets anything but a DecodeError out of `decode`, and whatever is planned from any input
can be stored (no NUL, no lone surrogate, bounded, no secret)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.decode import decode
from devices.messages import CommandReply, Decoded, DecodeError, DeviceInfo, Reason, Telemetry
from devices.redaction import redact_text
from devices.strict_json import MAX_DEPTH, loads_strict
from ingest.deadletters import MAX_DETAIL, stored_row
from ingest.pipeline import MAX_LETTERS_PER_MESSAGE, ReceivedMessage, plan_batch, plan_message
from tests.adversarial_corpus import DEVICES, MAX_PAYLOAD, Case, adversarial_cases

NOW = datetime(2026, 4, 1, tzinfo=UTC)
INFOS = {d: DeviceInfo(device_id=d, profile=p, status="active", kind=k)  # type: ignore[arg-type]
         for d, (p, k) in DEVICES.items()}
SECRETS = {d: f"S3cret-{d}-0123456789" for d in DEVICES}
# Bounded for CI; GEOWARN_FUZZ_EXAMPLES=20000 for a longer, randomised local run.
FUZZ_EXAMPLES = int(os.environ.get("GEOWARN_FUZZ_EXAMPLES", "400"))


def _decode(topic: str, payload: bytes, now: datetime) -> Decoded:
    return decode(topic, payload, now=now, lookup=INFOS.get, max_payload=MAX_PAYLOAD,
                  max_backlog_days=3650)


def _bound(case: Case) -> str:
    if case.topic in ("$dp", "$dr"):
        return f"gw/nat/{case.device}/{case.topic[1:]}"
    if case.topic.startswith("$crsp/"):
        return f"gw/nat/{case.device}/crsp/{case.topic[6:]}"
    return case.topic


CORPUS = adversarial_cases(NOW, SECRETS, {"CM-1": "c" * 32, "NAT-1": "d" * 32})


def test_corpus_is_large_and_distinct() -> None:
    assert len(CORPUS) >= 200
    assert len({(c.topic, c.payload) for c in CORPUS}) == len(CORPUS)
    assert {c.device for c in CORPUS} == set(DEVICES)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: f"{c.device}-{c.reasons}")
def test_corpus_case_decodes_as_promised(case: Case) -> None:
    plan = plan_message(ReceivedMessage(_bound(case), case.payload, NOW), _decode)
    reasons = sorted(letter.reason for letter in plan.dead_letters)
    assert Reason.INTERNAL_ERROR not in reasons, plan.dead_letters
    if not case.writer_decides:
        assert reasons == sorted(case.reasons), [d.detail for d in plan.dead_letters]
    else:
        assert reasons == [] and len(plan.replies) == 1
    readings = sorted((r.device_id, r.channel, r.ts, r.value) for m in plan.telemetry
                      for r in m.readings)
    assert readings == sorted(case.good)
    for letter in plan.dead_letters:
        _assert_storable(letter)
        for secret in SECRETS.values():
            assert secret not in stored_row(letter)[4]
            assert secret.encode() not in stored_row(letter)[7]


def _assert_storable(letter: object) -> None:
    row = stored_row(letter)  # type: ignore[arg-type]
    for text in (row[1], row[2], row[3], row[4], row[5]):
        if text is not None:
            text.encode("utf-8")  # no lone surrogate
            assert "\x00" not in text
    assert len(row[4]) <= MAX_DETAIL + 40


# ---- named classes, precisely ---------------------------------------------------------------

def test_schema_reasons_name_the_offending_keys() -> None:
    body = json.dumps({"NAT-1": {"L1_LF_1": {"2026-03-31T23:00:00Z": 1}}, "NAT-2": {}}).encode()
    with pytest.raises(DecodeError) as err:
        _decode("$dp", body, NOW)
    assert "'NAT-1'" in err.value.detail and "'NAT-2'" in err.value.detail
    doc = {"seq": 1, "readings": [{"ts": "2026-03-31T23:00:00Z", "channel": "opening",
                                   "value": 1, "colour": "red", "mood": "ok"}]}
    with pytest.raises(DecodeError) as err:
        _decode("gw/v1/CM-1/telemetry", json.dumps(doc).encode(), NOW)
    assert "'colour'" in err.value.detail and "'mood'" in err.value.detail


def test_a_huge_instance_is_never_echoed_whole() -> None:
    doc = {"seq": 1, "readings": [{"ts": "2026-03-31T23:00:00Z", "channel": "opening",
                                   "value": "x" * 50_000}]}
    with pytest.raises(DecodeError) as err:
        _decode("gw/v1/CM-1/telemetry", json.dumps(doc).encode(), NOW)
    assert err.value.reason == Reason.SCHEMA_VIOLATION and len(err.value.detail) < 400


def test_json_rules() -> None:
    assert loads_strict(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for raw, words in [(b'{"a": 1, "a": 2}', "duplicate key 'a'"),
                       (b"\xef\xbb\xbf{}", "byte order mark"),
                       (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested"),
                       (b"", "empty")]:
        with pytest.raises(DecodeError) as err:
            loads_strict(raw)
        assert err.value.reason == Reason.MALFORMED_JSON and words in err.value.detail
    assert loads_strict(b"1" * 5000) == float("inf")


def test_redaction_covers_query_json_and_text() -> None:
    for text in ["$cmd=x&apikey=HUNTER2&msgid=1", '{"password": "HUNTER2"}',
                 "{'api_key': 'HUNTER2'}", "token: HUNTER2", "mqtt_passwd=HUNTER2;",
                 '{"accessToken":"HUNTER2"}', "Authorization: HUNTER2"]:
        assert "HUNTER2" not in redact_text(text), text


def test_a_future_presence_or_status_is_refused() -> None:
    for topic, doc in [("gw/v1/RG-1/presence", {"online": True, "ts": "2099-01-01T00:00:00Z"}),
                       ("gw/v1/RG-1/status", {"ts": "2099-01-01T00:00:00Z"})]:
        with pytest.raises(DecodeError) as err:
            _decode(topic, json.dumps(doc).encode(), NOW)
        assert err.value.reason == Reason.TIMESTAMP_FUTURE
    ahead = (NOW + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")  # within the skew
    got = _decode("gw/v1/RG-1/presence", json.dumps({"online": True, "ts": ahead}).encode(), NOW)
    assert not isinstance(got, DecodeError)


def test_a_message_that_breaks_the_decoder_is_dead_lettered_alone() -> None:
    good = json.dumps({"seq": 1, "readings": [{"ts": "2026-03-31T23:00:00Z",
                                               "channel": "opening", "value": 1}]}).encode()

    def flaky(topic: str, payload: bytes, now: datetime) -> Decoded:
        if payload == b"boom":
            raise ZeroDivisionError("apikey=S3CRET division by zero")
        return _decode(topic, payload, now)

    plan = plan_batch([ReceivedMessage("gw/v1/CM-1/telemetry", good, NOW),
                       ReceivedMessage("gw/v1/CM-1/telemetry", b"boom", NOW)], flaky)
    assert plan.reading_count == 1
    (letter,) = plan.dead_letters
    assert letter.reason == Reason.INTERNAL_ERROR and "ZeroDivisionError" in letter.detail
    assert "S3CRET" not in stored_row(letter)[4]


def test_one_message_never_becomes_a_thousand_dead_letters() -> None:
    readings = [{"ts": "2026-03-31T23:00:00Z", "channel": f"nope{i}", "value": 1}
                for i in range(500)]
    readings.append({"ts": "2026-03-31T23:00:00Z", "channel": "opening", "value": 1})
    body = json.dumps({"seq": 1, "readings": readings}).encode()
    plan = plan_message(ReceivedMessage("gw/v1/CM-1/telemetry", body, NOW), _decode)
    assert plan.reading_count == 1
    assert len(plan.dead_letters) == MAX_LETTERS_PER_MESSAGE + 1
    summary = plan.dead_letters[-1]
    assert summary.reason == Reason.UNKNOWN_CHANNEL
    assert "480 more rejected readings" in summary.detail and "nope20" in summary.detail


def test_a_database_outage_during_lookup_is_not_the_message_fault() -> None:
    class Unreachable(Exception):
        pass

    def lookup_fails(topic: str, payload: bytes, now: datetime) -> Decoded:
        raise Unreachable("registry database unreachable")

    with pytest.raises(Unreachable):
        plan_batch([ReceivedMessage("gw/v1/CM-1/telemetry", b"{}", NOW)], lookup_fails,
                   reraise=(Unreachable,))


# ---- fuzzing --------------------------------------------------------------------------------

TOPICS = ["gw/v1/CM-1/telemetry", "gw/v1/RG-1/status", "gw/v1/RG-1/presence",
          "gw/v1/CM-1/reply/abc", "gw/nat/NAT-1/dp", "gw/nat/NAT-RG/dp", "gw/nat/NAT-1/dr",
          "gw/nat/NAT-1/crsp/abc", "$dp", "$dp/NAT-1", "$dr", "$crsp/x"]
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                           max_leaves=30)
# Keys that mean something to the decoders, so fuzzing gets past the schema often.
native_keys = st.sampled_from(["seq", "readings", "ts", "channel", "value", "unit", "sent_at",
                               "online", "id", "result", "data", "detail", "battery_pct",
                               "sensor_state", "extra", "firmware"])
national_keys = st.sampled_from(["NAT-1", "NAT-RG", "L1_LF_1", "L1_GP_1", "L3_YL_1", "S1_ZT_1",
                                 "2026-03-31T23:00:00Z", "1774998000000", "gpsTotalX", "value",
                                 "sensor_state", "battery_volt", "signal_4g", "sw_version"])
timestamps = st.sampled_from(["2026-03-31T23:00:00Z", "0001-01-01T00:30:00+01:00",
                              "9999-12-31T23:30:00-01:00", "2026-03-31T23:00:00", "",
                              "２０２６-03-31T23:00:00Z", "1774998000000"]) | st.text(max_size=30)


def _docs(keys: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    leaf = json_scalars | timestamps
    return st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys | st.text(max_size=8), inner, max_size=5),
                        max_leaves=40)


def _encode(doc: object, style: int) -> bytes:
    text = json.dumps(doc, allow_nan=True)
    if style == 1:
        body = text.encode()
        return bytes([2]) + len(body).to_bytes(2, "big") + body
    if style == 2:
        return text.encode()[: max(1, len(text) // 2)]
    return text.encode()


def _check(topic: str, payload: bytes) -> None:
    try:
        decoded = _decode(topic, payload, NOW)
    except DecodeError as exc:
        assert exc.reason and exc.detail
        decoded = None
    plan = plan_message(ReceivedMessage(topic, payload, NOW), _decode)
    assert all(d.reason != Reason.INTERNAL_ERROR for d in plan.dead_letters), plan.dead_letters
    for letter in plan.dead_letters:
        _assert_storable(letter)
    if isinstance(decoded, Telemetry):
        for r in decoded.readings:
            assert r.channel.isascii() and r.channel.isprintable()
    if isinstance(decoded, CommandReply):
        json.dumps(dict(decoded.data), allow_nan=False)


# CI: a fixed, bounded set of examples (same every run). A longer local run explores anew.
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                derandomize="GEOWARN_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(topic=st.sampled_from(TOPICS), payload=st.binary(max_size=300))
def test_fuzz_raw_bytes(topic: str, payload: bytes) -> None:
    _check(topic, payload)


@FUZZ
@given(topic=st.sampled_from(TOPICS[:4]), doc=_docs(native_keys), style=st.integers(0, 2))
def test_fuzz_native_documents(topic: str, doc: object, style: int) -> None:
    _check(topic, _encode(doc, 0 if style == 1 else style))


@FUZZ
@given(topic=st.sampled_from(TOPICS[4:6] + TOPICS[8:10]), device=national_keys,
       doc=_docs(national_keys), style=st.integers(0, 2))
def test_fuzz_national_frames(topic: str, device: str, doc: object, style: int) -> None:
    _check(topic, _encode({"NAT-1": doc} if device == "NAT-1" else doc, style))


@FUZZ
@given(topic=st.sampled_from(TOPICS[6:8] + TOPICS[10:]),
       parts=st.lists(st.tuples(national_keys | st.text(max_size=8),
                                st.text(max_size=20) | json_values.map(json.dumps)),
                      max_size=6))
def test_fuzz_national_replies(topic: str, parts: list[tuple[str, str]]) -> None:
    text = "&".join(f"{k}={v}" for k, v in parts)
    _check(topic, text.encode("utf-8", "surrogatepass"))
