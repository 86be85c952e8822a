"""Pictures that are not digits, in the scenes digits come in (tests/support/lettering.py):
letters set in handwriting fonts, scribbles and shapes drawn by messy hands, and photos of
empty paper. For measuring engine.novelty's "does this look like a digit?".

    samples = not_digit_set(seed=1, count=200, fonts="tuning")

Seeds and fonts split as in tests/support/lettering.py: tune on TUNING_SEEDS and the tuning
fonts, measure on HELD_OUT_SEEDS and the held-out fonts.
"""

from __future__ import annotations

import numpy as np

from tests.support import lettering
from tests.support.messy_handwriting import draw_ink, messy_hand
from tests.support.varied_digits import Ink, Sample, _photo_of

KINDS = ("letter", "scribble", "shape", "empty-paper")
SALT = 0x0D161
# Letters whose written shape is a digit's (O and 0, l and 1, ...): no picture tells them
# apart, so they are measured apart (LOOKALIKES) and left out of the main figure.
LETTERS = "ACEFHKMNPRTUVWXYacefhkmnprtuvwxy"
LOOKALIKES = "OoIlSsZzBbGgq"
SHAPES = ("triangle", "square", "star", "heart", "arrow", "cross", "plus", "spiral", "hash",
          "check")


def not_digit_set(seed: int, count: int, fonts: str = "tuning",
                  kinds: tuple[str, ...] = KINDS, letters: str = LETTERS) -> list[Sample]:
    """`count` pictures, the kinds taking turns. A Sample's label is -1, its `style` says
    what it is ("letter A font Kristi", "shape star", ...)."""
    faces = lettering.available_fonts(fonts)
    rng = np.random.default_rng([SALT, seed, lettering.FONT_STREAMS[fonts]])
    samples = []
    for number in range(count):
        kind = kinds[number % len(kinds)]
        if kind == "letter" and not faces:
            kind = "scribble"
        scene = str(rng.choice(lettering.SCENE_NAMES))
        if kind == "empty-paper":
            picture, ink, placed = _empty_paper(rng)
            style = "empty paper"
        else:
            height = rng.uniform(140, 240) if scene == "canvas" else rng.uniform(150, 450)
            if kind == "letter":
                name, letter = str(rng.choice(sorted(faces))), str(rng.choice(list(letters)))
                coverage = lettering.glyph_coverage(faces[name], letter, height)
                style = f"letter {letter} font {name}"
            else:
                shape = str(rng.choice(SHAPES)) if kind == "shape" else "scribble"
                strokes = _shape(shape, rng) if kind == "shape" else _scribble(rng)
                coverage = _drawn(strokes, height, rng)
                style = f"{kind} {shape}" if kind == "shape" else "scribble"
            picture, ink, placed = lettering.SCENES[scene](coverage, rng)
        samples.append(Sample(picture, -1, kind, style, number, ink, placed.box))
    return samples


def _drawn(strokes, height: float, rng) -> np.ndarray:
    hand = messy_hand(rng)
    pen = max(1.0, rng.uniform(0.04, 0.12) * height)
    points = np.vstack(strokes)
    span = points.max(axis=0) - points.min(axis=0)
    width = (height - pen) * span[0] / max(span[1], 1e-6) + pen
    shape = (int(np.ceil(height)) + 2, int(np.ceil(width)) + 2)
    return draw_ink(strokes, shape, (1.0, 1.0, height), pen, hand.unevenness, rng)


def _scribble(rng) -> list[np.ndarray]:
    """A tangle: a smooth random walk that crosses itself, in one to three strokes."""
    strokes = []
    for _ in range(int(rng.integers(1, 4))):
        steps = int(rng.integers(40, 120))
        turn = np.cumsum(rng.normal(0, rng.uniform(0.2, 0.6), steps))
        path = np.cumsum(np.stack([np.cos(turn), np.sin(turn)], axis=1) * 0.03, axis=0)
        strokes.append(path + rng.uniform(-0.2, 0.2, 2))
    return strokes


def _shape(name: str, rng) -> list[np.ndarray]:
    """A shape in unit coordinates (x right, y down), a little irregular."""
    wobble = lambda points: np.asarray(points, float) + rng.normal(0, 0.01, (len(points), 2))  # noqa: E731
    turn = np.linspace(0, 2 * np.pi, 90)
    if name == "triangle":
        return [wobble([(0.5, 0.1), (0.9, 0.85), (0.1, 0.85), (0.5, 0.1)])]
    if name == "square":
        return [wobble([(0.15, 0.15), (0.85, 0.15), (0.85, 0.85), (0.15, 0.85), (0.15, 0.15)])]
    if name == "star":
        angles = -np.pi / 2 + np.arange(11) * 4 * np.pi / 5
        return [wobble(np.stack([0.5 + 0.4 * np.cos(angles), 0.5 + 0.4 * np.sin(angles)], 1))]
    if name == "heart":
        x = 16 * np.sin(turn) ** 3
        y = -(13 * np.cos(turn) - 5 * np.cos(2 * turn) - 2 * np.cos(3 * turn) - np.cos(4 * turn))
        return [wobble(np.stack([0.5 + x / 40, 0.45 + y / 40], 1))]
    if name == "arrow":
        return [wobble([(0.1, 0.5), (0.9, 0.5)]), wobble([(0.6, 0.25), (0.9, 0.5), (0.6, 0.75)])]
    if name == "cross":
        return [wobble([(0.15, 0.15), (0.85, 0.85)]), wobble([(0.85, 0.15), (0.15, 0.85)])]
    if name == "plus":
        return [wobble([(0.5, 0.1), (0.5, 0.9)]), wobble([(0.1, 0.5), (0.9, 0.5)])]
    if name == "spiral":
        radius = np.linspace(0.02, 0.4, 200)
        angle = np.linspace(0, 6 * np.pi, 200)
        return [wobble(np.stack([0.5 + radius * np.cos(angle), 0.5 + radius * np.sin(angle)], 1))]
    if name == "hash":
        return [wobble([(0.35, 0.1), (0.3, 0.9)]), wobble([(0.7, 0.1), (0.65, 0.9)]),
                wobble([(0.1, 0.35), (0.9, 0.35)]), wobble([(0.1, 0.65), (0.9, 0.65)])]
    return [wobble([(0.1, 0.55), (0.35, 0.85), (0.9, 0.15)])]                  # check mark


def _empty_paper(rng):
    """A photo of paper with nothing written on it (ruled or plain, any light)."""
    long_side = int(rng.integers(600, 2400))
    return _photo_of(lambda shape: Ink(np.zeros((1, 1), np.float32), 0, 0), rng, long_side,
                     str(rng.choice(["ballpoint", "black", "pencil"])))
