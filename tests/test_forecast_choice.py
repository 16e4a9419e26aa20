"""The engine's choice of failure forecast (alerts/methods/forecast_choice.py): the Voight
fit replaces the inverse-velocity line only where α ≠ 2 beyond doubt, 20 seeds per case;
never on α = 2 GNSS-like noise, steady creep or the real Lamosano series; and the engine
fits it once per window of bins (alerts/engine/displacement.py)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import numpy as np
import pytest

import alerts.engine.displacement as disp
from alerts.engine.rules import ChannelInfo, resolve
from alerts.engine.tick import build_setup
from alerts.methods.forecast_choice import voight_forecast
from alerts.methods.inverse_velocity import Forecast, forecast_failure_time
from alerts.methods.voight import VoightFit
from bench.warning_skill import FAMILIES, run
from simulators.displacement_scenarios import DAY, HOUR, tertiary_week
from tests.fixtures.shared import shared_file

SEEDS = range(20)


# α: (chosen, within 10 %) at least; measured 20/20, 18/17, 14/11, 14/6 of 20, while the
# α = 2 line is within 10 % for none of them (as α grows the displacement flattens near
# failure and the data say less about α).
MIN = {1.67: (18, 18), 1.83: (16, 15), 2.17: (12, 9), 2.33: (12, 4)}


@pytest.mark.parametrize("alpha", sorted(MIN))
def test_voight_replaces_the_line_where_alpha_is_not_two(alpha: float) -> None:
    chosen = better = within = line_within = 0
    for s in SEEDS:
        t, x, tf = tertiary_week(s, alpha, 0.2, salt=1000)
        now = float(t[-1])
        rem = tf - now
        fv, _ = voight_forecast(t, x, now, 0.95)
        iv = forecast_failure_time(t, x, now)
        line_within += iv.issued and abs(iv.t_failure - tf) <= 0.1 * rem
        if fv is None:
            continue
        chosen += 1
        within += abs(fv.t_failure - tf) <= 0.1 * rem
        better += not iv.issued or abs(fv.t_failure - tf) < abs(iv.t_failure - tf)
    assert chosen >= MIN[alpha][0], chosen
    assert better >= chosen - 1, (better, chosen)  # measured: every one chosen
    assert within >= MIN[alpha][1], within
    assert line_within <= 2, line_within


def test_the_line_stays_on_alpha_two_and_steady_creep() -> None:
    for s in SEEDS:
        t, x, _ = tertiary_week(s, 2.0, float(np.random.default_rng(s).uniform(1.0, 3.0)),
                                salt=1000)
        assert voight_forecast(t, x, float(t[-1]), 0.95)[0] is None, s
        rng = np.random.default_rng([s, 1])
        t = np.arange(0, 168 * HOUR, HOUR)
        x = rng.uniform(0.2, 2.0) * t / DAY + rng.normal(0, rng.uniform(0.1, 2.0), t.size)
        assert voight_forecast(t, x, float(t[-1]), 0.95)[0] is None, s


def test_no_voight_forecast_on_the_lamosano_series() -> None:
    """The real Lamosano p5 series (Nava et al. 2023): rain-driven creep with steps, no
    failure; every year-long window of it, as the engine would fit it."""
    with shared_file("data/lamosano_p5_displacement_11day.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    t = np.array([datetime.fromisoformat(r["date"]).replace(tzinfo=UTC).timestamp()
                  for r in rows])
    x = -np.array([float(r["p5"]) for r in rows])  # movement positive
    for end in range(20, t.size):
        lo = max(0, end - 33)
        assert voight_forecast(t[lo:end + 1], x[lo:end + 1], float(t[end]), 0.95)[0] is None


def test_the_engine_fits_voight_once_per_window_of_bins(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    calls: list[float] = []
    real = disp.voight_forecast

    def counting(t: np.ndarray, x: np.ndarray, now: float, conf: float
                 ) -> tuple[Forecast | None, VoightFit]:
        calls.append(now)
        return real(t, x, now, conf)

    monkeypatch.setattr(disp, "voight_forecast", counting)
    series = FAMILIES[3].make(0)  # crack meter, α ≠ 2: the Voight forecast is shown
    r = run([series])
    st = r.state.disp
    assert st is not None and np.isfinite(st.fc[0, 0])
    assert st.fc[0, 0] == st.voight_fc[0, 0]
    fitted = len(calls)
    assert fitted > 0 and len(set(calls)) == fitted  # one fit per closed hour
    # The same bins judged again, the shown forecast due for refresh: the kept fit is
    # shown again, not refitted.
    chans = [ChannelInfo(1, "DEV-000", series.kind, series.spec, None, None, series.step_s)]
    p = build_setup(chans, resolve(chans, {})).p
    shown = st.fc[0].copy()
    st.fc[0, 3] = np.nan
    one = np.zeros(1, np.int64)
    disp._forecast(st, p, one, one, np.array([shown[3] + 60.0]), np.ones(1, bool))
    assert len(calls) == fitted
    np.testing.assert_array_equal(st.fc[0, :3], shown[:3])
