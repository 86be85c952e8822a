"""Measure engine/novelty.py's shipped detector once on held-out material (it chooses
nothing: scripts/train_detector.py chose on validation material).

MNIST test (10,000); held-out generated handwriting (lettering of held-out fonts, seeds
101-103, and the varied set, seeds 101-102); held-out non-digits (held-out fonts, seed 101)
per kind; letters shaped like digits (O, l, S, Z, ...; seed 102), reported apart. Every
generated picture is prepared as an upload is; one with no digit found counts as flagged.

    .venv/bin/python scripts/measure_novelty.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import load_mnist  # noqa: E402
from engine.novelty import shipped_detector  # noqa: E402
from scripts.detector_material import Prepared, prepared_groups  # noqa: E402
from scripts.train_detector import rates  # noqa: E402
from tests.support.not_digits import LOOKALIKES  # noqa: E402

HANDWRITING = ([("lettering", seed, 20, "held-out") for seed in (101, 102, 103)]
               + [("varied", seed, 20) for seed in (101, 102)])
NOT_DIGITS = [("not-digits", 101, 300, "held-out")]
LOOKALIKE_LETTERS = [("letters", 102, 60, "held-out", LOOKALIKES)]


def main() -> int:
    detector = shipped_detector()
    test = load_mnist().test_images
    started = time.perf_counter()
    flagged = ~detector.digit_like(test)
    took = time.perf_counter() - started
    print(f"MNIST test flagged: {rates(flagged, Prepared(test, np.full(len(test), 'test'), {}))}"
          f" ({took / len(test) * 1e3:.3f} ms a picture)")
    handwriting, others, lookalikes = prepared_groups([HANDWRITING, NOT_DIGITS,
                                                       LOOKALIKE_LETTERS])
    for name, material in [("held-out handwriting", handwriting),
                           ("held-out non-digits", others),
                           ("held-out digit-like letters (O, l, S, ...)", lookalikes)]:
        count = len(material.images) + sum(material.unfound.values())
        print(f"{name} ({count}) flagged: {rates(~detector.digit_like(material.images), material)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
