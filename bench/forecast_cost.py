"""CPU cost of the failure forecast per engine step: the engine as it is (the inverse-velocity
line, plus the Voight fit where alerts/methods/forecast_choice.py screens it in) against a
baseline in the same run, the line alone (the Voight path answering "not chosen" at no cost,
which is the engine before the Voight fit was wired in).

The warning-skill families (bench/warning_skill.py) run through the pure tick one hour of data
per tick, as there. Measured with time.process_time (CPU, independent of what else shares the
cores): every tick, and every forecast refresh of a channel in established acceleration (the
only place the forecast is computed). The forecasts at the end are compared too: they may
differ only where the Voight fit was chosen.

Run: .venv/bin/python -m bench.forecast_cost [--seeds 5] [--first-seed 0]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

import alerts.engine.displacement as disp
from alerts.methods.voight import NO_FIT
from bench import warning_skill as ws


def _measure(seeds: range, voight: bool) -> dict[str, Any]:
    ticks: list[float] = []
    refreshes: list[float] = []
    real_tick, real_forecast, real_voight = ws.tick, disp._forecast, disp.voight_forecast

    def timed_tick(*a: Any) -> Any:
        c0 = time.process_time()
        out = real_tick(*a)
        ticks.append(time.process_time() - c0)
        return out

    def timed_forecast(st: disp.DispState, p: dict[str, np.ndarray], ch: Any, rows: Any,
                       now: Any, established: np.ndarray) -> None:
        c0 = time.process_time()
        real_forecast(st, p, ch, rows, now, established)
        n = int(established.sum())
        if n:
            refreshes.extend([(time.process_time() - c0) / n] * n)

    ws.tick = timed_tick  # type: ignore[assignment]
    disp._forecast = timed_forecast
    if not voight:
        disp.voight_forecast = lambda *a: (None, NO_FIT)
    try:
        fcs = [r.forecast(i) for fams in (ws.FAMILIES, (ws.MINUTE_FAMILY,))
               for _, series, r in ws.families_run(fams, seeds) for i in range(len(series))]
    finally:
        ws.tick, disp._forecast, disp.voight_forecast = real_tick, real_forecast, real_voight
    return {"ticks": np.array(ticks), "refresh": np.array(refreshes), "fc": np.array(fcs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    base = _measure(seeds, voight=False)
    new = _measure(seeds, voight=True)
    print("| forecast | ticks | CPU per tick ms (mean / p99) | refreshes | CPU per refresh ms "
          "(p50 / p99 / max) | total CPU s |")
    print("|---|---|---|---|---|---|")
    for name, m in (("inverse velocity only (baseline)", base), ("with the Voight fit", new)):
        t, r = m["ticks"] * 1e3, m["refresh"] * 1e3
        print(f"| {name} | {t.size} | {t.mean():.2f} / {np.percentile(t, 99):.1f} | {r.size} | "
              f"{np.percentile(r, 50):.2f} / {np.percentile(r, 99):.1f} / {r.max():.1f} | "
              f"{t.sum() / 1e3:.1f} |")
    changed = ~np.isclose(base["fc"][:, 0], new["fc"][:, 0], rtol=0, atol=1.0,
                          equal_nan=True)
    print(f"\nforecasts at the end that differ: {int(changed.sum())} of {changed.size}")


if __name__ == "__main__":
    main()
