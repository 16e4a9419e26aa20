#!/usr/bin/env bash
# The two commands a newcomer needs:
#   bash dev.sh demo   set up (venv + install) and run the main job on embedded defaults
#   bash dev.sh test   set up and run the whole test suite (lint, types, tests)
# Anything after the command is passed on (to `geowarn demo` or to pytest).
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${GEOWARN_VENV:-.venv}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when the project's dependencies changed since the last install.
  local stamp="$VENV/.geowarn-installed"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev,embedded]"
    touch "$stamp"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/geowarn" demo "$@"
    ;;
  test)
    setup
    "$VENV/bin/ruff" check .
    "$VENV/bin/mypy" geowarn devices ingest alerts gis api notify simulators demo services bench
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: bash dev.sh demo|test [args...]" >&2
    exit 2
    ;;
esac
