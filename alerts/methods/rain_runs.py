"""What a run of identical non-zero rain increments implies by itself, for the screen's hold
of a gauge stuck at a large increment (issue 7).

A gauge stuck at one value is held at `suspicious_max_level` once the run is `stuck_count`
samples long (two hours by default). A stuck *large* increment (5–25 mm per 10 minutes)
reaches orange or red long before that. So a run is suspicious as soon as it is at least
`RUN_MIN` samples long and the rain it implies on its own (its value times the number of its
samples each accumulation window holds) would lift the level above the hold's cap: a run long
enough to raise a level beyond yellow must be corroborated first (the run ending, a
neighbouring gauge, a regional warning). Genuine heavy rain is not held: its tipping-bucket
increments of several millimetres vary from report to report, and a short repeat of two or
three equal reports implies too little rain alone to pass the cap (docs/methods.md,
"Data quality"; tests/test_quality_gaps_open.py checks both directions over seeds).
"""

from __future__ import annotations

import numpy as np

from alerts.methods.levels import LEVEL_DTYPE, LevelArray, classify
from alerts.methods.ragged import FloatArray

# Three equal reports in a row: two equal ones are common in genuine rain (a tipping bucket
# quantises to 0.1-0.5 mm), and the stuck-run floor of a fast-reporting gauge is three too
# (alerts/engine/rules.py RAIN_STUCK_MIN). Ours (engineering judgement).
RUN_MIN = 3


def run_implied_level(run_val: FloatArray, run_len: FloatArray, interval_s: FloatArray,
                      table_mm: FloatArray, windows_h: tuple[float, ...]) -> LevelArray:
    """Level (0..4) per row that the run alone reaches: `run_val` mm repeated `run_len` times
    at `interval_s`, each window (t − w, t] holding min(run_len, ⌈w / interval⌉) of its
    samples, against `table_mm` (rows, windows, 4; NaN: no threshold)."""
    w_s = np.asarray(windows_h, dtype=np.float64) * 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_window = np.ceil(w_s[None, :] / np.asarray(interval_s)[:, None] - 1e-9)
    n = np.minimum(np.asarray(run_len)[:, None], np.where(per_window > 0, per_window, 0))
    acc = np.asarray(run_val)[:, None] * n
    acc = np.where(np.isfinite(acc), acc, 0.0)
    return np.asarray(classify(acc, table_mm).max(axis=1), LEVEL_DTYPE)
