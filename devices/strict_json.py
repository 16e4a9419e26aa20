"""The JSON the device contract accepts, and nothing Python's json module lets through besides.

RFC 8259 leaves several things to the parser; the contract (firmware-contracts/native-v1.md,
"JSON") decides them, and every one is refused here with a malformed_json reason naming it:
- UTF-8 only, without a byte order mark (RFC 8259 section 8.1: MUST NOT add one);
- no duplicate names in an object (section 4 says SHOULD be unique; "last one wins" would
  store a value the device may not have meant);
- nesting at most MAX_DEPTH levels (a depth bomb must not reach the recursive validators);
- integers of more than MAX_INT_DIGITS digits are read as a double, so a 401-digit value
  becomes infinity and is refused as not finite like 1e400, and a 5,000-digit one never reaches
  Python's int() limit.
`NaN`, `Infinity` and `-Infinity` are not JSON but are read as float NaN/inf so that the one
reading carrying them is refused (not_finite) while its neighbours are kept.
"""

from __future__ import annotations

import json
import math
from typing import Any

from devices.messages import DecodeError, Reason
from devices.text import quoted

MAX_DEPTH = 16
MAX_INT_DIGITS = 19  # beyond any int64; seq, epoch ms and values all fit well within it


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def loads_strict(payload: bytes, *, device_id: str | None = None) -> Any:
    """Parse contract JSON; anything else raises DecodeError(MALFORMED_JSON) saying what."""
    def refuse(detail: str) -> DecodeError:
        return DecodeError(Reason.MALFORMED_JSON, detail, device_id=device_id)

    if payload.startswith(b"\xef\xbb\xbf"):
        raise refuse("payload starts with a UTF-8 byte order mark; send UTF-8 without a BOM")
    if payload[:2] in (b"\x1f\x8b",):
        raise refuse("payload is gzip-compressed; send plain UTF-8 JSON")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(f"payload is not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise refuse("payload is empty")
    try:
        doc = json.loads(text, parse_constant=_constant, parse_int=_int,
                         object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise refuse(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise refuse(f"duplicate key {quoted(exc.key, 40)} in one object; each name may "
                     "appear once") from None
    except RecursionError:
        raise refuse(f"JSON nested too deeply (the contract allows {MAX_DEPTH} levels)") from None
    # Only a payload with more brackets than the limit can be nested deeper than it.
    depth = nesting_depth(doc) if payload.count(b"{") + payload.count(b"[") > MAX_DEPTH else 0
    if depth > MAX_DEPTH:
        raise refuse(f"JSON nested {depth} levels deep; the contract allows {MAX_DEPTH}")
    return doc


def nesting_depth(doc: Any) -> int:
    """Levels of objects/arrays (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            deepest = max(deepest, depth + 1)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
            deepest = max(deepest, depth + 1)
        if deepest > MAX_DEPTH:
            return deepest
    return deepest


def _constant(name: str) -> float:
    return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[name]


def _int(text: str) -> int | float:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return float(text)  # inf beyond 1.8e308: refused as not finite where it is a value
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return out
