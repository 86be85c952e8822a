"""Messier hands than tests/support/handwriting.py: more styles, slant both ways, mouse jitter and
tremor, sloppy closures and overshoots, pens of uneven width; and a renderer that draws
them into a float ink mask at any size. Scenes (canvas, paper, photo) are left to callers.

Paths are in unit coordinates as in tests/support/handwriting.py (x right, y down); a digit is a
list of (k, 2) polylines in pen order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from tests.support.handwriting import STYLES, Style


# ---- more styles, in the same model box as tests/support/handwriting.py (y 0.15 to 0.85) --------

def _arc(cx, cy, rx, ry, start, end):
    """Elliptic arc; degrees, 0 = right, 90 = down (clockwise on screen as angles grow)."""
    angles = np.radians(np.linspace(start, end, max(2, int(abs(end - start) / 4) + 1)))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _poly(*points):
    return np.asarray(points, dtype=float)


def _curve(p0, p1, p2, p3, count=24):
    t = np.linspace(0.0, 1.0, count)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def _zero_gap(rng):
    # A sloppy closure: the pen stops short of where it started, the gap at the top.
    return [_arc(0.5, 0.5, rng.uniform(0.15, 0.24), 0.34, -70, -70 - rng.uniform(315, 335))]


def _zero_tail(rng):
    # Closed with a crossing: the end runs on inside past the start.
    return [np.vstack([_arc(0.5, 0.5, 0.2, 0.34, -100, -100 - 360),
                       _arc(0.5, 0.5, 0.2, 0.34, -100, -130) * [0.92, 1.0] + [0.04, 0.02]])]


def _two_angular(rng):
    top = _arc(0.5, 0.3, 0.19, 0.15, 190, 360)
    return [np.vstack([top, _poly((0.66, 0.42), (0.28, 0.85), (0.76, 0.84))])]


def _three_small_top(rng):
    upper = _arc(0.5, 0.28, 0.14, 0.12, 200, 450)
    lower = _arc(0.49, 0.63, 0.21, 0.22, 250, 510)
    return [np.vstack([upper, lower])]


def _four_tall_stem(rng):
    return [_poly((0.38, 0.2), (0.31, 0.58), (0.8, 0.57)), _poly((0.63, 0.13), (0.62, 0.88))]


def _five_detached_bar(rng):
    stem = _poly((0.36, 0.17), (0.33, 0.45))
    belly = _arc(0.49, 0.64, 0.2, 0.19, 220, 500)
    gap = rng.uniform(0.02, 0.06)
    return [np.vstack([stem, belly]), _poly((0.36 + gap, 0.15), (0.72, 0.13))]


def _six_small_loop(rng):
    stem = _curve((0.66, 0.13), (0.42, 0.2), (0.3, 0.45), (0.33, 0.72))
    return [np.vstack([stem, _arc(0.47, 0.72, 0.15, 0.13, 180, -165)])]


def _seven_curved(rng):
    return [np.vstack([_poly((0.27, 0.2), (0.73, 0.17)),
                       _curve((0.73, 0.17), (0.58, 0.38), (0.48, 0.6), (0.46, 0.87))])]


def _eight_slanted_loops(rng):
    upper = _arc(0.55, 0.31, 0.13, 0.15, -60, -420)
    lower = _arc(0.45, 0.67, 0.18, 0.18, -80, 275)
    return [upper, lower]


def _nine_small_loop(rng):
    loop = _arc(0.5, 0.28, 0.15, 0.13, 0, -360)
    return [np.vstack([loop, _curve((0.65, 0.28), (0.65, 0.5), (0.62, 0.72), (0.58, 0.88))])]


EXTRA_STYLES: dict[int, dict[str, Style]] = {
    0: {"gap": _zero_gap, "tail": _zero_tail}, 1: {}, 2: {"angular": _two_angular},
    3: {"small-top": _three_small_top}, 4: {"tall-stem": _four_tall_stem},
    5: {"detached-bar": _five_detached_bar}, 6: {"small-loop": _six_small_loop},
    7: {"curved": _seven_curved}, 8: {"slanted-loops": _eight_slanted_loops},
    9: {"small-loop": _nine_small_loop},
}


def style_names(digit: int) -> list[str]:
    """Every style of `digit`: tests/support/handwriting.py's and the extra ones here."""
    return sorted(STYLES[digit]) + sorted(EXTRA_STYLES[digit])


# ---- a messier hand ----------------------------------------------------------------

@dataclass(frozen=True)
class MessyHand:
    """One writer with a mouse or a pen: shape distortions and how unsteady the line is."""

    slant: float          # horizontal shear; negative leans left (many left-handers)
    aspect: float         # width multiplier
    rotation: float       # degrees, clockwise
    drift: float          # slow wander of the path (unit coordinates)
    tremor: float         # fast jitter per sampled point (unit coordinates)
    sample_step: float    # distance between recorded points: a mouse records few, so the
                          # line is a polygon with visible corners
    joins: float          # how far stroke ends overshoot (+) or stop short (-) at most
    unevenness: float     # relative variation of the pen's width along a stroke


def messy_hand(rng: np.random.Generator, mouse: bool = False) -> MessyHand:
    return MessyHand(slant=rng.uniform(-0.35, 0.45), aspect=rng.uniform(0.72, 1.3),
                     rotation=rng.uniform(-12, 12), drift=rng.uniform(0.003, 0.014),
                     tremor=rng.uniform(0.001, 0.006) if mouse else rng.uniform(0, 0.002),
                     sample_step=rng.uniform(0.01, 0.035) if mouse else 0.006,
                     joins=rng.uniform(0.01, 0.07),
                     # A canvas pen has one width; a pen on paper varies with pressure.
                     unevenness=0.0 if mouse else rng.uniform(0.0, 0.3))


def messy_strokes(digit: int, rng: np.random.Generator, hand: MessyHand,
                  style: str | None = None) -> tuple[list[np.ndarray], str]:
    """(strokes, style name): `digit` in `style` (random if None) as `hand` writes it.
    The strokes are not placed: scenes fit their ink box where they want it."""
    styles = {**STYLES[digit], **EXTRA_STYLES[digit]}
    style = style or str(rng.choice(style_names(digit)))
    if digit == 1 and style != "bare":
        # Slanted, turned or widened much, a 1's flag flattens into a 7's bar: people who
        # write the flag keep it steep.
        hand = replace(hand, slant=float(np.clip(hand.slant, -0.15, 0.15)),
                       rotation=float(np.clip(hand.rotation, -5, 5)),
                       aspect=min(hand.aspect, 1.05))
    strokes = []
    for path in styles[style](rng):
        path = _even(np.asarray(path, dtype=float), 0.004)
        path = _ends(path, hand.joins, rng)
        path = path + _slow_noise(len(path), hand.drift, 60, rng)
        path = _even(path, hand.sample_step)
        path = path + rng.normal(0.0, hand.tremor, path.shape)
        strokes.append(_shaped(path, hand))
    return strokes, style


def _even(path: np.ndarray, step: float) -> np.ndarray:
    """Points `step` apart along the path."""
    along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))]
    targets = np.linspace(0.0, along[-1], max(2, int(along[-1] / step) + 1))
    return np.stack([np.interp(targets, along, path[:, axis]) for axis in (0, 1)], axis=1)


def _ends(path: np.ndarray, joins: float, rng: np.random.Generator) -> np.ndarray:
    for end in (0, -1):
        change = rng.uniform(-joins, joins)
        if change < 0:
            drop = min(int(-change / 0.004), len(path) // 5)
            path = path[drop:] if end == 0 else path[:len(path) - drop]
        else:
            direction = path[end] - (path[1] if end == 0 else path[-2])
            extra = path[end] + direction / (np.linalg.norm(direction) or 1.0) * change
            path = np.vstack([extra, path]) if end == 0 else np.vstack([path, extra])
    return path


def _slow_noise(count: int, amplitude: float, correlation: float,
                rng: np.random.Generator) -> np.ndarray:
    """(count, 2) smooth random offsets of about `amplitude`, correlated over `correlation`
    points (a hand drifting, not shaking)."""
    noise = ndimage.gaussian_filter1d(rng.normal(size=(count + 200, 2)), correlation / 4, axis=0,
                                      mode="wrap")[100:100 + count]
    return noise / (noise.std() or 1.0) * amplitude


def _shaped(path: np.ndarray, hand: MessyHand) -> np.ndarray:
    x, y = path[:, 0] - 0.5, path[:, 1] - 0.5
    x = x * hand.aspect - hand.slant * y
    angle = np.radians(hand.rotation)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([cos * x - sin * y, sin * x + cos * y], axis=1) + 0.5


# ---- rendering -----------------------------------------------------------------------

def ink_box(strokes: list[np.ndarray], pen: float = 0.0) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the strokes' points, widened by half the pen."""
    points = np.vstack(strokes)
    (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
    return left - pen / 2, top - pen / 2, right + pen / 2, bottom + pen / 2


def draw_ink(strokes: list[np.ndarray], shape: tuple[int, int],
             box: tuple[float, float, float], pen_px: float, unevenness: float,
             rng: np.random.Generator, pressure: float = 0.0) -> np.ndarray:
    """(height, width) float32 ink coverage in [0, 1].

    `box` = (left, top, height) in pixels: where the strokes' ink box (pen included) goes,
    its height `height` px, aspect kept. The pen's width varies along each stroke by
    `unevenness` (relative); `pressure` > 0 also varies how dark it lays down ink.
    """
    height, width = shape
    left, top, box_height = box
    x0, y0, x1, y1 = ink_box(strokes)
    scale = (box_height - pen_px) / max(y1 - y0, 1e-6)
    # Supersampled for soft edges; less for large pictures, whose pens are wide anyway.
    factor = 4 if max(shape) <= 400 else 2 if max(shape) <= 1200 else 1
    image = Image.new("L", (width * factor, height * factor), 0)
    draw = ImageDraw.Draw(image)
    for path in strokes:
        pixels = ((path - [x0, y0]) * scale + [left + pen_px / 2, top + pen_px / 2]) * factor
        count = len(pixels)
        # Pressure changes over about a third of the digit's height, not point to point.
        step = float(np.mean(np.linalg.norm(np.diff(path, axis=0), axis=1))) if count > 1 else 1
        span = max(3.0, 0.3 / max(step, 1e-3))
        widths = pen_px * factor * np.clip(
            1 + _slow_noise(count, unevenness, span, rng)[:, 0], 0.5, 1.6)
        shades = 255 * np.clip(1 - pressure * np.abs(_slow_noise(count, 1.0, span, rng)[:, 1]),
                               0.35, 1)
        for index in range(count):
            x, y = pixels[index]
            radius, shade = widths[index] / 2, int(shades[index])
            if index:
                draw.line([tuple(pixels[index - 1]), (x, y)], fill=shade,
                          width=max(1, round(widths[index])))
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=shade)
    if factor > 1:
        image = image.resize((width, height), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255
