"""`python -m engine bench`: speed and accuracy of both engines measured in one run.

Each part runs in its own subprocess so peak memory and import costs are its own, and
the engines are compared by ratios measured in the same run, quoted as medians: the
machines here are shared and noisy. Nothing here is a test; targets are printed beside
the figures so a reader sees at once what passed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.bench_report import format_table
from engine.bench_stats import STATS_PARTS
from engine.bench_stats import run_part as run_stats_part

ROOT = Path(__file__).resolve().parent.parent
# Speed parts time a few epochs of the default MLP on all 60,000 images with no
# validation pass. Accuracy parts train a preset exactly as a user would (its own epochs
# and validation split) and score it on MNIST's test set.
SPEED_PARTS = ("numpy", "numpy-one-thread", "keras", "keras-plain")
# The NumPy engine's step on one thread (DIGIT_LAB_THREADS=1), whatever the machine has:
# its GFLOP/s against one core's matmul peak says how lean the step itself is.
ONE_THREAD_PARTS = {"numpy-one-thread": "numpy"}
# The cnn preset's network on both engines, without augmentation (which costs the same
# in both and would blur the comparison): `cnn-speed` runs the pair.
CNN_SPEED_PARTS = {"numpy-cnn-speed": "numpy", "keras-cnn-speed": "keras"}
ACCURACY_PARTS = {   # part: (engine, preset, target test accuracy, target seconds or None)
    "numpy-default": ("numpy", "default", 0.980, None),
    "keras-default": ("keras", "default", 0.980, None),
    "cnn": ("keras", "cnn", 0.993, 300.0),
    "fast-cnn": ("keras", "fast-cnn", 0.993, 90.0),
    "numpy-cnn": ("numpy", "cnn", 0.992, None),
    "strong-mlp": ("numpy", "strong-mlp", 0.986, None),
    "strong-cnn": ("keras", "strong-cnn", 0.995, None),
}
# What a plain `bench` runs (about 10 minutes here); the strong presets take longer and
# run with --only.
DEFAULT_PARTS = ("data", "numpy", "numpy-one-thread", "keras", "keras-plain", "numpy-default",
                 "keras-default", "cnn", "sweep", "app")
PARTS = ("data", *SPEED_PARTS, "cnn-speed", *CNN_SPEED_PARTS, *ACCURACY_PARTS, "sweep", "app")
# The Inside page's views on the shipped MLP (engine/bench_inside.py); run with --only.
PARTS += ("inside",)
# Issue 13: what recording training statistics costs, and the learning-rate finder's time.
DEFAULT_PARTS = (*DEFAULT_PARTS, *STATS_PARTS)
PARTS = (*PARTS, *STATS_PARTS)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "part", None):
        print(json.dumps(_run_part(args.part, args.epochs, args.quick)))
        return 0
    parts = args.only or [part for part in DEFAULT_PARTS
                          if not (args.quick and part in ACCURACY_PARTS)]
    results: dict[str, Any] = {"machine": machine_facts()}
    for part in _expanded(parts):
        print(f"bench: {part}...", file=sys.stderr, flush=True)
        results[part] = _in_subprocess(part, args.epochs, args.quick)
    results.update(epoch_ratios(results))
    add_percent_of_peak(results)
    if args.json:
        print(json.dumps(results))
    else:
        print(format_table(results))
    failed = [part for part in _expanded(parts) if "error" in results[part]]
    if failed:
        print(f"error: bench part(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _expanded(parts: list[str]) -> list[str]:
    """The parts to run, `cnn-speed` standing for its two engines' parts."""
    return [name for part in parts
            for name in (CNN_SPEED_PARTS if part == "cnn-speed" else (part,))]


# Epoch-time ratios from parts of the same run: key -> (numerator part, denominator part).
RATIOS = {"numpy_to_keras_epoch_ratio": ("numpy", "keras"),
          "numpy_to_plain_keras_epoch_ratio": ("numpy", "keras-plain"),
          "keras_engine_to_plain_keras_ratio": ("keras", "keras-plain"),
          "numpy_to_keras_cnn_epoch_ratio": ("numpy-cnn-speed", "keras-cnn-speed")}


def epoch_ratios(results: dict[str, Any]) -> dict[str, float]:
    """Each ratio whose two parts ran and succeeded in this run, from their medians; for
    the CNN pair also each engine's median under a name of its own."""
    ratios = {}
    for key, (top, bottom) in RATIOS.items():
        if top in results and bottom in results and _ok(results[top], results[bottom]):
            ratios[key] = round(results[top]["seconds_per_epoch_median"]
                                / results[bottom]["seconds_per_epoch_median"], 3)
    for part, engine in CNN_SPEED_PARTS.items():
        if part in results and _ok(results[part]):
            ratios[f"{engine}_cnn_seconds_per_epoch"] = results[part]["seconds_per_epoch_median"]
    return ratios


def add_percent_of_peak(results: dict[str, Any]) -> None:
    """Each run's GFLOP/s as a percentage of one core's matmul peak, measured in this
    run (above 100 for a run on two cores)."""
    peak = results.get("machine", {}).get("matmul_peak_gflops_one_thread")
    for part in results.values():
        if peak and isinstance(part, dict) and "achieved_gflops" in part:
            part["percent_of_one_core_peak"] = round(100 * part["achieved_gflops"] / peak, 1)


def _ok(*parts: dict[str, Any]) -> bool:
    return all("error" not in part for part in parts)


def _in_subprocess(part: str, epochs: int, quick: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "engine", "bench", "--part", part, "--epochs", str(epochs)]
    if quick:
        command.append("--quick")
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def machine_facts() -> dict[str, Any]:
    from engine.numpy_nn.blas import training_threads

    with training_threads():
        one_thread = matmul_peak_gflops()
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "numpy": np.__version__, "matmul_peak_gflops_one_thread": round(one_thread, 1),
            "matmul_peak_gflops_all_threads": round(matmul_peak_gflops(), 1)}


def cpu_model() -> str:
    """The CPU's name as the kernel reports it, so a figure says where it was measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def matmul_peak_gflops(size: int = 1024, repeats: int = 7) -> float:
    """The machine's float32 matrix-multiply rate, the ceiling for a dense network: the
    best of `repeats` products, since a peak is what the hardware can do when left alone."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a
    best = min(_seconds(lambda: a @ a) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _seconds(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- the parts (each in its own process) ----------------------------------------

def _run_part(part: str, epochs: int, quick: bool) -> dict[str, Any]:
    if part in STATS_PARTS:
        return run_stats_part(part, epochs, quick)
    if part == "data":
        return _bench_data()
    if part == "keras-plain":
        return _bench_plain_keras(epochs, quick)
    if part in ONE_THREAD_PARTS:
        from engine.numpy_nn.parts import THREADS_VARIABLE
        os.environ[THREADS_VARIABLE] = "1"
        return _bench_engine(ONE_THREAD_PARTS[part], "default", epochs, quick)
    if part in SPEED_PARTS:
        return _bench_engine(part, "default", epochs, quick)
    if part in CNN_SPEED_PARTS:
        return _bench_engine(CNN_SPEED_PARTS[part], "cnn", epochs, quick,
                             changes={"augmentation": "none"})
    if part in ACCURACY_PARTS:
        engine, preset_name, target_accuracy, target_seconds = ACCURACY_PARTS[part]
        result = _bench_engine(engine, preset_name, None, quick, as_preset=True)
        result.update(target_test_accuracy=target_accuracy, target_train_seconds=target_seconds)
        return result
    if part == "sweep":
        return _bench_sweep(quick)
    if part == "app":
        # The app's figures need Streamlit and a browser, which engine/ never imports.
        completed = subprocess.run([sys.executable, "-m", "tests.support.bench_app"], cwd=ROOT,
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError((completed.stderr.strip().splitlines() or ["failed"])[-1])
        return json.loads(completed.stdout.strip().splitlines()[-1])
    if part == "inside":
        from engine.bench_inside import bench_inside
        return bench_inside(quick)
    raise ValueError(f"unknown bench part {part!r}")


def _bench_data() -> dict[str, Any]:
    """Loads of a file seen for the first time (the full content check) and of a file
    checked before (engine.data's record of verified files)."""
    from engine.data import load_mnist, verified_record_path

    load_mnist()    # make sure the cache exists before timing reads of it
    checked, known = [], []
    for _ in range(5):
        verified_record_path().unlink(missing_ok=True)
        for times in (checked, known):
            start = time.perf_counter()
            data = load_mnist(refresh=True)
            times.append(time.perf_counter() - start)
    return {"source": data.source, "path": str(data.path),
            "load_seconds_median": round(statistics.median(known), 4),
            "load_checked_seconds_median": round(statistics.median(checked), 4),
            "target_seconds": 0.5}


def _bench_engine(engine: str, preset_name: str, epochs: int | None, quick: bool, *,
                  as_preset: bool = False, changes: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    from engine import build_model
    from engine.config import preset
    from engine.data import load_mnist
    from engine.timing import median_latency

    from engine.training import split_training_data

    data = load_mnist()
    config = preset(preset_name)
    changes = {**({} if as_preset else {"validation_fraction": 0.0}), **(changes or {})}
    if epochs is not None:
        changes["epochs"] = epochs
    if quick:
        changes.update(train_size=12_000, epochs=min(config.epochs, 2))
    config = config.replace(**changes)
    images, labels, val_images, val_labels = split_training_data(
        data.train_images, data.train_labels, config)
    validation = (val_images, val_labels) if len(val_labels) else None
    model = build_model(engine, config)
    started = time.perf_counter()
    model.fit(images, labels, validation=validation)
    train_seconds = time.perf_counter() - started
    seconds = [record.seconds for record in model.history.epochs]
    median_epoch = statistics.median(seconds)
    accuracy = model.score(data.test_images, data.test_labels)
    result = {
        "engine": engine, "preset": preset_name, "architecture": config.architecture,
        "images": len(labels), "epochs": len(seconds),
        "seconds_per_epoch": [round(value, 3) for value in seconds],
        "seconds_per_epoch_median": round(median_epoch, 3),
        "samples_per_second": round(len(labels) / median_epoch),
        "train_seconds": round(train_seconds, 1),
        "test_accuracy": round(accuracy, 4),
        "predict_one_ms_median": round(median_latency(model, data.test_images[:1],
                                                      repeats=200) * 1000, 3),
        "parameters": model.parameter_count,
        "peak_memory_mb": round(_peak_memory_mb()),
    }
    if engine == "numpy":
        result["threads"] = model.step_threads()
    if config.architecture == "mlp":
        flops = training_flops_per_sample(config.hidden_sizes) * len(labels)
        result["achieved_gflops"] = round(flops / median_epoch / 1e9, 1)
    return result


def _bench_plain_keras(epochs: int, quick: bool) -> dict[str, Any]:
    from engine.bench_reference import plain_keras_accuracy, plain_keras_run
    from engine.config import preset
    from engine.data import load_mnist

    data = load_mnist()
    config = preset("default")
    images, labels = data.train_images, data.train_labels
    if quick:
        images, labels, epochs = images[:12_000], labels[:12_000], min(epochs, 2)
    # One more epoch than the engines, dropped: Keras traces its graph in the first.
    seconds, model = plain_keras_run(config, images, labels, epochs + 1)
    median_epoch = statistics.median(seconds[1:])
    return {
        "engine": "keras (plain fit)", "preset": "default", "architecture": "mlp",
        "images": len(labels), "epochs": epochs,
        "seconds_per_epoch": [round(value, 3) for value in seconds[1:]],
        "first_epoch_seconds": round(seconds[0], 3),
        "seconds_per_epoch_median": round(median_epoch, 3),
        "samples_per_second": round(len(labels) / median_epoch),
        "achieved_gflops": round(training_flops_per_sample(config.hidden_sizes) * len(labels)
                                 / median_epoch / 1e9, 1),
        "test_accuracy": round(plain_keras_accuracy(model, data.test_images,
                                                    data.test_labels), 4),
        "predict_one_ms_median": float("nan"), "parameters": model.count_params(),
        "peak_memory_mb": round(_peak_memory_mb()),
    }


def training_flops_per_sample(hidden_sizes: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of an MLP's forward (1 GEMM per layer) and backward (2 GEMMs per
    layer, minus the input gradient of the first layer, which nobody needs)."""
    from engine.config import TrainConfig
    from engine.numpy_nn.layout import INPUT_SIZE, forward_multiply_adds
    from engine.training import NUM_CLASSES

    first_layer = INPUT_SIZE * (hidden_sizes[0] if hidden_sizes else NUM_CLASSES)
    forward = forward_multiply_adds(TrainConfig(hidden_sizes=tuple(hidden_sizes)))
    return 2 * (3 * forward - first_layer)


# ---- sweep ------------------------------------------------------------------------

# Issue 14's target: 24 trials of the NumPy MLP on 10,000 training images, 3 epochs each,
# with pruning, within 5 minutes, the process under 600 MB. Three parameters: TPE.
SWEEP_VARY = ("learning_rate=1e-4:1e-1:log", "hidden_sizes=128|256,128|512,256",
              "batch_size=64|128|256")
SWEEP_TARGET_SECONDS, SWEEP_TARGET_MEMORY_MB = 300.0, 600


def _bench_sweep(quick: bool) -> dict[str, Any]:
    from engine.config import preset
    from engine.data import load_mnist
    from engine.sweep import SweepSpec, open_study, parse_vary, run_trials, summarise

    data = load_mnist()
    trials, epochs = (4, 1) if quick else (24, 3)
    spec = SweepSpec("numpy", tuple(parse_vary(text) for text in SWEEP_VARY), trials,
                     preset("default").replace(epochs=epochs, train_size=10_000))
    memory_before = _peak_memory_mb()
    load_before = os.getloadavg()[0]
    study = open_study(None, "bench", spec)
    started = time.perf_counter()
    run_trials(study, spec, data.train_images, data.train_labels)
    seconds = time.perf_counter() - started
    summary = summarise(study)
    states = [trial["state"] for trial in summary["trials"]]
    return {
        "trials": len(states), "complete": states.count("complete"),
        "pruned": states.count("pruned"), "epochs": epochs, "train_size": 10_000,
        "seconds": round(seconds, 1),
        "seconds_per_trial_median": round(statistics.median(
            trial["seconds"] for trial in summary["trials"]), 2),
        "best_value": round(summary["best_value"], 4), "best_params": summary["best_params"],
        # The process holds MNIST, NumPy and Optuna before the first trial; the sweep's
        # own share is the peak less that.
        "memory_before_sweep_mb": round(memory_before),
        "peak_memory_mb": round(_peak_memory_mb()),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "target_seconds": SWEEP_TARGET_SECONDS, "target_memory_mb": SWEEP_TARGET_MEMORY_MB,
    }
