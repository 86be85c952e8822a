"""The generated pictures engine/novelty.py's detector is trained, chosen and measured on,
each prepared exactly as an upload is (engine.images.preprocess.prepare_digit), built in two
processes and kept in .cache/ so a second run does not draw them again.

A set is named by a tuple: ("not-digits", seed, count, fonts) (every kind in turn),
("scribbles", seed, count, fonts), ("letters", seed, count, fonts, letters),
("lettering", seed, per_digit, fonts) or ("varied", seed, per_digit). Seeds 1-99 are tuning
material, 100-199 held out (tests/support/lettering.py); scripts/train_detector.py uses only
the former, scripts/measure_novelty.py only the latter.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.atomic import atomic_file  # noqa: E402

CACHE = ROOT / ".cache" / "detector-material"
# Bump when the generators or the preparation change, so cached pictures are drawn again.
VERSION = 1


@dataclass
class Prepared:
    """Prepared pictures (n, 28, 28) in [0, 1] with each one's kind, and per kind how many
    pictures gave no digit at all (a caller counts those as flagged)."""

    images: np.ndarray
    kinds: np.ndarray
    unfound: dict[str, int]

    @staticmethod
    def join(parts: list[Prepared]) -> Prepared:
        unfound: dict[str, int] = {}
        for part in parts:
            for kind, count in part.unfound.items():
                unfound[kind] = unfound.get(kind, 0) + count
        return Prepared(np.concatenate([part.images for part in parts]),
                        np.concatenate([part.kinds for part in parts]), unfound)


def _samples(spec: tuple):
    from tests.support.lettering import lettering_set
    from tests.support.not_digits import not_digit_set
    from tests.support.varied_digits import varied_set

    which, *arguments = spec
    if which == "not-digits":
        return not_digit_set(*arguments)
    if which == "scribbles":
        return not_digit_set(*arguments, kinds=("scribble",))
    if which == "letters":
        seed, count, fonts, letters = arguments
        return not_digit_set(seed, count, fonts, kinds=("letter",), letters=letters)
    if which == "lettering":
        return lettering_set(*arguments)
    if which == "varied":
        return varied_set(*arguments)
    raise ValueError(f"unknown material {which!r}")


def _prepare(spec: tuple) -> Prepared:
    from engine.images.preprocess import NoDigitFound, prepare_digit

    images, kinds, unfound = [], [], {}
    for sample in _samples(spec):
        try:
            images.append(prepare_digit(sample.picture, ink=sample.ink).image)
            kinds.append(sample.kind)
        except NoDigitFound:
            unfound[sample.kind] = unfound.get(sample.kind, 0) + 1
    return Prepared(np.asarray(images, np.float32).reshape(-1, 28, 28),
                    np.asarray(kinds, dtype=str), unfound)


def _cached(spec: tuple) -> Prepared:
    name = hashlib.sha1(repr((VERSION, spec)).encode()).hexdigest()[:16]
    path = CACHE / f"{name}.npz"
    if path.exists():
        with np.load(path) as stored:
            counts = dict(zip(stored["unfound_kinds"].tolist(), stored["unfound_counts"].tolist()))
            return Prepared(stored["images"], stored["kinds"], counts)
    prepared = _prepare(spec)
    CACHE.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        np.savez_compressed(handle, images=prepared.images, kinds=prepared.kinds,
                            unfound_kinds=np.asarray(list(prepared.unfound), dtype=str),
                            unfound_counts=np.asarray(list(prepared.unfound.values()), int))
    return prepared


def prepared_sets(specs: list[tuple], processes: int = 2) -> list[Prepared]:
    """Each spec's pictures, prepared (from the cache when drawn before)."""
    if processes <= 1:
        return [_cached(spec) for spec in specs]
    with get_context("spawn").Pool(processes) as pool:
        return pool.map(_cached, specs, chunksize=1)


def prepared_groups(groups: list[list[tuple]], processes: int = 2) -> list[Prepared]:
    """One joined set per group of specs, all drawn in one pool."""
    parts = prepared_sets([spec for group in groups for spec in group], processes)
    joined, start = [], 0
    for group in groups:
        joined.append(Prepared.join(parts[start:start + len(group)]))
        start += len(group)
    return joined
