"""How `python -m engine bench` prints its results for people: one table, targets beside
the figures. The measuring is in `engine.bench`."""

from __future__ import annotations

import math
from typing import Any

from engine.bench_stats import STATS_PARTS, report_lines

# Keys of the results that are not a training run's row.
NOT_RUNS = ("machine", "data", "sweep", "app", "inside", *STATS_PARTS)


def format_table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [f"machine: {machine.get('cpu', 'a CPU')}, {machine['cpus']} cpus, "
             f"numpy {machine['numpy']}, float32 matmul "
             f"peak {machine['matmul_peak_gflops_one_thread']} GFLOP/s on one thread, "
             f"{machine['matmul_peak_gflops_all_threads']} on all (OpenBLAS's threads); the "
             "NumPy engine runs one-thread BLAS in each of its threads"]
    data = results.get("data")
    if data:
        lines.append(_line("MNIST load from cache", data, lambda d:
                           f"{d['load_seconds_median']:.3f} s, checked before; "
                           f"{d.get('load_checked_seconds_median', math.nan):.3f} s with "
                           f"the full content check (target < 0.5 s)"))
    header = (f"{'run':<18}{'threads':>8}{'s/epoch':>9}{'samples/s':>11}{'GFLOP/s':>9}"
              f"{'% peak':>8}{'test acc':>10}{'1-image ms':>12}{'params':>10}{'peak MB':>9}")
    rows = [(name, result) for name, result in results.items()
            if isinstance(result, dict) and name not in NOT_RUNS]
    if rows:
        lines += ["", header, "-" * len(header)]
    for name, row in rows:
        if "error" in row:
            lines.append(f"{name:<18}failed: {row['error']}")
            continue
        lines.append(f"{name:<18}{row.get('threads', ''):>8}"
                     f"{row['seconds_per_epoch_median']:>9.2f}{row['samples_per_second']:>11,}"
                     f"{row.get('achieved_gflops', float('nan')):>9.1f}"
                     f"{row.get('percent_of_one_core_peak', float('nan')):>8.0f}"
                     f"{row['test_accuracy']:>10.2%}{row['predict_one_ms_median']:>12.3f}"
                     f"{row['parameters']:>10,}{row['peak_memory_mb']:>9,}")
    for name, row in rows:
        if "target_test_accuracy" in row and "error" not in row:
            verdict = "ok" if row["test_accuracy"] >= row["target_test_accuracy"] else "MISSED"
            seconds = row.get("target_train_seconds")
            timing = (f", trained in {row['train_seconds']:.0f} s (target < {seconds:.0f} s)"
                      if seconds else f", trained in {row['train_seconds']:.0f} s")
            lines.append(f"{name}: {row['test_accuracy']:.2%} test (target >= "
                         f"{row['target_test_accuracy']:.1%}: {verdict}){timing}")
    for key, label in (("numpy_to_keras_epoch_ratio", "NumPy / Keras engine"),
                       ("numpy_to_plain_keras_epoch_ratio", "NumPy / plain Keras fit"),
                       ("keras_engine_to_plain_keras_ratio", "Keras engine / plain Keras fit"),
                       ("numpy_to_keras_cnn_epoch_ratio", "NumPy CNN / Keras CNN")):
        if key in results:
            lines.append(f"epoch time, {label}: {results[key]:.2f}")
    sweep = results.get("sweep")
    if sweep:
        lines.append(_line("sweep", sweep, _sweep_line))
    if "inside" in results:
        from engine.bench_inside import format_inside
        lines += ["", *format_inside(results["inside"])]
    lines += report_lines(results)
    app = results.get("app")
    if app:
        lines.append("")
        lines += [f"{key}: {value}" for key, value in app.items()]
    return "\n".join(lines)


def _line(label: str, part: dict[str, Any], show: Any) -> str:
    return f"{label}: " + (f"failed: {part['error']}" if "error" in part else show(part))


def _sweep_line(sweep: dict[str, Any]) -> str:
    in_time = "ok" if sweep["seconds"] <= sweep["target_seconds"] else "MISSED"
    in_memory = "ok" if sweep["peak_memory_mb"] <= sweep["target_memory_mb"] else "MISSED"
    return (f"{sweep['trials']} trials ({sweep['complete']} complete, {sweep['pruned']} "
            f"pruned), {sweep['epochs']} epochs on {sweep['train_size']:,} images: "
            f"{sweep['seconds']:.0f} s (target <= {sweep['target_seconds']:.0f} s: {in_time}), "
            f"peak memory {sweep['peak_memory_mb']} MB, {sweep['memory_before_sweep_mb']} MB "
            f"before the first trial (target < {sweep['target_memory_mb']} MB: {in_memory}); "
            f"best validation accuracy {sweep['best_value']:.2%}; load average "
            f"{sweep['load_average_before_after'][0]} -> {sweep['load_average_before_after'][1]}")
