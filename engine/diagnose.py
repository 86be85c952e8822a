"""Why a prepared digit was misread: how its centre, size, slant and stroke width compare with
MNIST's digits of a class (percentiles), and how the probability of the intended digit moves
when the picture is shifted, rotated or its stroke made thinner or thicker. Showing it is left
to ui/why_view.py."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from scipy import ndimage

from engine.images.shape import slant, stroke_width

MEASURES = ("centre x", "centre y", "height", "width", "slant", "stroke")
SHIFTS = tuple(range(-4, 5))                   # px, each axis
ROTATIONS = tuple(range(-30, 31, 10))          # degrees, clockwise
STROKES = (0.5, 0.75, 1.0, 1.5, 2.0)           # stroke width multiplier
REFERENCE_ROWS = 12_000                        # MNIST training rows the percentiles come from


def measure(image: np.ndarray) -> dict[str, float]:
    """The ink's centre of mass (px), ink box height and width (px), slant (mu11/mu02,
    negative leans right) and mean stroke width (px) of a (28, 28) digit in [0, 1]."""
    image = np.asarray(image, np.float32)
    total = float(image.sum())
    if total <= 0:
        return dict.fromkeys(MEASURES, 0.0)
    centre_y, centre_x = ndimage.center_of_mass(image)
    ink = image > 0.1
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return {"centre x": float(centre_x), "centre y": float(centre_y),
            "height": float(rows[-1] - rows[0] + 1), "width": float(cols[-1] - cols[0] + 1),
            "slant": slant(image), "stroke": float(stroke_width(image > 0.5))}


@lru_cache(maxsize=1)
def mnist_measures() -> dict[int, dict[str, np.ndarray]]:
    """Each class's measures over MNIST's first REFERENCE_ROWS training digits (sorted)."""
    from engine.data import load_mnist

    data = load_mnist()
    images = data.train_images[:REFERENCE_ROWS] / np.float32(255)
    labels = data.train_labels[:REFERENCE_ROWS]
    table = [measure(image) for image in images]
    return {digit: {name: np.sort([row[name] for row, label in zip(table, labels)
                                   if label == digit]) for name in MEASURES}
            for digit in range(10)}


def percentiles(image: np.ndarray, digits: tuple[int, ...]) -> list[dict[str, Any]]:
    """One row per measure: its value and, for each of `digits`, the share of MNIST's
    digits of that class with a lower value (in percent)."""
    values = measure(image)
    reference = mnist_measures()
    rows = []
    for name in MEASURES:
        row: dict[str, Any] = {"measure": name, "value": round(values[name], 2)}
        for digit in digits:
            sorted_values = reference[digit][name]
            # Ties count half: many MNIST digits are exactly 20 px tall.
            below = np.searchsorted(sorted_values, values[name], side="left")
            not_above = np.searchsorted(sorted_values, values[name], side="right")
            row[f"percentile among {digit}s"] = round(
                50 * float(below + not_above) / len(sorted_values))
        rows.append(row)
    return rows


def unusual(rows: list[dict[str, Any]], digit: int, outer: float = 3) -> list[str]:
    """The measures outside the middle (100 - 2 x outer)% of MNIST's `digit`s."""
    column = f"percentile among {digit}s"
    return [row["measure"] for row in rows
            if row[column] <= outer or row[column] >= 100 - outer]


def shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return ndimage.shift(image, (dy, dx), order=0, mode="constant")


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """Turned clockwise by `degrees` about the centre."""
    return np.clip(ndimage.rotate(image, -degrees, reshape=False, order=1), 0, 1)


def restroked(image: np.ndarray, factor: float) -> np.ndarray:
    """The stroke made `factor` times as wide, at 4x detail: grown or eroded by distance."""
    if factor == 1:
        return image
    big = ndimage.zoom(image, 4, order=1) > 0.5
    width = 4 * max(stroke_width(image > 0.5), 1.0)
    change = abs(factor - 1) * width / 2
    if factor > 1:
        big = ndimage.distance_transform_edt(~big) <= change
    else:
        big = ndimage.distance_transform_edt(big) > change
    small = big.reshape(28, 4, 28, 4).mean(axis=(1, 3))
    return small.astype(np.float32)


def sensitivity(model: Any, image: np.ndarray, target: int) -> dict[str, list[tuple[float, float]]]:
    """The probability of `target` under each shift (x and y), rotation and stroke change:
    {"shift x": [(px, p), ...], "shift y": ..., "rotation": [(degrees, p)], "stroke": ...}."""
    variants = {"shift x": [(dx, shifted(image, dx, 0)) for dx in SHIFTS],
                "shift y": [(dy, shifted(image, 0, dy)) for dy in SHIFTS],
                "rotation": [(degrees, rotated(image, degrees)) for degrees in ROTATIONS],
                "stroke": [(factor, restroked(image, factor)) for factor in STROKES]}
    stack = np.stack([picture for pairs in variants.values() for _, picture in pairs])
    probabilities = iter(model.predict_proba(stack.astype(np.float32))[:, target])
    return {name: [(float(amount), float(next(probabilities))) for amount, _ in pairs]
            for name, pairs in variants.items()}


def best_fix(curves: dict[str, list[tuple[float, float]]]) -> tuple[str, float, float] | None:
    """(change, amount, probability) of the single change that helps the target most, or
    None when nothing beats the picture as it is."""
    as_is = dict(curves["rotation"])[0.0]
    best = max(((name, amount, probability) for name, pairs in curves.items()
                for amount, probability in pairs), key=lambda item: item[2])
    return best if best[2] > as_is + 0.05 else None
