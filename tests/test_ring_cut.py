"""Ring.cut (alerts/engine/ring.py): a row cut back to before a time reads, through `last`
and after new appends, exactly as a ring that never held the samples cut."""

from __future__ import annotations

import numpy as np

from alerts.engine.ring import Ring


def _fill(ring: Ring, row: int, t: np.ndarray) -> None:
    for x in t:
        ring.append(np.array([row]), np.array([x]), np.array([x * 10.0]),
                    np.array([int(x) % 3], np.int8))


def test_cut_equals_a_ring_that_never_held_the_cut_samples() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(2, 9))
        n_held = int(rng.integers(1, 3 * k))
        t = np.cumsum(rng.uniform(1.0, 5.0, n_held))
        since = float(rng.uniform(t[0] - 1.0, t[-1] + 1.0))
        more = t[-1] + np.cumsum(rng.uniform(1.0, 5.0, int(rng.integers(0, k + 2))))
        cut, ref = Ring.empty(2, k), Ring.empty(2, k)
        _fill(cut, 1, t)
        ct, cv, _ = cut.cut(1, since)
        held = t[-min(n_held, k):]
        assert np.array_equal(ct, held[held >= since]) and np.array_equal(cv, ct * 10.0)
        _fill(ref, 1, t[t < since])
        _fill(cut, 1, more)
        _fill(ref, 1, more)
        for n in range(1, k + 1):
            got, want = cut.last(np.array([1]), n), ref.last(np.array([1]), n)
            # the reference may still hold samples older than the cut one's oldest (it never
            # had to give room to the cut ones): those the cut ring reads as padding
            both = np.isfinite(got[0])
            assert np.array_equal(got[0][both], want[0][both])
            assert np.array_equal(got[1][both], want[1][both])
            assert np.array_equal(got[2][both], want[2][both])
            assert np.all(np.diff((~both[0]).astype(int)) <= 0)  # padding on the left only
        # absolute indices: the cut ring counts the samples pushed out before the cut
        assert cut.total[1] - ref.total[1] == np.sum(t[:n_held - held.size] >= since)
