"""Text a device sent, made safe to store, show and log.

Device ids, channel names, units and vendor strings come from firmware we do not control. The
contract (firmware-contracts/native-v1.md, "Text") allows Unicode scalar values without control
characters; what breaks it must be refused where it is decoded, never reach the writer: a NUL
is refused by PostgreSQL text and jsonb, a lone surrogate (`"\\ud800"` in JSON) cannot be
encoded as UTF-8, and a newline or escape sequence in a detail forges log lines.

`printable` is for echoing such text in a reason: control characters, surrogates and other
invisible code points are escaped (`\\x00`, `\\ud800`), and the result is bounded.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator
from typing import Any

# Categories of code points that are never part of a sensible id or vendor string:
# Cc control, Cs surrogate, Cn unassigned, Co private use, Cf format (zero-width joiners,
# bidirectional overrides that make "ABC" display as "CBA").
_INVISIBLE = frozenset({"Cc", "Cs", "Cn", "Co", "Cf"})


def text_problem(value: str) -> str | None:
    """Why `value` is not acceptable device text, or None when it is."""
    for i, ch in enumerate(value):
        category = unicodedata.category(ch)
        if category == "Cs":
            return f"a lone surrogate U+{ord(ch):04X} at character {i}"
        if category == "Cc":
            return f"a control character U+{ord(ch):04X} at character {i}"
        if category in _INVISIBLE:
            return f"an invisible or unassigned character U+{ord(ch):04X} at character {i}"
    return None


def printable(value: object, limit: int = 80) -> str:
    """A bounded, escaped rendering of `value` for a reason, a log line or a table cell."""
    text = value if isinstance(value, str) else repr(value)
    out = []
    for ch in text[:limit]:
        if unicodedata.category(ch) in _INVISIBLE:
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    rendered = "".join(out)
    if len(text) > limit:
        rendered += f"…({len(text)} characters)"
    return rendered


def quoted(value: object, limit: int = 80) -> str:
    """`printable` in single quotes, for naming an id in a reason."""
    return "'" + printable(value, limit) + "'"


def json_problem(doc: Any, path: str = "$") -> str | None:
    """The first place in a decoded JSON value that cannot be stored as jsonb or shown safely:
    a string with a NUL, control character or lone surrogate (keys too), or a non-finite number.
    Returns "{path}: {why}" or None."""
    for where, value in _walk(doc, path):
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                return f"{where}: text contains {problem}"
        elif isinstance(value, float) and not math.isfinite(value):
            return f"{where}: {value} is not a finite number"
    return None


def _walk(doc: Any, path: str) -> Iterator[tuple[str, Any]]:
    stack: list[tuple[str, Any]] = [(path, doc)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                yield f"{where} (key {quoted(key, 32)})", key
                stack.append((f"{where}.{printable(key, 32)}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
        else:
            yield where, value
