"""Build the binary $dp example frames (*.bin) from examples/index.json.

A $dp frame is: byte 0 the frame type, bytes 1-2 the body length (big-endian), then the JSON
body. Each index entry with a "frame" gives the type and the body file, or raw "hex" for frames
that cannot be built that way; "declared_length_delta" makes the header lie on purpose.

Run from anywhere: python3 firmware-contracts/examples/make_frames.py [--check]
(--check exits 1 if a committed .bin differs from what this script builds). Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(entry: dict) -> bytes:
    spec = entry["frame"]
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    body = (HERE / spec["body"]).read_bytes()
    declared = len(body) + spec.get("declared_length_delta", 0)
    return bytes([spec["type"]]) + declared.to_bytes(2, "big") + body


def main(argv: list[str]) -> int:
    check = "--check" in argv
    index = json.loads((HERE / "index.json").read_text(encoding="utf-8"))
    stale = []
    for entry in index["examples"]:
        if "frame" not in entry:
            continue
        path, frame = HERE / entry["file"], build(entry)
        if check:
            if not path.exists() or path.read_bytes() != frame:
                stale.append(entry["file"])
        else:
            path.write_bytes(frame)
            print(f"{entry['file']}: {len(frame)} bytes ({frame[:3].hex()} + body)")
    for name in stale:
        print(f"stale: {name} (run make_frames.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
