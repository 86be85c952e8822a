"""Wall-clock measurements quoted as medians, because the machines here are shared."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def median_seconds(call: Callable[[], object], *, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of `call()` over `repeats` runs, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_latency(model: object, image: np.ndarray, *, repeats: int = 30) -> float:
    """Median seconds for `model.predict_proba` on one image, as the Draw page calls it."""
    batch = np.asarray(image)[:1]
    return median_seconds(lambda: model.predict_proba(batch), repeats=repeats)
