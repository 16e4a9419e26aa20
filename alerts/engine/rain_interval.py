"""The reporting interval a rain gauge actually keeps, for the data-quality screen.

A gauge's registered interval is what it was installed with; in heavy rain many stations
report faster (5-minute reports from an hourly station), and registrations are sometimes
wrong. Two screen rules are durations expressed through that interval: how far back a rain
increment reaches (its plausibility envelope; at most one interval, so a spike after a data
gap is not spread over the gap) and how many identical increments make a repeating gauge
(`stuck_count`, two hours of samples by default). Both use the interval the gauge keeps:
the median spacing of its last three reports (robust to one gap), else the registered one.

Outside trial (issue 7, second tester): an hourly station sending 5-minute reports was
"repeating" after three equal 5-minute increments (15 minutes, not two hours) and a red was
held at orange; a gauge registered at 10 minutes reporting hourly had its honest hourly
totals judged against the 10-minute envelope (implausible above 50 mm) and lost.
"""

from __future__ import annotations

import numpy as np

from alerts.engine.rules import RAIN_STUCK_MIN
from alerts.methods.quality import nanmedian_rows
from alerts.methods.ragged import FloatArray, IntArray

SPACINGS = 3  # reports whose spacing is the observed interval


def observed(times: FloatArray, registered_s: FloatArray) -> FloatArray:
    """Median spacing of each row's times (rows, SPACINGS + 1; oldest first, NaN absent),
    else the registered interval."""
    with np.errstate(invalid="ignore"):
        med = nanmedian_rows(np.diff(times, axis=1))
        return np.asarray(np.where(med > 0, med, registered_s))


def observed_before(ch: IntArray, t: FloatArray, registered_s: FloatArray) -> FloatArray:
    """For samples sorted by channel then time: the observed interval each one is screened
    with (its channel's SPACINGS reports before it), as `observed` gives in the tick."""
    n = t.size
    cols = []
    for j in range(SPACINGS + 1):  # the times of samples i-1-j, NaN across channels
        k = np.arange(n) - 1 - j
        same = (k >= 0) & (ch[np.maximum(k, 0)] == ch)
        cols.append(np.where(same, t[np.maximum(k, 0)], np.nan))
    return observed(np.stack(cols[::-1], axis=1), registered_s)


def stuck_count(count: IntArray, registered_s: FloatArray, observed_s: FloatArray
                ) -> IntArray:
    """`stuck_count` (samples at the registered interval) in samples at the observed one,
    at least RAIN_STUCK_MIN (or the setting, if lower); 0 stays off."""
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.ceil(count * registered_s / observed_s - 1e-9)
    floor = np.minimum(count, RAIN_STUCK_MIN)
    return np.asarray(np.where(count > 0, np.maximum(floor, scaled), count), np.int64)
