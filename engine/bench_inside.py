"""`engine bench --only inside`: the server time of each Inside view on the shipped MLP,
over many test digits (an attribution's cost varies with the digit: integrated gradients
refines its path until it adds up), quoted as median and worst."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from engine import explain

# The targets: every view within 100 ms, the PCA map within a second (then
# cached); dead units over the whole test set are a one-off of the same kind.
VIEW_TARGET_MS = 100.0
MAP_TARGET_MS = 1000.0
MODEL = "default-mlp"


def bench_inside(quick: bool) -> dict[str, Any]:
    from engine import registry
    from engine.bench import ROOT
    from engine.cross_engine import other_engine
    from engine.data import load_mnist

    data = load_mnist()
    model = registry.load(ROOT / "models" / MODEL)
    started = time.perf_counter()
    twin = other_engine(model)
    twin_seconds = time.perf_counter() - started
    count = 5 if quick else 30
    cases = [(data.test_images[index], int(data.test_labels[index])) for index in range(count)]
    views: dict[str, Callable[[Any, int], object]] = {
        "first layer": lambda image, label: explain.first_layer(model),
        "activations": lambda image, label: model.layer_outputs(image[None]),
        "saliency": lambda image, label: explain.saliency(model, image, label),
        "integrated gradients": lambda image, label: explain.integrated_gradients(
            model, image, label),
        "occlusion": lambda image, label: explain.occlusion(model, image, label),
        "activation maximisation": lambda image, label: explain.activation_maximisation(
            model, target=label),
        "fooling": lambda image, label: explain.fooling(model, image),
        "both engines": lambda image, label: explain.compare_engines(model, twin, image,
                                                                     label),
    }
    result: dict[str, Any] = {"model": MODEL, "digits": count,
                              "keras_twin_build_seconds": round(twin_seconds, 2), "views": {}}
    for name, view in views.items():
        result["views"][name] = _timed(view, cases, VIEW_TARGET_MS)
    images, labels = data.test_images, data.test_labels
    maps = {"hidden space (5,000 digits)": lambda: explain.hidden_space(
                model, images[:5000], labels[:5000]),
            "dead units (10,000 digits)": lambda: explain.dead_units(model, images)}
    for name, whole in maps.items():
        result["views"][name] = _timed(lambda image, label, whole=whole: whole(), cases[:3],
                                       MAP_TARGET_MS)
    return result


def _timed(view: Callable[[Any, int], object], cases: list[tuple[Any, int]],
           target_ms: float) -> dict[str, float]:
    view(*cases[0])                     # a first call traces Keras's graph, fills caches
    times = []
    for image, label in itertools.islice(itertools.cycle(cases), max(len(cases), 3)):
        start = time.perf_counter()
        view(image, label)
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2),
            "target_ms": target_ms}


def format_inside(part: dict[str, Any]) -> list[str]:
    """Lines for the bench's table."""
    if "error" in part:
        return [f"inside: failed: {part['error']}"]
    lines = [(f"inside views on {part['model']} over {part['digits']} test digits (server "
              f"time; the Keras twin for 'both engines' took "
              f"{part['keras_twin_build_seconds']:.1f} s to build, once):")]
    for name, row in part["views"].items():
        verdict = "ok" if row["median_ms"] <= row["target_ms"] else "MISSED"
        lines.append(f"  {name:<28}{row['median_ms']:>9.1f} ms median{row['max_ms']:>9.1f} "
                     f"ms worst   target <= {row['target_ms']:.0f} ms: {verdict}")
    return lines
