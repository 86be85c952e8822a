"""Custom digits by one writer MNIST's writers rarely resemble, for the adaptation tests:
something a fine-tuned model can learn and a plain MNIST model misreads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.custom import save_custom_digit
from tests.support.handwriting import digit_strokes, random_hand, render_strokes

PER_LABEL = 20
# One writer's habits MNIST's writers rarely share: a strong forward slant, a thin pen
# and the less common shape of each digit.
STYLES = {0: "narrow", 1: "base", 2: "loop", 3: "flat-top", 4: "closed", 5: "one-stroke",
          6: "straight", 7: "crossbar", 8: "two-loops", 9: "straight"}


def write_slanted_digits(folder: Path, per_label: int = PER_LABEL, seed: int = 0) -> Path:
    """`per_label` drawings of each digit by one slanted, thin-penned writer, saved as a
    person's custom digits would be."""
    rng = np.random.default_rng(seed)
    side = 112      # preprocessing shrinks to 20 px anyway; small is fast to draw
    for digit in range(10):
        for _ in range(per_label):
            hand = replace(random_hand(rng), slant=rng.uniform(0.45, 0.6),
                           rotation=rng.uniform(8, 14), width=rng.uniform(0.035, 0.05))
            strokes = digit_strokes(digit, rng, style=STYLES[digit], hand=hand)
            save_custom_digit(render_strokes(strokes, size=side, width=hand.width * side,
                                             supersample=2), digit, folder)
    return folder
