"""Judging a replay in data time: the engine stepped over the replayed span in batches.

`geowarn replay --engine` hands the stored recording to a data-clock engine. Stepping it once
over everything (the old way, `--engine-step all`) loads the whole record in one transaction
and shows nothing until the end; `judge_in_batches` steps it `step` of data time at a time
(`engine.step(now=boundary, periodic=True)`), each step one committed transaction: memory
bounded by a batch, progress in data time, and an interrupted replay keeps what was judged.

The decisions do not depend on the batch: the engine judges every sample at its own data time
in rounds (alerts/engine/tick.py), stamps every change with the data time that caused it, and
auto-resolves in data-time order (alerts/engine/service.py `_apply`), so a batch of a week
gives the same alert events as stepping at every reading's time
(tests/test_replay_batched.py compares them on a stream with a storm, a rising river, a
creeping slope and a device that falls silent). What batching does not change is the cost of
judging: one round per sample of the busiest channel, whatever the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `geowarn replay` without --engine does not load the engine
    from alerts.engine.service import Engine
    from alerts.lifecycle.writes import AlertEvent

DEFAULT_STEP = timedelta(days=7)


@dataclass
class Judged:
    events: list[AlertEvent]
    steps: int


def boundaries(first: datetime, last: datetime, step: timedelta | None) -> Iterator[datetime]:
    """Data-time step ends: `first` itself, then every `step` after it, then `last`; None:
    one step at `last`. The step at `first` starts the engine watching every device at the
    replay's first reading, as a live engine running when the recording began would: a
    device that never reports is silent from then, not from the end of the first batch."""
    if step is not None and step <= timedelta(0):
        raise ValueError("the engine step must be positive")
    if step is None or last <= first:
        yield last
        return
    n = math.ceil((last - first) / step)
    for k in range(n):
        yield first + k * step
    yield last


def judge_in_batches(engine: Engine, first: datetime, last: datetime,
                     step: timedelta | None = DEFAULT_STEP,
                     on_step: Callable[[datetime, list[AlertEvent]], None] | None = None
                     ) -> Judged:
    """Step `engine` (a data-clock engine) through [first, last] in `step`s of data time; each
    step judges the readings up to its end and runs the periodic work (silence, dwell,
    auto-resolve) at that time."""
    events: list[AlertEvent] = []
    steps = 0
    for end in boundaries(first, last, step):
        got = engine.step(now=end.timestamp(), periodic=True)
        events += got
        steps += 1
        if on_step is not None:
            on_step(end, got)
    return Judged(events, steps)
