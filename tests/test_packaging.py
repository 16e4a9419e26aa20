"""Installing GeoWarn prints no warning, and installs every package of the project."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from geowarn.settings import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
# pip's own notes about this machine's package index configuration, not about the project.
PIP_NOISE = re.compile(r"^WARNING: Location '.*' is ignored")


def test_license_is_an_spdx_string_with_its_file() -> None:
    project = PYPROJECT["project"]
    assert isinstance(project["license"], str)  # the table form is deprecated
    for name in project["license-files"]:
        assert (PROJECT_ROOT / name).is_file(), name


def test_every_top_level_package_is_installed() -> None:
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.parent.name for p in PROJECT_ROOT.glob("*/__init__.py")} - {"tests"}
    assert {f"{p}*" for p in packages} <= set(include)


def test_building_the_project_prints_no_warning(tmp_path: Path) -> None:
    # A copy: pip builds in the source tree (build/, *.egg-info), not in the checkout.
    source = tmp_path / "src"
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", ".geowarn", "build", "*.egg-info", "__pycache__", ".*_cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path),
         str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if not PIP_NOISE.match(line.strip())]
    warnings = [line for line in lines
                if re.search(r"\bwarning\b|\w+Warning\b|deprecat", line, re.I)
                and "byte-compiling is disabled" not in line]
    assert warnings == []
    wheel = next(tmp_path.glob("geowarn-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "geowarn/migrations/0001_core.sql" in names and "demo/cli.py" in names
