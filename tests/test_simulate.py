"""`geowarn simulate`: data that starts now (history only when asked), named scenarios on
given devices or hazard points, deterministic under a seed, and device credentials for a
broker that requires them (a real Mosquitto with the passwd/ACL generated from the registry)."""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from devices import broker_acl
from devices.catalogue import load_catalogue
from geowarn.cli import main
from ingest.broker_config import gateway_broker_config
from ingest.gateway import Gateway
from simulators import library
from simulators.library import Placement
from simulators.scenarios import messages as track_messages
from simulators.scenarios import typhoon_rain
from simulators.sending import Connections, send
from simulators.streams import SimMessage, device_ids, generate, make_devices
from tests.fixtures.broker import Broker
from tests.fixtures.gateway import wait_for_count

KINDS = ("rain_gauge", "gnss", "crack_meter", "water_level")
START = datetime(2026, 7, 1, tzinfo=UTC)


# ---- pure: the streams ------------------------------------------------------------------------

def test_fleet_stream_is_in_event_time_order_from_the_start() -> None:
    devices = make_devices(device_ids(KINDS, 8), "mixed", 3)
    stream = list(generate(devices, start=START, messages_per_device=5, time_ordered=True))
    times = [m.data_time for m in stream]
    assert times == sorted(times)  # type: ignore[type-var]
    assert times[0] == START
    assert {m.device_id for m in stream if m.data_time == START} == \
        {d.device_id for d in devices}  # every device's first reading is at the start
    assert len(stream) == 40
    endless = generate(make_devices(device_ids(KINDS, 2), "native", 3), start=START,
                       messages_per_device=None, time_ordered=True)
    assert len(list(itertools.islice(endless, 1000))) == 1000


@pytest.mark.parametrize("name", list(library.SCENARIOS))
def test_each_scenario_starts_at_its_start_and_is_deterministic_under_a_seed(name: str) -> None:
    scenario = library.SCENARIOS[name]
    kind = scenario.kinds[0] if scenario.kinds else "crack_meter"
    where = [Placement("DEV-1", kind), Placement("DEV-2", kind)]

    def run(seed: int) -> list[SimMessage]:
        return list(library.with_faults(track_messages(scenario.tracks(where, START, seed)),
                                        scenario.faults, seed))

    a, b, c = run(4), run(4), run(5)
    assert [m.payload for m in a] == [m.payload for m in b]
    assert [m.payload for m in a] != [m.payload for m in c]
    assert min(m.data_time for m in a if m.data_time) == START
    assert {m.device_id for m in a} == {"DEV-1", "DEV-2"}
    # Two devices under one scenario do not send identical values.
    one = [m.payload for m in a if m.device_id == "DEV-1"][5:10]
    two = [m.payload.replace(b"DEV-2", b"DEV-1") for m in a if m.device_id == "DEV-2"][5:10]
    assert one != two
    faults = {m.fault for m in a}
    assert ("duplicate" in faults and "garbage" in faults) == (name == "faults")


def test_scenarios_refuse_devices_of_the_wrong_kind() -> None:
    with pytest.raises(Exception, match="typhoon runs on rain_gauge devices; G-1 is a gnss"):
        library.SCENARIOS["typhoon"].tracks([Placement("G-1", "gnss")], START, 1)
    creep = library.SCENARIOS["creep"].tracks([Placement("G-1", "gnss")], START, 1)[0]
    assert set(creep.values) == {c.name for c in load_catalogue().kind("gnss").channels}


def test_nothing_is_sent_before_its_data_time() -> None:
    """A stream reaching into the future is a live feed: send() waits for each message's time
    (here: stopped while waiting for the first future one)."""
    now = datetime.now(UTC)
    msgs = [SimMessage("gw/v1/X/telemetry", b"{}", (("X", "c", now + timedelta(hours=h), 1.0),),
                       device_id="X") for h in (-2, -1, 0, 1, 2)]

    class Recorder:
        who = "X"

        def __init__(self) -> None:
            self.sent: list[str] = []
            self.refused: Counter[str] = Counter()

        def publish(self, topic: str, payload: bytes) -> None:
            self.sent.append(topic)
            if len(self.sent) == 3:
                threading.Timer(0.2, stop.set).start()  # stop it while it waits

        def close(self) -> None:
            pass

    recorder = Recorder()
    connections = Connections("127.0.0.1", 1, connect=lambda *a, **k: recorder)
    stop = threading.Event()
    report = send(msgs, connections, stop, clock=lambda: now)
    assert report.stopped and report.published == 3 and len(recorder.sent) == 3
    assert report.last_data == now


# ---- through a real broker, gateway and database ----------------------------------------------

def _import_fleet(tmp_path: Path, ids: list[str], kinds: list[str], fmt: str,
                  hazard: str = "", profiles: list[str] | None = None) -> Path:
    src = tmp_path / "fleet.csv"
    profiles = profiles or ["native"] * len(ids)
    src.write_text("device_id,kind,profile,hazard_id\n" + "".join(
        f"{i},{k},{p},{hazard}\n" for i, k, p in zip(ids, kinds, profiles, strict=True)))
    out = tmp_path / f"secrets.{fmt}"
    assert main(["devices", "import", str(src), "--secrets-out", str(out),
                 "--secrets-format", fmt]) == 0
    return out


@pytest.fixture
def secured(conn: psycopg.Connection, tmp_path: Path, start_broker: Callable[..., Broker],
            start_gateway: Callable[..., Gateway]) -> Callable[[], Broker]:
    """A Mosquitto with the passwd and ACL generated from the registry (call it after
    registering the devices), with a gateway on its own account."""

    def _start() -> Broker:
        conf = tmp_path / "broker"
        conf.mkdir(exist_ok=True)
        files = broker_acl.write_broker_config(conn, conf, gateway_user="gw")
        assert files.new_gateway_secret
        broker = start_broker(gateway_broker_config(password_file=files.passwd,
                                                    acl_file=files.acl))
        start_gateway(broker, username="gw", password=files.new_gateway_secret)
        return broker

    return _start


@pytest.mark.parametrize(("fmt", "profile"), [("csv", "native"), ("json", "mixed"),
                                              ("env", "native")])
def test_live_fleet_with_secrets_is_stored_now_and_reports_on_time(
        fmt: str, profile: str, conn: psycopg.Connection, db_url: str, tmp_path: Path,
        secured: Callable[[], Broker], capsys: pytest.CaptureFixture) -> None:
    pairs = device_ids(list(KINDS), 4)
    sims = make_devices(pairs, profile, 1)
    secrets = _import_fleet(tmp_path, [i for i, _ in pairs], [k for _, k in pairs], fmt,
                            profiles=[d.profile for d in sims])
    broker = secured()
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    capsys.readouterr()
    assert main(["simulate", "--url", broker.url, "--devices", "4", "--messages", "3",
                 "--step", "0.2", "--profile", profile, "--secrets", str(secrets)]) == 0
    err = capsys.readouterr().err
    assert "published 12 messages" in err and "refused" not in err
    n = sum(len(load_catalogue().kind(k).channels) for _, k in pairs) * 3
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", n) == n
    # Started now: nothing from the past, and the default window of `geowarn readings` has it.
    row = conn.execute("SELECT min(ts) FROM readings").fetchone()
    assert row is not None and row[0] >= before
    rain = pairs[0][0]
    assert main(["readings", rain]) == 0
    out = capsys.readouterr().out
    assert out.count(" rain ") == 3 and "reliable" in out
    assert main(["devices", "list"]) == 0
    rows = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert len(rows) == 4 and all(r.endswith(" ok") for r in rows), rows


def test_without_credentials_the_broker_refuses_and_the_fix_is_named(
        conn: psycopg.Connection, tmp_path: Path, secured: Callable[[], Broker],
        capsys: pytest.CaptureFixture) -> None:
    _import_fleet(tmp_path, ["CM-A", "CM-B"], ["crack_meter", "crack_meter"], "csv")
    broker = secured()
    assert main(["simulate", "--url", broker.url, "--scenario", "quiet", "--device", "CM-A",
                 "--backfill", "1h", "--until", "now"]) == 2
    assert "refused anonymous" in capsys.readouterr().err
    assert main(["simulate", "--url", broker.url, "--scenario", "quiet", "--device", "CM-A",
                 "--device", "CM-B", "--username", "CM-A", "--password", "x"]) == 2
    assert "--username CM-A may publish only as that device" in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"CM-A": "whatever"}))
    assert main(["simulate", "--url", broker.url, "--scenario", "quiet", "--device", "CM-A",
                 "--device", "CM-B", "--secrets", str(partial)]) == 2
    assert "no secret for CM-B in the secrets file" in capsys.readouterr().err


def test_one_device_with_username_and_password(
        conn: psycopg.Connection, db_url: str, tmp_path: Path, secured: Callable[[], Broker],
        capsys: pytest.CaptureFixture) -> None:
    from devices import secrets_file

    out = _import_fleet(tmp_path, ["CM-U"], ["crack_meter"], "json")
    broker = secured()
    secret = secrets_file.read(out)["CM-U"]
    assert main(["simulate", "--url", broker.url, "--scenario", "quiet", "--device", "CM-U",
                 "--backfill", "2h", "--until", "now", "--username", "CM-U",
                 "--password", secret]) == 0  # a secret never starts with "-" (an option)
    assert "published 13 messages" in capsys.readouterr().err  # 2 h of 10-minute samples
    n = 13 * len(load_catalogue().kind("crack_meter").channels)
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", n) == n


def test_typhoon_on_a_hazard_point_backfilled_is_the_seeded_storm(
        conn: psycopg.Connection, db_url: str, broker: Broker,
        start_gateway: Callable[..., Gateway], capsys: pytest.CaptureFixture) -> None:
    start_gateway(broker)
    # No rain gauge on HZ-9 yet: the error names the fix; --register places one there.
    assert main(["simulate", "--url", broker.url, "--scenario", "typhoon", "--hazard", "HZ-9",
                 "--backfill", "26h", "--until", "now", "--seed", "7"]) == 2
    assert "hazard point HZ-9 has no rain_gauge device" in capsys.readouterr().err
    assert main(["simulate", "--url", broker.url, "--scenario", "typhoon", "--hazard", "HZ-9",
                 "--register", "--backfill", "26h", "--until", "now", "--seed", "7"]) == 0
    err = capsys.readouterr().err
    assert "registered SIM-TYPHOON-HZ-9 (rain_gauge, on hazard point HZ-9)" in err
    sent = int(err.split("published ")[1].split()[0])
    assert 26 * 12 <= sent <= 26 * 12 + 1  # 5-minute samples over the 26 h backfill
    assert wait_for_count(db_url, "SELECT count(*) FROM readings r JOIN channels c "
                          "USING (channel_id) WHERE c.channel = 'rain'", sent) == sent
    stored = [v for (v,) in conn.execute(
        "SELECT r.value FROM readings r JOIN channels c USING (channel_id) "
        "WHERE c.device_id = 'SIM-TYPHOON-HZ-9' AND c.channel = 'rain' ORDER BY r.ts")]
    expected = typhoon_rain(576, 300.0, peak_index=300, peak_mm_h=32.0, width_h=2.0,
                            seed=7)["rain"][:sent]
    np.testing.assert_allclose(stored, expected)
    assert conn.execute("SELECT hazard_id FROM devices WHERE device_id = 'SIM-TYPHOON-HZ-9'"
                        ).fetchone() == ("HZ-9",)
    # Run again on the hazard point: its rain gauge is found, nothing is registered twice.
    assert main(["simulate", "--url", broker.url, "--scenario", "typhoon", "--hazard", "HZ-9",
                 "--backfill", "1h", "--until", "now"]) == 0
    assert "registered" not in capsys.readouterr().err
