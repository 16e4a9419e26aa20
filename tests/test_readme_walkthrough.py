"""README's walkthrough, run as written: every block marked `<!-- walkthrough -->` goes, in
order, into one bash script run in a fresh folder, against a fresh empty database on the
test server and the Mosquitto the walkthrough itself starts from the configuration it
generated. The test sets only the variables the walkthrough says to set (the database, and
a free port so that the machine's own broker on 1883 is left alone).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from geowarn.embedded import free_port
from geowarn.settings import PROJECT_ROOT
from tests.fixtures.services import skip_or_fail

BLOCK = re.compile(r"<!-- walkthrough(?P<kind>[^>]*)-->\n```sh\n(?P<body>.*?)```", re.S)
def walkthrough_script(readme: str) -> str:
    blocks = list(BLOCK.finditer(readme))
    assert len(blocks) >= 5, "README's walkthrough blocks are missing"
    return "set -euo pipefail\n" + "\n".join(b["body"] for b in blocks)


def test_walkthrough_script_is_extracted_in_order() -> None:
    script = walkthrough_script((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"))
    steps = ["geowarn db upgrade", "geowarn devices import", "geowarn devices broker-config",
             "mosquitto -c broker/mosquitto.conf", "geowarn run", "mosquitto_pub",
             "geowarn alerts list"]
    positions = [script.index(s) for s in steps]
    assert positions == sorted(positions)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder the `mosquitto` user can enter (started as root, Mosquitto drops to it), so
    not under pytest's private temporary folder."""
    for tool in ("mosquitto", "mosquitto_pub"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            skip_or_fail(f"{tool} is not installed (apt-get install mosquitto "
                         "mosquitto-clients)")
    path = Path(tempfile.mkdtemp(prefix="geowarn-walkthrough-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_readme_walkthrough_runs_as_written(empty_db_url: str, workdir: Path) -> None:
    script = walkthrough_script((PROJECT_ROOT / "README.md").read_text(encoding="utf-8"))
    venv_bin = str(Path(sys.executable).parent)  # as after `. .venv/bin/activate`
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOWARN_")}
    env.update(PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
               f"{os.pathsep}/usr/sbin", GEOWARN_DATABASE_URL=empty_db_url,
               MQTT_PORT=str(free_port()))
    proc = subprocess.Popen(["bash", "-c", script], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        else:  # its `geowarn run &` and `mosquitto &`, should they outlive a failure
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    log = (workdir / "geowarn.log").read_text(errors="replace") \
        if (workdir / "geowarn.log").exists() else ""
    assert proc.returncode == 0, f"{out}\n--- geowarn.log ---\n{log}"
    # What the walkthrough promises: the device's twelve readings are shown, and the alert;
    # the database says the same.
    assert "12 reading(s)" in out, out
    assert any("rainfall" in line and "HP-001" in line for line in out.splitlines()), out
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM readings JOIN channels USING (channel_id) "
                            "WHERE device_id = 'RG-1001'").fetchone() == (12,)
        row = conn.execute("SELECT peak_level FROM alerts WHERE target_id = 'HP-001' AND "
                           "hazard_kind = 'rainfall'").fetchone()
    assert row is not None and row[0] >= 1
    assert b"\r" not in (workdir / "secrets.env").read_bytes()
