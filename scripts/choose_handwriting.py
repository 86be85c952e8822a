"""Choose how the shipped models learn handwriting, on validation material only.

Candidates are made with the project's own commands (`python -m engine train ...`, `python
-m engine adapt ...`), then compared here on material nothing is ever tested on:
- MNIST's validation split of the shipped presets (5% of the training images, seed 0),
  leaving out any row an adapted model was fine-tuned on (adapt draws its MNIST rows from
  all 60,000, seeded, so they can be drawn again here);
- generated lettering (tuning fonts) and varied pictures of TUNING seeds 50-59
  (tests/support/lettering.py, tests/support/varied_digits.py), prepared as an upload is;
- lettering of the same seeds in the "validation" fonts, which no candidate learns from: how a
  candidate reads hands it never saw.
The held-out fonts and seeds 100-199 are left to scripts/measure_varied.py, run once at the end.

    .venv/bin/python scripts/choose_handwriting.py models/default-mlp /tmp/candidate-mlp
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import registry  # noqa: E402
from engine.config import PRESETS  # noqa: E402
from engine.data import load_mnist  # noqa: E402
from engine.training import split_training_data  # noqa: E402
from scripts.measure_varied import generated, prepared_images  # noqa: E402

LETTERING_SEEDS = list(range(50, 60))
VARIED_SEEDS = [50, 51]
PER_DIGIT = 20


def validation_material(cache: Path) -> dict[str, np.ndarray]:
    """Prepared pictures with their labels, set and kind; built once and kept in `cache`."""
    if cache.exists():
        with np.load(cache) as stored:
            return dict(stored)
    sets = {"lettering": generated("lettering", LETTERING_SEEDS, PER_DIGIT, "tuning"),
            "varied": generated("varied", VARIED_SEEDS, PER_DIGIT, "tuning"),
            # Hands no candidate learnt from, as the held-out fonts will be.
            "unseen fonts": generated("lettering", LETTERING_SEEDS, PER_DIGIT, "validation")}
    samples = [sample for pictures in sets.values() for sample in pictures]
    material = {
        "images": prepared_images(samples),
        "labels": np.array([sample.label for sample in samples]),
        "sets": np.array([name for name, pictures in sets.items() for _ in pictures]),
        "kinds": np.array([sample.kind for sample in samples]),
    }
    np.savez_compressed(cache, **material)
    return material


def mnist_validation_rows(meta: dict) -> np.ndarray:
    """The presets' validation rows of MNIST's training set that this model never trained
    on (both shipped presets hold out the same 5%)."""
    config = PRESETS["strong-mlp"]
    assert config.validation_fraction == PRESETS["cnn"].validation_fraction
    assert config.seed == PRESETS["cnn"].seed
    rows = np.arange(60_000)
    validation = split_training_data(rows, rows, config)[2]
    adaptation = meta.get("metrics", {}).get("adaptation")
    if adaptation:   # the rows engine.adapt._training_set drew
        drawn = np.random.default_rng([adaptation["seed"], 5]).choice(
            60_000, adaptation["mnist_count"], replace=False)
        validation = np.setdiff1d(validation, drawn)
    return validation


def read_meta(location: str) -> dict:
    return json.loads((Path(location) / "meta.json").read_text())


def scores(location: str, material: dict[str, np.ndarray], mnist, rows: np.ndarray
           ) -> dict[str, float]:
    model = registry.load(Path(location))
    predicted = model.predict(mnist.train_images[rows])
    result = {"mnist validation": float(np.mean(predicted == mnist.train_labels[rows])),
              "rows": len(rows)}
    correct = model.predict(material["images"]) == material["labels"]
    groups = defaultdict(list)
    for hit, which, kind in zip(correct, material["sets"], material["kinds"]):
        groups[which].append(hit)
        if which == "lettering":
            groups[kind].append(hit)
    result.update({name: float(np.mean(hits)) for name, hits in groups.items()})
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="model folders to compare")
    parser.add_argument("--cache", type=Path,
                        default=Path("/tmp/digit-lab-choose-handwriting-2.npz"))
    args = parser.parse_args()
    material = validation_material(args.cache)
    mnist = load_mnist()
    counts = {str(name): int(count) for name, count in
              zip(*np.unique(material["sets"], return_counts=True))}
    # Every model on the same MNIST rows: those none of them was fine-tuned on.
    rows = mnist_validation_rows(read_meta(args.models[0]))
    for location in args.models[1:]:
        rows = np.intersect1d(rows, mnist_validation_rows(read_meta(location)))
    print(f"validation pictures: {counts}")
    for location in args.models:
        line = ", ".join(f"{name} {value}" if name == "rows" else f"{name} {value:.2%}"
                         for name, value in scores(location, material, mnist, rows).items())
        print(f"{location}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
