"""Secrets a device may send, removed before anything is stored, shown or logged.

A national reply carries the logger's apikey (`...&apikey=SECRET&msgid=42`), and firmware may
echo passwords or tokens in any payload. Whatever GeoWarn keeps of a message it did not
accept (dead-letter payload and detail, log lines) passes through `redact_text` or
`redact_bytes` first: the value of every field whose name says it is a secret is replaced by
`***`, in query strings (`apikey=...`), JSON (`"password": "..."`) and `key: value` text.
"""

from __future__ import annotations

import re

MASK = "***"
# Names that hold secrets, matched case-insensitively as a whole field name or its suffix
# (`device_apikey`, `mqtt_password`, `accessToken`).
_NAMES = (r"api[_-]?key|apikey|pass(?:word|wd)?|pwd|secret|token|auth(?:orization)?"
          r"|credentials?|private[_-]?key|signature")
_FIELD = rf"[A-Za-z0-9_.-]*(?:{_NAMES})"
# "name": "value"  |  "name": 123  (JSON, single or double quotes)
_JSON = re.compile(
    rf"""(?P<head>(?P<q>["'])(?:{_FIELD})(?P=q)\s*:\s*)(?P<value>"(?:[^"\\]|\\.)*"?|'[^']*'?|[^,}}\]\s]+)""",
    re.IGNORECASE)
# name=value  |  name: value  (query strings, headers, free text), up to a separator
_PAIR = re.compile(rf"""(?P<head>\b(?:{_FIELD})\s*[=:]\s*)(?P<value>[^&\s,;"'}}\]]+)""",
                   re.IGNORECASE)


def redact_text(text: str) -> str:
    text = _JSON.sub(lambda m: m["head"] + _masked(m["value"]), text)
    return _PAIR.sub(lambda m: m["head"] + MASK, text)


def _masked(value: str) -> str:
    quote = value[:1] if value[:1] in "\"'" else ""
    return f"{quote}{MASK}{quote}"


def redact_bytes(payload: bytes) -> bytes:
    """The payload with secrets masked; bytes that are not UTF-8 are redacted where they
    are ASCII-compatible (a $dp frame's binary header is kept as it is)."""
    text = payload.decode("utf-8", "surrogateescape")
    redacted = redact_text(text)
    if redacted == text:
        return payload
    return redacted.encode("utf-8", "surrogateescape")
