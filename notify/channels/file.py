"""The file/console channel: the embedded default when no provider is configured.

Each message is one JSON line appended to a file (who, masked number, text); with
`echo=True` it is also printed. The file is its own record of what was sent, so a lookup
after a crash reads it back by tag: the file channel is exactly-once too.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path

from notify.channels.base import Outgoing
from notify.outcomes import Lookup, Outcome


class FileChannel:
    def __init__(self, path: Path, *, name: str = "file", echo: bool = False) -> None:
        self.name = name
        self.path = path
        self.echo = echo
        self._lock = threading.Lock()

    def send(self, msg: Outgoing) -> Outcome:
        line = json.dumps({"tag": msg.tag, "to": msg.masked_to, "recipient": msg.recipient_id,
                           "text": msg.text, "at": msg.now.isoformat()}, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        if self.echo:
            print(f"[{self.name}] {msg.masked_to} {msg.recipient_id}: {msg.text}", flush=True)
        return Outcome("accepted", provider_id=f"file-{msg.tag}", state="delivered")

    def lookup(self, msg: Outgoing, since: datetime) -> Lookup:
        if not self.path.exists():
            return Lookup("not_found")
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                try:
                    if json.loads(line).get("tag") == msg.tag:
                        return Lookup("found", f"file-{msg.tag}", "delivered")
                except json.JSONDecodeError:
                    continue  # a line torn by a crash mid-write was never a delivery
        return Lookup("not_found")
