"""The gateway's memory is bounded in bytes (GEOWARN_GATEWAY_MEMORY_BYTES), not only in
messages: messages of the maximum size arriving during a database outage keep the resident
size of a `geowarn ingest` process under the bound, and it comes back down after recovery.

The RSS of the subprocess is read from /proc; the assertions compare it with the configured
bound, never with a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from devices.registry import DeviceSpec, add_device
from ingest.broker_config import BrokerLimits, gateway_broker_config
from simulators.publisher import Publisher
from tests.fixtures.broker import Broker
from tests.fixtures.database import with_dbname
from tests.fixtures.gateway import GatewayProcess, wait_for_count
from tests.fixtures.proxy import Proxy
from tests.test_ingest_crash import _wait_log

MAX_PAYLOAD = 1024 * 1024
MEMORY_BOUND = 16 * MAX_PAYLOAD
OUTAGE_MESSAGES = 60


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _max_size_telemetry(seq: int, start: datetime) -> bytes:
    """A valid native telemetry message of exactly MAX_PAYLOAD bytes (JSON allows the
    whitespace), so the gateway holds, decodes and stores it like any other."""
    body = json.dumps({"seq": seq, "readings": [
        {"ts": (start + timedelta(seconds=seq)).isoformat(), "channel": "opening",
         "value": seq / 100}]}).encode()
    return body[:-1] + b" " * (MAX_PAYLOAD - len(body)) + b"}"


def _wait_log_count(gw: GatewayProcess, text: str, count: int) -> bool:
    """Poll the subprocess's log (it offers no event) until `text` appears `count` times."""
    pause = threading.Event()
    for _ in range(300):
        if gw.log.count(text) >= count:
            return True
        pause.wait(0.1)
    return False


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak = pid, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, _rss(self.pid))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_max_size_messages_during_an_outage_stay_within_the_memory_bound(
        conn: psycopg.Connection, db_url: str, tmp_path: Path, pg_proxy: Proxy,
        start_broker: Callable[..., Broker],
        gateway_process: Callable[..., GatewayProcess]) -> None:
    add_device(conn, DeviceSpec("CM-BIG", kind="crack_meter"))
    limits = BrokerLimits.for_fleet(max_payload_bytes=MAX_PAYLOAD, devices=1)
    broker = start_broker(gateway_broker_config(limits=limits))
    proxied = with_dbname(f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/x",
                          db_url.rsplit("/", 1)[1])
    gw = gateway_process(broker, proxied, name="mem-gw",
                         GEOWARN_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD),
                         GEOWARN_GATEWAY_MEMORY_BYTES=str(MEMORY_BOUND))
    gw.start()
    assert _wait_log(gw, "subscribed to"), gw.log
    assert gw.proc is not None
    pid = gw.proc.pid
    start = datetime.now(UTC) - timedelta(hours=2)
    pub = Publisher("127.0.0.1", broker.port)

    # Warm up every code path (messages of the same size, a short outage and the recovery
    # from it), so the baseline holds all the code and caches the gateway will use.
    pg_proxy.cut()
    for seq in range(3):
        pub.publish("gw/v1/CM-BIG/telemetry", _max_size_telemetry(seq, start))
    pub.wait_acked()
    assert _wait_log(gw, "database unavailable"), gw.log[-2000:]
    pg_proxy.restore()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings", 3) == 3
    wait_for_count(db_url, "SELECT count(*) FROM readings", 10**9, timeout=2)
    baseline = _rss(pid)
    warnings_before = gw.log.count("database unavailable")

    pg_proxy.cut()
    sampler = RssSampler(pid)
    sampler.start()
    for seq in range(3, 3 + OUTAGE_MESSAGES):
        pub.publish("gw/v1/CM-BIG/telemetry", _max_size_telemetry(seq, start))
    pub.wait_acked()  # all 60 MiB are at the broker, which pushes as fast as the gateway reads
    assert _wait_log_count(gw, "database unavailable", warnings_before + 1), gw.log[-2000:]
    # Let the gateway fill whatever it is going to hold while the database is away.
    wait_for_count(db_url, "SELECT count(*) FROM readings", 10**9, timeout=8)
    during = sampler.peak
    pg_proxy.restore()
    assert wait_for_count(db_url, "SELECT count(*) FROM readings",
                          3 + OUTAGE_MESSAGES) == 3 + OUTAGE_MESSAGES, gw.log[-3000:]
    sampler.stop.set()
    sampler.join()
    peak = max(during, sampler.peak)
    pub.close()
    # Idle again: what the backlog took is given back.
    wait_for_count(db_url, "SELECT count(*) FROM readings", 10**9, timeout=3)
    after = _rss(pid)
    print(f"RSS baseline {baseline / 2**20:.1f} MiB, peak +{(peak - baseline) / 2**20:.1f} MiB "
          f"(bound {MEMORY_BOUND / 2**20:.0f} MiB), after +{(after - baseline) / 2**20:.1f} MiB")
    assert peak - baseline <= MEMORY_BOUND, (baseline, peak)
    assert after - baseline <= MEMORY_BOUND // 4, (baseline, after)
