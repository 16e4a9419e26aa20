"""Resident memory (VmRSS) of a few processes, sampled in a thread: is a service's memory flat
over a long run? Judged on the median of the second quarter of the run against that of the
last quarter (the first quarter is start-up: caches and rings filling)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np


class RssSampler(threading.Thread):
    def __init__(self, pids: dict[str, int], every_s: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every_s = pids, every_s
        self.samples: dict[str, list[tuple[float, float]]] = {k: [] for k in pids}
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.is_set():
            for name, pid in self.pids.items():
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                kb = next((int(line.split()[1]) for line in text.splitlines()
                           if line.startswith("VmRSS:")), 0)
                self.samples[name].append((time.monotonic() - t0, kb / 1024.0))
            self.stop.wait(self.every_s)

    def summary(self, name: str) -> dict[str, float]:
        t = np.array([s[0] for s in self.samples[name]])
        mib = np.array([s[1] for s in self.samples[name]])
        # "start": the first sample once the process has imported (10 s after the sampler
        # started, or the last sample of a shorter run)
        start = mib[min(int(np.searchsorted(t, 10.0)), mib.size - 1)]
        q = max(1, mib.size // 4)
        return {"start": float(start), "end": float(mib[-1]), "q2": float(np.median(mib[q:2 * q])),
                "q4": float(np.median(mib[-q:])), "max": float(mib.max()),
                "samples": float(mib.size)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
