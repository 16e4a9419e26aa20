"""Warning skill of the displacement engine on generated slopes: lead time of red, forecast
error when the data end 4–8 h before failure, and false alarms on slopes that do not fail.

Every series runs through the pure engine tick (alerts/engine/tick.py), fed one hour of data
per tick as the service would after each ingest commit; each series is its own device. The
families (simulators/displacement_scenarios.py) span creep 0.2–2 mm/day, tertiary phases of
3–30 days, noise 0.1 mm (crack meter) to 3 mm (GNSS), 1-minute to hourly sampling, 2–5 %
dropouts and outliers, α = 2 and α ≠ 2 and velocity staircases. The test suite
(tests/test_engine_disp_scenarios.py) asserts on the same runs.

Run: .venv/bin/python -m bench.warning_skill [--seeds 20] [--first-seed 100]
     .venv/bin/python -m bench.warning_skill --outside [--seeds 20] [--first-seed 100]
The second form runs the outside trial's two families instead (tests/outside_series.py
saito_slope, tests/test_outside_disp_trials.py accelerating_gnss; generators independent of
simulators/): red before failure and its median lead time per family and sampling.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import Change, EngineState, Samples, build_setup, tick
from simulators.displacement_scenarios import HOUR, Series, accelerating


@dataclass
class Run:
    series: list[Series]
    changes: list[Change]
    state: EngineState
    row_of: np.ndarray  # channel index -> row in the displacement group

    def device(self, i: int) -> str:
        return f"DEV-{i:03d}"

    def levels(self, i: int) -> list[tuple[float, int]]:
        return [(c.data_time.timestamp(), int(c.level)) for c in self.changes
                if c.target_id == self.device(i) and c.hazard_kind == "deformation"]

    def first_at(self, i: int, level: int) -> float | None:
        return next((t for t, lv in self.levels(i) if lv >= level), None)

    def peak(self, i: int) -> int:
        return max((lv for _, lv in self.levels(i)), default=0)

    def quality_events(self, i: int) -> list[float]:
        return [c.data_time.timestamp() for c in self.changes if c.target_id == self.device(i)
                and c.hazard_kind == "data_quality" and c.level > 0]

    def forecast(self, i: int) -> np.ndarray:
        """The forecast shown at the end: (time, lower, upper, issued_at), NaN when none."""
        assert self.state.disp is not None
        return np.asarray(self.state.disp.fc[self.row_of[i]])

    def forecasts_ever(self, i: int) -> list[dict[str, str]]:
        out = []
        for c in self.changes:
            if c.target_id != self.device(i):
                continue
            for ch in c.evidence.get("channels", []):
                if "forecast" in ch:
                    out.append(ch["forecast"])
        return out


def run(series: Sequence[Series], overrides: dict | None = None, batch_s: float = HOUR) -> Run:
    """Feed every series through the pure tick, one batch of `batch_s` of data per tick (as
    the service would after each ingest commit); each series is its own device."""
    chans = [ChannelInfo(i + 1, f"DEV-{i:03d}", s.kind, s.spec, None, None, s.step_s)
             for i, s in enumerate(series)]
    setup = build_setup(chans, resolve(chans, overrides or {}))
    state = EngineState.initial(setup)
    ch = np.concatenate([np.full(s.t.size, i) for i, s in enumerate(series)])
    t = np.concatenate([s.t for s in series])
    v = np.concatenate([s.v for s in series])
    order = np.lexsort((t, ch))
    ch, t, v = ch[order], t[order], v[order]
    changes: list[Change] = []
    start, end = float(t.min()), float(t.max())
    edges = np.arange(start - start % batch_s, end + batch_s, batch_s)
    by_time = np.argsort(t, kind="stable")
    pos = np.searchsorted(t[by_time], edges, side="right")
    for k in range(1, edges.size):
        i = np.sort(by_time[pos[k - 1]:pos[k]])  # channel-then-time order inside the batch
        s = Samples(ch[i].astype(np.int64), t[i], v[i], np.zeros(i.size, np.int8))
        state, res = tick(setup, state, s, float(edges[k]))
        changes += res.changes
    return Run(list(series), changes, state, setup.row_in_group)


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[int], Series]  # seed -> series


def _u(seed: int, k: int, lo: float, hi: float) -> float:
    """A parameter drawn from the seed (so every seed is a different slope)."""
    return float(np.random.default_rng([seed, k]).uniform(lo, hi))


def _end(seed: int) -> float:
    return _u(seed, 9, 4.0, 8.0) * HOUR  # data end 4–8 h before failure


FAMILIES: tuple[Family, ...] = (
    Family("GNSS 10 min, 1.5–3 mm, α = 2", lambda s: accelerating(
        s, v0_mm_day=_u(s, 1, 0.2, 2.0), pre_days=10, tert_days=_u(s, 2, 8, 30),
        noise_mm=_u(s, 3, 1.5, 3.0), step_s=600, dropout=_u(s, 4, 0.02, 0.05),
        end_before_s=_end(s))),
    Family("GNSS hourly, 1–2 mm, α = 2", lambda s: accelerating(
        s, v0_mm_day=_u(s, 1, 0.5, 2.0), pre_days=10, tert_days=_u(s, 2, 10, 30),
        noise_mm=_u(s, 3, 1.0, 2.0), step_s=3600, dropout=_u(s, 4, 0.02, 0.05),
        end_before_s=_end(s))),
    Family("crack meter 10 min, 0.1–0.5 mm, α = 2", lambda s: accelerating(
        s, v0_mm_day=_u(s, 1, 0.2, 2.0), pre_days=8, tert_days=_u(s, 2, 3, 30),
        noise_mm=_u(s, 3, 0.1, 0.5), step_s=600, dropout=_u(s, 4, 0.02, 0.05),
        end_before_s=_end(s), kind="crack_meter")),
    Family("crack meter 10 min, α = 1.6–2.4", lambda s: accelerating(
        s, v0_mm_day=_u(s, 1, 0.2, 2.0), pre_days=8, tert_days=_u(s, 2, 5, 30),
        noise_mm=_u(s, 3, 0.1, 0.5), step_s=600, alpha=round(_u(s, 5, 1.6, 2.4), 2),
        end_before_s=_end(s), kind="crack_meter")),
    Family("GNSS 10 min, velocity staircase", lambda s: accelerating(
        s, v0_mm_day=_u(s, 1, 0.5, 2.0), pre_days=10, tert_days=_u(s, 2, 8, 30),
        noise_mm=_u(s, 3, 0.5, 1.5), step_s=600, shape="steps", end_before_s=_end(s))),
)
MINUTE_FAMILY = Family("crack meter 1 min, 0.1 mm, α = 2", lambda s: accelerating(
    s, v0_mm_day=_u(s, 1, 0.5, 2.0), pre_days=4, tert_days=_u(s, 2, 3, 5), noise_mm=0.1,
    step_s=60, end_before_s=_end(s), kind="crack_meter"))


@dataclass(frozen=True)
class Skill:
    family: str
    n: int
    red_before_failure: int
    forecast_at_end: int
    within_10pct: int
    lead_h: list[float]  # red lead times
    err_pct: list[float]  # |forecast − failure| / remaining time at the end, %


def skill(family: Family, runs: Run, series: Sequence[Series]) -> Skill:
    lead, err = [], []
    red = fc_n = ok = 0
    for i, s in enumerate(series):
        t_red = runs.first_at(i, 4)
        if t_red is not None and t_red < s.failure_t:
            red += 1
            lead.append((s.failure_t - t_red) / HOUR)
        fc = runs.forecast(i)
        if np.isfinite(fc[0]) and fc[3] < s.failure_t:
            fc_n += 1
            e = abs(fc[0] - s.failure_t) / (s.failure_t - float(s.t[-1]))
            err.append(100.0 * e)
            ok += e <= 0.10
    return Skill(family.name, len(series), red, fc_n, ok, lead, err)


def families_run(families: Sequence[Family], seeds: Sequence[int]
                 ) -> list[tuple[Family, list[Series], Run]]:
    """One engine run for all the families' series together (one run costs about the same
    for 20 channels as for 200)."""
    series = [f.make(s) for f in families for s in seeds]
    r = run(series)
    out: list[tuple[Family, list[Series], Run]] = []
    for k, f in enumerate(families):
        part = series[k * len(seeds):(k + 1) * len(seeds)]
        out.append((f, part, _Slice(r, k * len(seeds))))
    return out


class _Slice(Run):
    """A view of a Run whose series i is the base run's series offset + i."""

    def __init__(self, base: Run, offset: int) -> None:
        super().__init__(base.series, base.changes, base.state, base.row_of)
        self.offset = offset

    def device(self, i: int) -> str:
        return super().device(self.offset + i)

    def forecast(self, i: int) -> np.ndarray:
        return super().forecast(self.offset + i)


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "–"
    q = np.percentile(xs, [10, 50, 90])
    return f"{q[0]:.3g} / {q[1]:.3g} / {q[2]:.3g}"


def outside_table(seeds: Sequence[int]) -> list[str]:
    """Markdown rows: outside family × sampling, red before failure n/N, median red lead."""
    from alerts.methods.levels import Level
    from tests.outside_series import first_change, live, saito_slope
    from tests.test_outside_disp_trials import accelerating_gnss

    rows = []
    cases: list[tuple[str, float, Callable[[int], tuple[object, float]]]] = [
        ("accelerating_gnss (α = 2, 2 mm)", 600.0, lambda s: accelerating_gnss(s, 600.0)),
        ("accelerating_gnss (α = 2, 2 mm)", 3600.0, lambda s: accelerating_gnss(s, 3600.0)),
    ]
    def saito(step: float) -> Callable[[int], tuple[object, float]]:
        def make(s: int) -> tuple[object, float]:
            sl = saito_slope(s, step, crack_meter=step == 60.0)
            return sl.trace, sl.failure_t
        return make
    for step in (60.0, 600.0, 3600.0):
        name = ("saito_slope crack meter (α 1.5–2.5, 0.1 mm)" if step == 60.0
                else "saito_slope GNSS (α 1.5–2.5, 1.5–3 mm + coloured)")
        cases.append((name, step, saito(step)))
    for name, step, make in cases:
        made = [make(s) for s in seeds]
        kind, spec = ("crack_meter", "opening") if step == 60.0 else ("gnss", "disp_x")
        chans = [ChannelInfo(i + 1, f"GN{i}", kind, spec, f"HP{i}", None, step)
                 for i in range(len(made))]
        ch = live(chans, [tr for tr, _ in made], batch_s=HOUR)  # type: ignore[misc]
        leads = []
        for i, (_, tf) in enumerate(made):
            red = first_change(ch, f"HP{i}", "deformation", Level.RED)
            if red is not None and red < tf:
                leads.append((tf - red) / HOUR)
        med = f"{np.median(leads):.3g}" if leads else "–"
        rows.append(f"| {name} | {step / 60:g} min | {len(leads)}/{len(made)} | {med} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="first seed (e.g. 100 for seeds the test suite never runs)")
    ap.add_argument("--outside", action="store_true",
                    help="the outside trial's families (tests/outside_series.py) instead")
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    t0 = time.perf_counter()
    if args.outside:
        c0 = time.process_time()
        print("| family | sampling | red before failure | median red lead h |")
        print("|---|---|---|---|")
        print("\n".join(outside_table(seeds)))
        print(f"\n(CPU {time.process_time() - c0:.0f} s)")
        return
    rows = [skill(f, r, s) for f, s, r in families_run(FAMILIES, seeds)]
    rows += [skill(f, r, s) for f, s, r in families_run((MINUTE_FAMILY,), seeds)]
    print("| family | n | red before failure | forecast at end | error ≤ 10 % | red lead h "
          "(p10 / p50 / p90) | forecast error % (p10 / p50 / p90) |")
    print("|---|---|---|---|---|---|---|")
    for k in rows:
        print(f"| {k.family} | {k.n} | {k.red_before_failure} | {k.forecast_at_end} | "
              f"{k.within_10pct} | {_fmt(k.lead_h)} | {_fmt(k.err_pct)} |")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
