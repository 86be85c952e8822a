"""Score saved models on the generated varied pictures, for the README's figure.

The pictures are generated, not written by people: seeded synthetic strokes from
tests/support/messy_handwriting.py, rendered as canvases, exports, paper photos, small digits in
big frames, thick markers and thin pens by tests/support/varied_digits.py. Each is prepared as
the dashboard prepares an upload (engine.images.preprocess), then read by each model.

    .venv/bin/python scripts/measure_varied.py                       # the shipped models
    .venv/bin/python scripts/measure_varied.py models/mine --seeds 1 2 3 --per-digit 30
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
from tests.support.varied_digits import varied_set  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["models/default-mlp",
                                                      "models/default-cnn"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--per-digit", type=int, default=30)
    args = parser.parse_args()
    images, labels, kinds = [], [], []
    for seed in args.seeds:
        for sample in varied_set(seed, args.per_digit):
            try:
                images.append(prepare_digit(sample.picture, ink=sample.ink).image)
            except NoDigitFound:         # no digit found counts as a misread
                images.append(np.zeros((28, 28), np.float32))
            labels.append(sample.label)
            kinds.append(sample.kind)
    images, labels, kinds = np.stack(images), np.array(labels), np.array(kinds)
    print(f"{len(labels)} generated pictures, seeds {args.seeds}, {args.per_digit} per digit")
    for location in args.models:
        correct = registry.load(Path(location)).predict(images) == labels
        by_kind = defaultdict(list)
        for kind, hit in zip(kinds, correct):
            by_kind[kind].append(hit)
        detail = ", ".join(f"{kind} {np.mean(hits):.1%}" for kind, hits in by_kind.items())
        print(f"{Path(location).name}: {np.mean(correct):.1%} ({detail})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
