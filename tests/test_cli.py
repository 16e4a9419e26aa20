"""The `geowarn` command line as a whole: the command table, lazy imports that isolate a
broken capability, output into a closed pipe, and the embedded database's notice."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from geowarn import cli
from geowarn.settings import PROJECT_ROOT

FEATURE_PACKAGES = ("devices", "ingest", "gis", "alerts", "simulators", "demo", "services",
                    "api")


def _registered(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).register(sub)
    return set(sub.choices)


def test_every_module_defines_exactly_the_commands_the_table_gives_it() -> None:
    for module in set(cli.COMMANDS.values()):
        # "PARENT CHILD": the module adds CHILD to the subcommands of PARENT.
        assert _registered(module) == {c.rpartition(" ")[2] for c, m in cli.COMMANDS.items()
                                       if m == module}, module


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOWARN_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(extra)
    return env


def test_a_command_imports_only_its_own_capability() -> None:
    code = ("import sys; from geowarn.cli import main; "
            "rc = main(['contracts', 'catalogue']); "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FEATURE_PACKAGES!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=_env(),
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == "['devices']"


def test_a_broken_capability_breaks_only_its_own_commands(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "geowarn_broken_capability", None)  # import fails
    monkeypatch.setitem(cli.COMMANDS, "broken", "geowarn_broken_capability")
    # Another command works...
    assert cli.main(["contracts", "catalogue"]) == 0
    assert "rain_gauge" in capsys.readouterr().out
    # ...the listing shows the broken one as unavailable, with the reason...
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    listing = capsys.readouterr().out
    assert "broken" in listing and "(unavailable: ModuleNotFoundError" in listing
    assert "demo" in listing and "readings" in listing
    # ...and running it is a clear error, not a traceback.
    assert cli.main(["broken", "--whatever"]) == 2
    assert "`geowarn broken` is unavailable: geowarn_broken_capability cannot be imported " \
           "(ModuleNotFoundError" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["contracts", "catalogue"],
    ["devices", "import", "--help"],
    ["db", "info"],
    ["readings", "NO-SUCH-DEVICE"],
])
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str], db_url: str) -> None:
    """`geowarn ... | head`: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "geowarn", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=PROJECT_ROOT,
                              env=_env(GEOWARN_DATABASE_URL=db_url), timeout=120)
    finally:
        os.close(write_end)
    err = proc.stderr.decode(errors="replace")
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode in (0, cli.EXIT_BROKEN_PIPE, 2), err
    if proc.returncode == 2:  # a command whose answer is an error says so, on stderr
        assert err.startswith("geowarn: error:"), err


def test_head_ends_cleanly() -> None:
    """The real thing: a shell pipeline into `head -n 1`."""
    proc = subprocess.run(["bash", "-c", f"{sys.executable} -m geowarn contracts catalogue "
                           "| head -n 1; echo \"status ${PIPESTATUS[0]}\""],
                          cwd=PROJECT_ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines()[-1] in ("status 0", f"status {cli.EXIT_BROKEN_PIPE}")


def test_embedded_database_is_announced_without_platformdirs_warning() -> None:
    """No GEOWARN_DATABASE_URL: the command says it uses the embedded demo database, and
    where; no `XDG_RUNTIME_DIR is not set` warning although it is not set."""
    pytest.importorskip("pgserver")  # the `embedded` extra; CI installs it (strict: fails)
    # Not under pytest's private (0700) temporary folder: run as root, pgserver hands the
    # data directory to its own OS user, who must be able to reach it.
    workdir = Path(tempfile.mkdtemp(prefix="geowarn-embedded-test-"))
    try:
        proc = subprocess.run([sys.executable, "-m", "geowarn", "db", "info"], cwd=workdir,
                              env=_env(GEOWARN_DATA_DIR=str(workdir / "data")),
                              capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert "using the embedded demo database in data/pgdata" in proc.stderr
    assert "XDG_RUNTIME_DIR" not in proc.stderr and "Warning" not in proc.stderr
    assert "server:      PostgreSQL" in proc.stdout


def test_a_broken_subcommand_breaks_only_itself(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`devices broker-config` comes from ingest (a layer above devices): ingest failing to
    import leaves every other `geowarn devices` command working."""
    monkeypatch.setitem(sys.modules, "ingest.broker_cli", None)  # import fails
    with pytest.raises(SystemExit):
        cli.main(["devices", "--help"])
    listing = capsys.readouterr().out
    assert "(unavailable: ModuleNotFoundError" in listing and "rotate-secret" in listing
    assert cli.main(["devices", "broker-config", "out", "--listen", "127.0.0.1:1883"]) == 2
    assert "`geowarn devices broker-config` is unavailable: ingest.broker_cli cannot be " \
           "imported" in capsys.readouterr().err
