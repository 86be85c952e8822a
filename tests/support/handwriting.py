"""Scripted handwriting: stroke paths for the digits 0-9 in the styles people use, and a
seeded "hand" that varies them like different writers. Drawing them (in a browser, or into
an array with `render_strokes`) is left to the caller.

Coordinates are unit coordinates of a square drawing surface: x from the left, y from the top
(as on a screen), so a point (0.5, 0.5) is the centre. A digit is a list of strokes, each a
polyline of shape (k, 2) in the order the pen moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

SPACING = 0.008          # distance between successive points of a stroke (unit coordinates)
Path = np.ndarray        # (k, 2) float64


# ---- pieces of paths --------------------------------------------------------------

def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float) -> Path:
    """Elliptic arc; angles in degrees, 0 = right, 90 = down, so increasing angles turn
    clockwise on the screen."""
    count = max(2, int(abs(end - start) / 4) + 1)
    angles = np.radians(np.linspace(start, end, count))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)


def _line(*points: tuple[float, float]) -> Path:
    return np.asarray(points, dtype=float)


def _bezier(p0, p1, p2, p3, count: int = 24) -> Path:
    t = np.linspace(0.0, 1.0, count)[:, None]                               # (count, 1)
    p0, p1, p2, p3 = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _joined(*pieces: Path) -> Path:
    """One pen movement through the pieces in order (a straight bit bridges any gap)."""
    return np.concatenate([np.asarray(piece, dtype=float) for piece in pieces])


def _at(cx: float, cy: float, rx: float, ry: float, angle: float) -> tuple[float, float]:
    radians = np.radians(angle)
    return cx + rx * np.cos(radians), cy + ry * np.sin(radians)


# ---- the digits, in the styles people write them ----------------------------------
# Each style takes the rng for the few details one writer changes from digit to digit
# (how far a loop closes, how big a bowl is) and returns the strokes in pen order.

Style = Callable[[np.random.Generator], list[Path]]


def _zero(rx: float, ry: float, tilt: float) -> Style:
    def strokes(rng):
        # Most people start at the top and go anticlockwise; the end overshoots or stops short.
        closing = rng.uniform(-12, 30)
        oval = _arc(0.5, 0.5, rx, ry, -80, -80 - 360 - closing)
        return [_rotated(oval, tilt)]
    return strokes


def _one_bare(rng):
    return [_line((0.52, 0.14), (0.5, 0.86))]


def _one_flag(rng):
    return [_line((0.36, 0.3), (0.53, 0.14), (0.51, 0.86))]


def _one_base(rng):
    return [_line((0.37, 0.28), (0.53, 0.14), (0.52, 0.84)), _line((0.35, 0.85), (0.7, 0.85))]


def _two_plain(rng):
    bowl = rng.uniform(0.17, 0.21)
    top = _arc(0.5, 0.33, bowl, 0.17, 195, 385)
    neck = _bezier(top[-1], (0.64, 0.55), (0.42, 0.72), (0.29, 0.85))
    return [_joined(top, neck, _line((0.32, 0.84), (0.74, 0.84)))]


def _two_loop(rng):
    top = _arc(0.5, 0.32, 0.18, 0.16, 195, 385)
    neck = _bezier(top[-1], (0.62, 0.55), (0.45, 0.7), (0.33, 0.8))
    # The pen curls down, left and up over its own line, then runs out along the base.
    curl = _bezier((0.33, 0.8), (0.24, 0.9), (0.2, 0.76), (0.3, 0.75))
    out = _bezier((0.3, 0.75), (0.4, 0.75), (0.38, 0.85), (0.5, 0.85))
    return [_joined(top, neck, curl, out, _line((0.5, 0.85), (0.75, 0.84)))]


def _three_round(rng):
    upper = _arc(0.49, 0.32, 0.17, 0.15, 195, 465)
    lower = _arc(0.48, 0.67, 0.2, 0.18, 255, 520)
    return [_joined(upper, lower)]


def _three_flat(rng):
    top = _line((0.3, 0.17), (0.69, 0.17), (0.46, 0.45))
    lower = _arc(0.48, 0.66, 0.2, 0.19, 250, 515)
    return [_joined(top, lower)]


def _four_open(rng):
    return [_line((0.4, 0.15), (0.3, 0.6), (0.76, 0.6)), _line((0.63, 0.32), (0.63, 0.88))]


def _four_closed(rng):
    return [_line((0.62, 0.15), (0.27, 0.62), (0.77, 0.62)), _line((0.62, 0.15), (0.62, 0.88))]


def _five_belly(rng):
    start = _at(0.48, 0.63, 0.2, 0.2, 215)
    return _line((0.37, 0.16), start), _arc(0.48, 0.63, 0.2, 0.2, 215, 500)


def _five_two_strokes(rng):
    stem, belly = _five_belly(rng)
    return [_joined(stem, belly), _line((0.37, 0.16), (0.71, 0.15))]


def _five_one_stroke(rng):
    stem, belly = _five_belly(rng)
    return [_joined(_line((0.7, 0.15), (0.37, 0.16)), stem, belly)]


def _six_curved(rng):
    stem = _bezier((0.65, 0.15), (0.45, 0.18), (0.3, 0.4), (0.3, 0.66))
    loop = _arc(0.49, 0.67, 0.19, 0.17, 180, -160)
    return [_joined(stem, loop)]


def _six_straight(rng):
    stem = _line((0.6, 0.14), (0.33, 0.6))
    loop = _arc(0.49, 0.68, 0.17, 0.16, 200, -150)
    return [_joined(stem, loop)]


def _seven_plain(rng):
    return [_line((0.28, 0.18), (0.72, 0.18), (0.44, 0.86))]


def _seven_crossbar(rng):
    return _seven_plain(rng) + [_line((0.43, 0.52), (0.7, 0.5))]


def _seven_serif(rng):
    return [_line((0.29, 0.27), (0.28, 0.18), (0.72, 0.18), (0.5, 0.86))]


def _eight_one_stroke(rng):
    cx, upper_r, lower_r = 0.5, rng.uniform(0.13, 0.16), rng.uniform(0.17, 0.2)
    upper_y, lower_y = 0.17 + 0.15, 0.85 - lower_r
    upper = _arc(cx, upper_y, upper_r, 0.15, -30, -230)
    lower = _arc(cx, lower_y, lower_r, 0.18, -60, 240)
    back = _arc(cx, upper_y, upper_r, 0.15, 50, -35)
    return [_joined(upper, lower, back)]


def _eight_two_loops(rng):
    upper = _arc(0.5, 0.32, 0.14, 0.15, -90, -450 - rng.uniform(0, 20))
    lower = _arc(0.5, 0.66, 0.19, 0.19, -90, 270 + rng.uniform(0, 20))
    return [upper, lower]


def _nine_loop(rng):
    return _arc(0.48, 0.32, 0.17, 0.16, -10, -370)


def _nine_straight(rng):
    loop = _nine_loop(rng)
    return [_joined(loop, _line((0.655, 0.32), (0.64, 0.87)))]


def _nine_curved(rng):
    loop = _nine_loop(rng)
    return [_joined(loop, _bezier((0.655, 0.32), (0.67, 0.6), (0.62, 0.84), (0.4, 0.86)))]


STYLES: dict[int, dict[str, Style]] = {
    0: {"oval": _zero(0.2, 0.33, 0), "tilted": _zero(0.19, 0.32, 18),
        "narrow": _zero(0.12, 0.35, 4), "round": _zero(0.27, 0.31, 0)},
    1: {"bare": _one_bare, "flag": _one_flag, "base": _one_base},
    2: {"plain": _two_plain, "loop": _two_loop},
    3: {"round": _three_round, "flat-top": _three_flat},
    4: {"open": _four_open, "closed": _four_closed},
    5: {"two-strokes": _five_two_strokes, "one-stroke": _five_one_stroke},
    6: {"curved": _six_curved, "straight": _six_straight},
    7: {"plain": _seven_plain, "crossbar": _seven_crossbar, "serif": _seven_serif},
    8: {"one-stroke": _eight_one_stroke, "two-loops": _eight_two_loops},
    9: {"straight": _nine_straight, "curved": _nine_curved},
}


# ---- a writer's hand ----------------------------------------------------------------

@dataclass(frozen=True)
class Hand:
    """How one writer distorts the model shapes; all of it drawn from a seeded rng."""

    slant: float          # horizontal shear: +0.2 leans the top 0.1 units to the right
    aspect: float         # width multiplier
    size: float           # overall scale of the 0.7-unit-tall model digit
    rotation: float       # degrees, clockwise
    offset: tuple[float, float]
    wobble: float         # amplitude of the slow drift along the path (unit coordinates)
    wavelength: float     # path length of one wobble period
    joins: float          # how far stroke ends overshoot (+) or stop short (-) at most
    width: float          # pen width as a fraction of the drawing surface's side


def random_hand(rng: np.random.Generator) -> Hand:
    return Hand(slant=rng.uniform(-0.15, 0.35), aspect=rng.uniform(0.8, 1.25),
                size=rng.uniform(0.75, 1.05), rotation=rng.uniform(-8, 8),
                offset=(rng.uniform(-0.06, 0.06), rng.uniform(-0.04, 0.04)),
                wobble=rng.uniform(0.003, 0.014), wavelength=rng.uniform(0.35, 0.9),
                joins=rng.uniform(0.0, 0.035), width=rng.uniform(0.05, 0.11))


def digit_strokes(digit: int, rng: np.random.Generator, style: str | None = None,
                  hand: Hand | None = None) -> list[Path]:
    """The strokes of `digit` in `style` (random if None) by `hand` (random if None)."""
    if digit not in STYLES:
        raise ValueError(f"digit must be 0 to 9, got {digit!r}")
    styles = STYLES[digit]
    if style is None:
        style = str(rng.choice(sorted(styles)))
    if style not in styles:
        raise ValueError(f"style for {digit} must be one of {', '.join(styles)}, got {style!r}")
    hand = hand or random_hand(rng)
    strokes = [_resampled(stroke) for stroke in styles[style](rng)]
    strokes = [_wobbled(_loose_ends(stroke, hand, rng), hand, rng) for stroke in strokes]
    return [np.clip(_placed(stroke, hand), 0.02, 0.98) for stroke in strokes]


def _resampled(stroke: Path) -> Path:
    """Evenly spaced points, so wobble and overshoot act per length, not per point."""
    lengths = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))]
    count = max(2, int(lengths[-1] / SPACING) + 1)
    targets = np.linspace(0.0, lengths[-1], count)
    return np.stack([np.interp(targets, lengths, stroke[:, axis]) for axis in (0, 1)], axis=1)


def _loose_ends(stroke: Path, hand: Hand, rng: np.random.Generator) -> Path:
    """Overshoot (extend along the end direction) or stop short, at each end."""
    for end in (0, -1):
        change = rng.uniform(-hand.joins, hand.joins)
        if change < 0:
            drop = min(int(-change / SPACING), len(stroke) // 4)
            stroke = stroke[drop:] if end == 0 else stroke[:len(stroke) - drop]
        else:
            inner = stroke[1] if end == 0 else stroke[-2]
            direction = stroke[end] - inner
            direction /= np.linalg.norm(direction) or 1.0
            extra = stroke[end] + direction * change
            stroke = np.vstack([extra, stroke]) if end == 0 else np.vstack([stroke, extra])
    return stroke


def _wobbled(stroke: Path, hand: Hand, rng: np.random.Generator) -> Path:
    """A smooth drift along the path: two slow sinusoids per axis with random phases."""
    along = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))]
    drift = np.zeros_like(stroke)
    for axis in (0, 1):
        for harmonic in (1.0, 2.3):
            phase = rng.uniform(0, 2 * np.pi)
            drift[:, axis] += hand.wobble / harmonic * np.sin(
                2 * np.pi * harmonic * along / hand.wavelength + phase)
    return stroke + drift


def _rotated(points: Path, degrees: float, centre=(0.5, 0.5)) -> Path:
    radians = np.radians(degrees)
    rotation = np.array([[np.cos(radians), -np.sin(radians)],
                         [np.sin(radians), np.cos(radians)]])
    return (points - centre) @ rotation.T + centre


def _placed(stroke: Path, hand: Hand) -> Path:
    """The hand's slant, width, rotation, size and position, about the centre."""
    x, y = stroke[:, 0] - 0.5, stroke[:, 1] - 0.5
    x = x * hand.aspect - hand.slant * y
    points = _rotated(np.stack([x, y], axis=1) + 0.5, hand.rotation) - 0.5
    return points * hand.size + 0.5 + np.asarray(hand.offset)


# ---- rendering into an array ------------------------------------------------------

def render_strokes(strokes: list[Path], size: int = 280, width: float = 18,
                   ink: int | tuple[int, ...] = 255,
                   background: int | tuple[int, ...] = 0, supersample: int = 4) -> np.ndarray:
    """Draw the strokes with a round pen: (size, size) uint8, or (size, size, channels)
    when `ink`/`background` are tuples. Drawn `supersample` times larger, then shrunk,
    for the soft edges a browser canvas gives."""
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[len(ink) if isinstance(ink, tuple) else 1]
    big = size * supersample
    image = Image.new(mode, (big, big), background)
    draw = ImageDraw.Draw(image)
    pen = width * supersample
    for stroke in strokes:
        points = [tuple(point) for point in np.asarray(stroke) * big]
        if len(points) > 1:
            draw.line(points, fill=ink, width=max(1, round(pen)))
        # A disc at every point: round caps and joins (PIL's own joints leave slivers).
        for x, y in points:
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=ink)
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS))


# A tidy writer: upright, MNIST-like proportions, steady line. For tests that need a digit
# any reasonable model reads.
NEAT_HAND = Hand(slant=0.1, aspect=1.0, size=0.95, rotation=0.0, offset=(0.0, 0.0),
                 wobble=0.004, wavelength=0.6, joins=0.01, width=0.075)


def paper_photo(strokes: list[Path], rng: np.random.Generator, *,
                size: tuple[int, int] = (640, 480), digit_side: int = 220) -> np.ndarray:
    """A phone-photo-like RGB picture of the strokes: dark ink, a smallish digit off-centre
    on uneven paper with a lighting gradient and sensor noise. (height, width, 3) uint8."""
    width, height = size
    digit = render_strokes(strokes, size=digit_side, width=0.06 * digit_side) / 255.0
    left = int(rng.integers(width // 8, width - digit_side - width // 8))
    top = int(rng.integers(height // 10, height - digit_side - height // 10))
    ink = np.zeros((height, width))
    ink[top:top + digit_side, left:left + digit_side] = digit
    rows, columns = np.mgrid[0:height, 0:width] / max(size)
    light = 0.78 + 0.12 * columns - 0.08 * rows                         # (height, width)
    paper = np.stack([light * tint for tint in (1.0, 0.97, 0.9)], axis=-1)
    pen = np.array([0.12, 0.13, 0.22])
    picture = paper * (1 - 0.9 * ink[..., None]) + pen * 0.9 * ink[..., None]
    picture += rng.normal(0.0, 0.02, picture.shape)
    return (np.clip(picture, 0, 1) * 255).astype(np.uint8)
