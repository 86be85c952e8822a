"""The learning-rate finder (Smith, "Cyclical Learning Rates for Training Neural
Networks", 2017): train a fresh network for 100 batches while the rate grows
exponentially, watch the loss, and suggest the rate where it falls fastest.

Engine-neutral: it asks the model for `train_batch_at(images, labels, rate)` and nothing
else. Building the fresh copy is the caller's; so is drawing the curve.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.training import BatchProgress, OnBatch, StopFlag, epoch_permutation

BATCHES = 100
START_RATE, END_RATE = 1e-6, 1.0        # the config's whole range, (0, 1]
# Weight of the past in the smoothed loss. One batch's loss is noisy; with 100 batches a
# heavier average (0.98, as fastai uses over longer sweeps) would lag by a decade.
SMOOTHING = 0.9
# The sweep stops once the smoothed loss passes this multiple of its lowest value: the
# network has blown up, and larger rates only blow it up faster.
DIVERGED_FACTOR = 4.0
# Points at the start that the steepest-descent rule skips: the smoothed loss is an
# average of only a few batches there, and its noise reads as slope.
SKIPPED_POINTS = 10


@dataclass
class LearningRateSweep:
    """What a sweep saw: rate, loss and smoothed loss per batch, and the suggestion."""

    rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested: float | None         # None when no rate lowered the loss
    minimum_rate: float | None      # where the smoothed loss was lowest
    rule: str                       # how `suggested` was chosen, in words
    batches_planned: int

    @property
    def complete(self) -> bool:
        """Whether the sweep ran to its last rate or stopped at a blow-up (not a Stop)."""
        return len(self.rates) == self.batches_planned or self.diverged

    @property
    def diverged(self) -> bool:
        last = self.smoothed[-1] if self.smoothed else math.nan
        return bool(self.smoothed) and (not math.isfinite(last) or last > DIVERGED_FACTOR
                                        * min(self.smoothed))


def sweep_rates(batches: int = BATCHES, start: float = START_RATE,
                end: float = END_RATE) -> np.ndarray:
    """`batches` rates from `start` to `end`, each a constant factor above the last."""
    return np.geomspace(start, end, batches)


def smoothed_losses(losses: list[float], smoothing: float = SMOOTHING) -> list[float]:
    """Exponential moving average with bias correction, so the first points are the
    average of the losses so far rather than pulled towards zero."""
    average, result = 0.0, []
    for index, loss in enumerate(losses, start=1):
        average = smoothing * average + (1 - smoothing) * loss
        result.append(average / (1 - smoothing ** index))
    return result


def suggest_rate(rates: list[float], smoothed: list[float]) -> tuple[float | None,
                                                                    float | None, str]:
    """(suggested rate, rate at the lowest smoothed loss, the rule used).

    The suggestion is where the smoothed loss falls fastest against log(rate), looking
    only before its lowest point: there the network learns quickest while still far from
    blowing up. A curve too short before its minimum to have a slope falls back to the
    minimum's rate / 10 (at least the first rate). None when the loss never went below
    where it started.
    """
    values = np.asarray(smoothed, dtype=float)
    finite = np.isfinite(values)
    if len(values) < 2 or not finite.any():
        return None, None, "too few batches"
    lowest = int(np.nanargmin(np.where(finite, values, np.nan)))
    minimum_rate = float(rates[lowest])
    if values[lowest] >= values[0]:
        return None, minimum_rate, "the loss never fell"
    start = min(SKIPPED_POINTS, lowest)
    if lowest - start < 2:
        # Never below the first rate: nothing was measured there.
        return max(minimum_rate / 10, float(rates[0])), minimum_rate, "lowest loss / 10"
    slopes = np.gradient(values[start:lowest + 1], np.log10(rates[start:lowest + 1]))
    steepest = start + int(np.argmin(slopes))
    return float(rates[steepest]), minimum_rate, "steepest descent"


def find_learning_rate(model: Any, images: np.ndarray, labels: np.ndarray, *,
                       batches: int = BATCHES, start: float = START_RATE,
                       end: float = END_RATE, on_batch: OnBatch | None = None,
                       stop: StopFlag | None = None) -> LearningRateSweep:
    """Sweep `model` (a fresh Classifier: the sweep ruins its weights) over `batches`
    batches of its config's batch size, drawn in its seed's first-epoch order (again
    from the start if the images run out)."""
    config = model.config
    rates = sweep_rates(batches, start, end)
    order = epoch_permutation(config.seed, 0, len(labels))
    size = config.batch_size
    started = time.perf_counter()
    losses: list[float] = []
    smoothed: list[float] = []
    for index, rate in enumerate(rates):
        if stop is not None and stop.is_set():
            break
        rows = np.take(order, np.arange(index * size, (index + 1) * size), mode="wrap")
        loss = float(model.train_batch_at(images[rows], labels[rows], float(rate)))
        losses.append(loss)
        smoothed = smoothed_losses(losses)
        if on_batch is not None:
            on_batch(BatchProgress(epoch=1, batch=index + 1, batches_per_epoch=batches,
                                   loss=loss, seconds_in_epoch=time.perf_counter() - started))
        if not math.isfinite(smoothed[-1]) or smoothed[-1] > DIVERGED_FACTOR * min(smoothed):
            break
    kept_rates = [float(rate) for rate in rates[:len(losses)]]
    suggested, minimum_rate, rule = suggest_rate(kept_rates, smoothed)
    return LearningRateSweep(rates=kept_rates, losses=losses, smoothed=smoothed,
                             suggested=suggested, minimum_rate=minimum_rate, rule=rule,
                             batches_planned=batches)
