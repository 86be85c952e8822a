"""Bench parts for issue 13's training statistics and learning-rate finder (run by
engine.bench, each in its own process):

- `stats-cost`: what recording per-layer statistics costs an epoch of the default MLP, per
  engine: epochs of a network recording them alternate with epochs of one that does not,
  in one process; the ratio of the fastest epochs is the headline (target: at most
  1.03), medians of wall and CPU seconds beside it. For NumPy the recorder's own calls
  are also timed where they run, a share the machine's noise blurs less.
- `lr-finder`: seconds from the click to the suggestion for the default MLP, per engine:
  building the fresh network and its 100-batch sweep (target: at most 5 s).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from engine.config import preset

STATS_PARTS = ("stats-cost", "lr-finder")
STATS_COST_TARGET = 1.03
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
    config = preset("default").replace(validation_fraction=0.0, epochs=2 * epochs + 1)
    network_class = engine_class(engine)
    networks = {}
    for recording in (False, True):
        network_class.record_training_stats = recording
        try:
            networks[recording] = network_class(config)
        finally:
            del network_class.record_training_stats    # back to Classifier's default
    recorder_seconds = _time_recorder_calls(networks[True]) if engine == "numpy" else None
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    # Epochs alternate, each pair in turn order, so load from other work falls on both
    # alike; the first of each is dropped (Keras traces its step there).
    for turn in range(2 * epochs + 1):
        for recording in ((False, True) if turn % 2 else (True, False)):
            started = time.process_time()
            networks[recording].partial_fit(images, labels)
            cpu[recording].append(time.process_time() - started)
            wall[recording].append(networks[recording].history.epochs[-1].seconds)
    result = {"epoch_seconds_without": [round(value, 3) for value in wall[False][1:]],
              "epoch_seconds_with": [round(value, 3) for value in wall[True][1:]],
              "target_ratio": STATS_COST_TARGET, "images": len(labels)}
    # The fastest epochs are the ones other work disturbed least; CPU seconds count
    # what the process itself did.
    for name, series, pick in (("ratio_of_fastest", wall, min),
                               ("ratio_of_medians", wall, statistics.median),
                               ("cpu_ratio_of_medians", cpu, statistics.median)):
        result[name] = round(pick(series[True][1:]) / pick(series[False][1:]), 4)
    if recorder_seconds is not None:
        epoch_seconds = wall[True][1:]
        result["recorder_share_of_epoch"] = round(
            statistics.median(recorder_seconds[1:]) / statistics.median(epoch_seconds), 4)
    return result


def _time_recorder_calls(network: Any) -> list[float]:
    """Seconds the NumPy recorder's calls take in each epoch of `network` (its batch
    hook and its epoch close), timed where they run, inside the real batch loop."""
    probe, recorder = network._stats_probe, network.stats
    per_epoch: list[float] = []
    totals = [0.0]

    def timed(call: Any, closes: bool) -> Any:
        def run(*args: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args)
            finally:
                totals[0] += time.perf_counter() - started
                if closes:
                    per_epoch.append(totals[0])
                    totals[0] = 0.0
        return run

    probe.after_backward = timed(probe.after_backward, False)
    recorder.close_epoch = timed(recorder.close_epoch, True)
    return per_epoch


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
        ratio = row["ratio_of_fastest"]
        verdict = "ok" if ratio <= row["target_ratio"] else "MISSED"
        alone = (f"; its calls timed in the loop: {row['recorder_share_of_epoch']:.2%} of "
                 "an epoch" if "recorder_share_of_epoch" in row else "")
        lines.append(f"training statistics, {engine}: epoch with / without, fastest "
                     f"{ratio:.3f} (target <= {row['target_ratio']}: {verdict}), medians "
                     f"{row['ratio_of_medians']:.3f}, CPU seconds "
                     f"{row['cpu_ratio_of_medians']:.3f}{alone}")
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
