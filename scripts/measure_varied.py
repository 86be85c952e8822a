"""Score saved models on generated handwriting, split by kind and by source, for the README.

No person wrote any of it. Two sets, each prepared as the dashboard prepares an upload
(engine.images.preprocess) and read by each model:
- "varied": seeded synthetic strokes (tests/support/messy_handwriting.py) rendered as
  canvases, exports, paper photos, small digits in big frames, thick markers and thin pens
  (tests/support/varied_digits.py);
- "lettering": slanted script, hollow, heavy and hairline digits, from the same stroke
  generator and from handwriting fonts (tests/support/lettering.py); `--fonts held-out` uses
  the fonts and seeds the preprocessing was never developed on.

    .venv/bin/python scripts/measure_varied.py                       # the shipped models
    .venv/bin/python scripts/measure_varied.py --set lettering --fonts held-out --seeds 101 102
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import registry  # noqa: E402
from engine.images.preprocess import NoDigitFound, prepare_digit  # noqa: E402


def generated(which: str, seeds: list[int], per_digit: int, fonts: str) -> list:
    from tests.support.lettering import lettering_set
    from tests.support.varied_digits import varied_set

    if which == "varied":
        return [sample for seed in seeds for sample in varied_set(seed, per_digit)]
    return [sample for seed in seeds for sample in lettering_set(seed, per_digit, fonts)]


def prepared_images(samples: list) -> np.ndarray:
    images = []
    for sample in samples:
        try:
            images.append(prepare_digit(sample.picture, ink=sample.ink).image)
        except NoDigitFound:         # no digit found counts as a misread
            images.append(np.zeros((28, 28), np.float32))
    return np.stack(images)


def split(correct: np.ndarray, groups: list[str]) -> str:
    by_group = defaultdict(list)
    for group, hit in zip(groups, correct):
        by_group[group].append(hit)
    return ", ".join(f"{group} {np.mean(hits):.1%} ({len(hits)})"
                     for group, hits in sorted(by_group.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["models/default-mlp",
                                                      "models/default-cnn"])
    parser.add_argument("--set", dest="which", choices=("varied", "lettering"),
                        default="varied")
    parser.add_argument("--fonts", choices=("tuning", "held-out"), default="tuning")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--per-digit", type=int, default=30)
    args = parser.parse_args()
    samples = generated(args.which, args.seeds, args.per_digit, args.fonts)
    images = prepared_images(samples)
    labels = np.array([sample.label for sample in samples])
    kinds = [sample.kind for sample in samples]
    # The stroke generator, or the font each digit was set in.
    sources = [sample.style if sample.style.startswith("font") else "strokes"
               for sample in samples]
    families = ["fonts" if source.startswith("font") else source for source in sources]
    print(f"{len(labels)} generated pictures ({args.which}, fonts {args.fonts}), seeds "
          f"{args.seeds}, {args.per_digit} per digit")
    for location in args.models:
        predicted = registry.load(Path(location)).predict(images)
        correct = predicted == labels
        print(f"{Path(location).name}: {np.mean(correct):.1%}")
        print(f"  by kind: {split(correct, kinds)}")
        print(f"  by source: {split(correct, families)}")
        if args.which == "lettering":
            print(f"  by font: {split(correct, sources)}")
        confusions = defaultdict(int)
        for label, guess in zip(labels[~correct], predicted[~correct]):
            confusions[f"{label}->{guess}"] += 1
        top = sorted(confusions.items(), key=lambda item: -item[1])[:6]
        print("  commonest misreads: " + ", ".join(f"{pair} x{count}" for pair, count in top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
