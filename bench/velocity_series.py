"""Benchmark: the engine's velocity series for one displacement channel (GET
/api/devices/{id}/velocity), CPU per request, against the velocity method alone.

The series replays the engine's displacement code (alerts/engine/disp_series.replay: hourly
bins, step detection, velocities per scale, acceleration, reference rate) over the chart's
range plus its warm-up. Baseline, same run: alerts/methods/velocity.multi_scale over the
same windows, once per hour (what a series of the velocity method alone would cost, with no
steps removed). Data: a crack meter's hourly middle values (two per hour, as the endpoint
reads them) creeping at 1 mm/day with 0.03 mm noise; no database (its query is the hourly
middles', timed with the readings store). CPU time (process_time), so other developers' load
does not inflate it. Run: .venv/bin/python -m bench.velocity_series
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from alerts.engine import disp_series
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick_setup import build_setup
from alerts.methods.velocity import bin_noise, multi_scale

HOUR = 3600.0


def _data(hours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.repeat(np.arange(hours) * HOUR, 2) + np.tile([1800.0, 1800.001], hours)
    v = t / 86400.0 + np.random.default_rng(seed).normal(0.0, 0.03, t.size)
    return t, v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", default="3,31", help="chart ranges, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    info = [ChannelInfo(1, "CM-1", "crack_meter", "opening", None, None, 600.0)]
    rule = resolve(info, {})[0]
    p = build_setup(info, [rule]).p
    scales = tuple(int(h) for h in rule.velocity_scales_h)
    warm = disp_series.warmup_hours(rule)
    print(f"warm-up {warm} h; scales {scales} h")
    print("| range | hours replayed | series CPU s (median) | per hour ms | baseline CPU s "
          "| ratio |")
    print("|---|---|---|---|---|---|")
    for days in (int(d) for d in args.days.split(",")):
        hours = days * 24 + warm
        t, v = _data(hours, seed=days)
        q = np.zeros(t.size, np.int8)
        series, base = [], []
        for _ in range(args.repeat):
            c0 = time.process_time()
            out = disp_series.replay(rule, p, t, v, q, t[-1] - days * 86400.0)
            series.append(time.process_time() - c0)
            bins = 0.5 * (v[0::2] + v[1::2])
            c0 = time.process_time()
            for end in range(warm, hours):
                y = bins[None, end - scales[-1] + 1:end + 1]
                multi_scale(y, HOUR, scales, bin_noise(y[:, -72:]))
            base.append(time.process_time() - c0)
        s, b = statistics.median(series), statistics.median(base)
        assert out.t.size >= days * 24 - 1, out.t.size
        print(f"| {days} d | {hours} | {s:.2f} | {1000 * s / hours:.1f} | {b:.2f} "
              f"| {s / b:.1f} |")


if __name__ == "__main__":
    main()
