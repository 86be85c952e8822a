"""Measure engine/novelty.py's shipped detector once on held-out material (it chooses
nothing: scripts/train_detector.py chose on validation material).

MNIST test (10,000); held-out generated handwriting (lettering of held-out fonts, three
seeds, and the varied set, two); held-out non-digits (held-out fonts, one seed) per kind;
letters shaped like digits (O, l, S, Z, ...; the next seed), reported apart. Every
generated picture is prepared as an upload is; one with no digit found counts as flagged.

    .venv/bin/python scripts/measure_novelty.py [--first-seed 121]
"""

from __future__ import annotations

import argparse
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

def held_out_material(first: int) -> tuple[list, list, list]:
    """Held-out handwriting, non-digits and digit-like letters, drawn from seeds `first` to
    `first + 2`. Each detector round is measured on seeds no earlier round saw: 101-103 for
    the first, 111-113 for the second (not shipped), 121-123 for the conv detector."""
    handwriting = ([("lettering", seed, 20, "held-out") for seed in range(first, first + 3)]
                   + [("varied", seed, 20) for seed in (first, first + 1)])
    return (handwriting, [("not-digits", first, 300, "held-out")],
            [("letters", first + 1, 60, "held-out", LOOKALIKES)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-seed", type=int, default=121,
                        help="first held-out seed (100-197; default: the conv round's)")
    args = parser.parse_args()
    if not 100 <= args.first_seed <= 197:
        parser.error("held-out seeds are 100-199")
    detector = shipped_detector()
    test = load_mnist().test_images
    started = time.perf_counter()
    flagged = ~detector.digit_like(test)
    took = time.perf_counter() - started
    print(f"MNIST test flagged: {rates(flagged, Prepared(test, np.full(len(test), 'test'), {}))}"
          f" ({took / len(test) * 1e3:.3f} ms a picture)")
    handwriting, others, lookalikes = prepared_groups(list(held_out_material(args.first_seed)))
    for name, material in [("held-out handwriting", handwriting),
                           ("held-out non-digits", others),
                           ("held-out digit-like letters (O, l, S, ...)", lookalikes)]:
        count = len(material.images) + sum(material.unfound.values())
        print(f"{name} ({count}) flagged: {rates(~detector.digit_like(material.images), material)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
