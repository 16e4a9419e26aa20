"""The file of new device secrets that `geowarn devices import --secrets-out` writes, and that
`geowarn simulate --secrets` (or a provisioning script) reads back.

Three formats, all UTF-8 with plain LF line ends (a secret cut from a CRLF file carries "\\r"
and the broker refuses it):

  csv   device_id,secret            header line, then one device a line
  json  {"RG-0001": "secret", ...}  one object, device id -> secret
  env   GEOWARN_SECRET_RG_0001=...  one variable a line, for `. file` or `--env-file`; the
                                    name is env_name(device_id)

The file is created new, readable by its owner only (0600), and never overwritten: it may hold
the only copy of earlier secrets (the registry keeps only their hashes).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from geowarn.errors import InvalidInput

SecretsFormat = Literal["csv", "json", "env"]
FORMATS: tuple[SecretsFormat, ...] = ("csv", "json", "env")
ENV_PREFIX = "GEOWARN_SECRET_"
_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_SHELL_SAFE = re.compile(r"^[A-Za-z0-9_.:/+=@%^,-]*$")


def env_name(device_id: str) -> str:
    """The variable of a device's secret in the env format: GEOWARN_SECRET_ + the id in upper
    case with every character outside A-Z 0-9 made "_" (RG-0001 -> GEOWARN_SECRET_RG_0001)."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", device_id.upper())


def format_for(path: Path, given: str | None) -> SecretsFormat:
    """The format asked for, else the one the file name says (.json, .env), else csv."""
    if given is not None:
        if given not in FORMATS:
            raise InvalidInput(f"unknown secrets format {given!r} (known: {', '.join(FORMATS)})")
        return given
    suffix = path.suffix.lower()
    return "json" if suffix == ".json" else "env" if suffix == ".env" else "csv"


def render(secrets: Mapping[str, str], fmt: SecretsFormat) -> str:
    """The file's text. Pure; raises InvalidInput when the format cannot hold these ids."""
    if fmt == "json":
        return json.dumps(dict(secrets), indent=1, ensure_ascii=False) + "\n"
    if fmt == "env":
        names: dict[str, str] = {}
        lines = []
        for device_id, secret in secrets.items():
            name = env_name(device_id)
            if name in names:
                raise InvalidInput(f"devices {names[name]} and {device_id} both become "
                                   f"{name} in the env format; use --secrets-format csv or json")
            if not _SHELL_SAFE.match(secret):
                raise InvalidInput(f"the secret of {device_id} cannot be written unquoted")
            names[name] = device_id
            lines.append(f"{name}={secret}\n")
        return "".join(lines)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("device_id", "secret"))
    writer.writerows(secrets.items())
    return buf.getvalue()


def write_new(path: Path, secrets: Mapping[str, str], fmt: SecretsFormat = "csv") -> None:
    """Create `path` (0600, never overwriting) holding `secrets`, flushed to disk."""
    text = render(secrets, fmt)  # before creating the file: a refusal leaves nothing behind
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} already exists and may hold the only copy of earlier "
                           "secrets; name a new file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None


def read(path: Path, device_ids: Iterable[str] = ()) -> dict[str, str]:
    """device id -> secret from a secrets file in any of the formats (told apart by content).

    An env file names variables, not ids: its secrets are returned under the ids of
    `device_ids` whose env_name they carry (ids not in the file are simply absent)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read the secrets file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"the secrets file {path} is not UTF-8 text") from None
    text = text.replace("\r\n", "\n")  # files copied through Windows tools
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _read_json(path, stripped)
    first = next((line for line in text.splitlines() if line.strip()), "")
    if first.replace(" ", "").lower().startswith("device_id,secret"):
        return _read_csv(path, text)
    if _ENV_LINE.match(first.strip()) or first.lstrip().startswith("#"):
        return _read_env(path, text, device_ids)
    raise InvalidInput(f"{path} is not a secrets file: expected a 'device_id,secret' header "
                       "(csv), a JSON object or GEOWARN_SECRET_...= lines (env)")


def _read_json(path: Path, text: str) -> dict[str, str]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in doc.items()):
        raise InvalidInput(f"{path}: expected a JSON object of device id -> secret strings")
    return {k: v.strip() for k, v in doc.items()}


def _read_csv(path: Path, text: str) -> dict[str, str]:
    rows = list(csv.reader(io.StringIO(text)))
    out: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise InvalidInput(f"{path} line {number}: expected device_id,secret")
        out[row[0].strip()] = row[1].strip()
    return out


def _read_env(path: Path, text: str, device_ids: Iterable[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m is None:
            raise InvalidInput(f"{path} line {number}: expected NAME=secret")
        values[m.group(1)] = m.group(2).strip().strip("'\"")
    return {d: values[env_name(d)] for d in device_ids if env_name(d) in values}
