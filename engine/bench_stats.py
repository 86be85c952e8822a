"""Bench parts for issue 13's training statistics and learning-rate finder (run by
engine.bench, each in its own process):

- `stats-cost`: what recording per-layer statistics costs an epoch of the default MLP, per
  engine (target: at most 3%): epochs of a network recording them alternate with epochs
  of one that does not, in one process, and each pair of neighbouring epochs gives a
  ratio. The median of those ratios is the cost: on a shared machine whole epochs vary
  by tens of %, but two neighbours see nearly the same load, and the median passes over
  the pairs a burst of other work split. The epoch's close (histograms) is added. For
  NumPy the batch hook is also timed where it runs.
- `lr-finder`: seconds from the click to the suggestion for the default MLP, per engine:
  building the fresh network and its 100-batch sweep (target: at most 5 s).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from engine.config import preset

STATS_PARTS = ("stats-cost", "lr-finder")
STATS_COST_TARGET = 0.03      # of an epoch
PAIRS_PER_EPOCH_ASKED = 4     # `bench --epochs 3` compares 12 pairs of epochs
LR_FINDER_TARGET_SECONDS = 5.0
ENGINES = ("numpy", "keras")


def run_part(part: str, epochs: int, quick: bool) -> dict[str, Any]:
    if part == "stats-cost":
        return {engine: _recording_cost(engine, epochs, quick) for engine in ENGINES}
    if part == "lr-finder":
        return {engine: _finder_seconds(engine) for engine in ENGINES}
    raise ValueError(f"unknown bench part {part!r}")


def _default_data(quick: bool) -> tuple[Any, Any]:
    from engine.data import load_mnist

    data = load_mnist()
    count = 12_000 if quick else len(data.train_labels)
    return data.train_images[:count], data.train_labels[:count]


def _recording_cost(engine: str, epochs: int, quick: bool) -> dict[str, Any]:
    from engine import engine_class

    images, labels = _default_data(quick)
    pairs = max(PAIRS_PER_EPOCH_ASKED * epochs, 4)
    config = preset("default").replace(validation_fraction=0.0, epochs=pairs + 1)
    network_class = engine_class(engine)
    networks = {}
    for recording in (False, True):
        network_class.record_training_stats = recording
        try:
            networks[recording] = network_class(config)
        finally:
            del network_class.record_training_stats    # back to Classifier's default
    closes = _timed_calls(networks[True].stats, "close_epoch")
    hooks = _timed_calls(networks[True]._stats_probe, "after_backward") \
        if engine == "numpy" else []
    epoch_seconds: dict[bool, list[float]] = {False: [], True: []}
    # Each turn trains one epoch of each, in alternating order; the first turn is a
    # warm-up (Keras traces its step there).
    for turn in range(pairs + 1):
        for recording in ((False, True) if turn % 2 else (True, False)):
            network = networks[recording]
            network.partial_fit(images, labels)
            if turn:
                epoch_seconds[recording].append(network.history.epochs[-1].seconds)
        if not turn:
            del closes[:], hooks[:]
    ratios = [with_ / without for with_, without in
              zip(epoch_seconds[True], epoch_seconds[False])]
    pair_ratio = statistics.median(ratios)
    close_share = sum(closes) / sum(epoch_seconds[True])
    quartiles = np.quantile(ratios, [0.25, 0.75])
    result = {"pair_ratio": round(pair_ratio, 4),
              "pair_ratio_quartiles": [round(float(value), 4) for value in quartiles],
              "epoch_close_share": round(close_share, 4),
              "cost_share": round(pair_ratio - 1 + close_share, 4),
              "target_share": STATS_COST_TARGET, "images": len(labels), "pairs": pairs,
              "epoch_seconds_without": [round(value, 3) for value in epoch_seconds[False]],
              "epoch_seconds_with": [round(value, 3) for value in epoch_seconds[True]]}
    if hooks:
        result["hook_share"] = round(sum(hooks) / sum(epoch_seconds[True]), 4)
    return result


def _timed_calls(owner: Any, name: str) -> list[float]:
    """Seconds of each call of `owner.name` from now on, timed where it runs."""
    call, seconds = getattr(owner, name), []

    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            seconds.append(time.perf_counter() - started)

    setattr(owner, name, timed)
    return seconds


def _finder_seconds(engine: str) -> dict[str, Any]:
    from engine import build_model
    from engine.lr_finder import find_learning_rate
    from engine.training import split_training_data

    images, labels = _default_data(quick=False)
    config = preset("default")
    images, labels, _, _ = split_training_data(images, labels, config)
    times, suggestions = [], []
    # The first includes importing and starting the engine (TensorFlow for Keras), as a
    # visitor's first click would; the others what any later click costs.
    for _ in range(3):
        started = time.perf_counter()
        sweep = find_learning_rate(build_model(engine, config), images, labels)
        times.append(time.perf_counter() - started)
        suggestions.append(sweep.suggested)
    return {"first_seconds": round(times[0], 3),
            "later_seconds_median": round(statistics.median(times[1:]), 3),
            "batches": len(sweep.losses), "suggested": suggestions[-1],
            "target_seconds": LR_FINDER_TARGET_SECONDS}


def report_lines(results: dict[str, Any]) -> list[str]:
    """The parts' figures for people, targets beside them (engine.bench_report)."""
    lines = [f"{part}: failed: {results[part]['error']}" for part in STATS_PARTS
             if "error" in results.get(part, {})]
    for engine, row in (results.get("stats-cost") or {}).items():
        if not isinstance(row, dict):
            continue
        verdict = "ok" if row["cost_share"] <= row["target_share"] else "MISSED"
        hook = (f"; the batch hook timed in the loop: {row['hook_share']:.2%}"
                if "hook_share" in row else "")
        low, high = row["pair_ratio_quartiles"]
        lines.append(f"training statistics, {engine}: {row['cost_share']:.2%} of an epoch "
                     f"(target <= {row['target_share']:.0%}: {verdict}): epochs "
                     f"{row['pair_ratio']:.3f}x (median of {row['pairs']} neighbouring "
                     f"pairs; quartiles {low:.3f}-{high:.3f}), epoch close "
                     f"{row['epoch_close_share']:.2%}{hook}")
    for engine, row in (results.get("lr-finder") or {}).items():
        if not isinstance(row, dict):
            continue
        worst = max(row["first_seconds"], row["later_seconds_median"])
        verdict = "ok" if worst <= row["target_seconds"] else "MISSED"
        lines.append(f"learning-rate finder, {engine}: {row['first_seconds']:.2f} s first, "
                     f"{row['later_seconds_median']:.2f} s later (target <= "
                     f"{row['target_seconds']:.0f} s: {verdict}), suggests "
                     f"{row['suggested']:.2g}")
    return lines
