"""A seeded, varied set of digit pictures like the ones people draw and photograph: canvases,
transparent and light exports, paper photos, small digits in large frames, thick markers and
thin pens, written by messy hands (tests/support/messy_handwriting.py). Scoring models on it is left
to the callers (tests/engine/test_adaptability.py).

    samples = varied_set(seed=1, per_digit=14)    # 140 (picture, label, kind, ...) tuples

Seeds are mixed with a salt of this module's own, so no seed here repeats the streams of
tests/support/seed_custom_digits.py (seed 2024), and the set stays held out from custom_digits/.
"""

from __future__ import annotations

import io
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw
from scipy import ndimage

from tests.support.messy_handwriting import MessyHand, draw_ink, ink_box, messy_hand, messy_strokes

KINDS = ("canvas", "canvas-transparent", "export-light", "photo", "small-in-frame",
         "thick-marker", "thin-pen")
SALT = 0x7A11ED          # mixed into every seed: these streams are this module's own
WRITERS = 16             # hands per set; each digit is drawn by one of them


class Sample(NamedTuple):
    picture: np.ndarray  # uint8: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA
    label: int
    kind: str
    style: str
    writer: int
    ink: str             # what a caller knowing the source would pass to prepare_digit
    box: tuple[int, int, int, int]   # (top, left, bottom, right) around the ink


class Ink(NamedTuple):
    """A digit's ink coverage: a patch of a frame, at (top, left)."""

    coverage: np.ndarray   # (h, w) float32 in [0, 1]
    top: int
    left: int

    def in_frame(self, shape: tuple[int, int]) -> np.ndarray:
        frame = np.zeros(shape, np.float32)
        height, width = self.coverage.shape
        frame[self.top:self.top + height, self.left:self.left + width] = self.coverage
        return frame

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.top, self.left, self.top + self.coverage.shape[0],
                self.left + self.coverage.shape[1])


def varied_set(seed: int, per_digit: int, kinds: tuple[str, ...] = KINDS) -> list[Sample]:
    """`per_digit` pictures of each digit, the kinds taking turns (each digit starts at another
    kind, so per_digit >= len(kinds) gives every digit in every kind)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; kinds are {', '.join(KINDS)}")
    rng = np.random.default_rng([SALT, seed])
    pen_hands = [messy_hand(rng) for _ in range(WRITERS)]
    mouse_hands = [messy_hand(rng, mouse=True) for _ in range(WRITERS)]
    samples = []
    for digit in range(10):
        for number in range(per_digit):
            kind = kinds[(digit + number) % len(kinds)]
            writer = int(rng.integers(WRITERS))
            mouse = kind.startswith("canvas") or (kind == "export-light" and rng.random() < 0.5)
            hand = (mouse_hands if mouse else pen_hands)[writer]
            strokes, style = messy_strokes(digit, rng, hand)
            if not mouse:
                strokes = _perspective(strokes, rng)
            picture, ink, placed = SCENES[kind](strokes, hand, rng)
            samples.append(Sample(picture, digit, kind, style, writer, ink, placed.box))
    return samples


def _perspective(strokes, rng, amount: float = 0.25):
    """The strokes seen slightly from the side, as a phone held at an angle sees paper."""
    tilt_x, tilt_y = rng.uniform(-amount, amount, 2)
    result = []
    for path in strokes:
        x, y = path[:, 0] - 0.5, path[:, 1] - 0.5
        depth = 1 + tilt_x * x + tilt_y * y
        result.append(np.stack([x / depth, y / depth], axis=1) + 0.5)
    return result


# ---- screens: canvases and exports --------------------------------------------------

def _placed(strokes, shape, height, pen, hand: MessyHand, rng, touch=False, pressure=0.0,
            corner=False, even=False) -> Ink:
    """The strokes drawn `height` px tall (narrowed to fit) somewhere in a `shape` frame:
    anywhere, against an edge (`touch`, half the time) or near a corner (`corner`)."""
    left, top, right, bottom = ink_box(strokes)
    frame_height, frame_width = shape
    height = min(height, frame_height, (frame_width - pen) * (bottom - top) /
                 max(right - left, 1e-6) + pen)
    # Rounding can leave a digit narrowed to the frame a hair wider than it.
    width = min((height - pen) * (right - left) / max(bottom - top, 1e-6) + pen, frame_width)
    if corner:      # within the outer sixth of both sides
        x = rng.choice([rng.uniform(0.02, 0.16), rng.uniform(0.84, 0.98)]) * (frame_width - width)
        y = rng.choice([rng.uniform(0.02, 0.16), rng.uniform(0.84, 0.98)]) * (frame_height - height)
    else:
        x, y = rng.uniform(0, frame_width - width), rng.uniform(0, frame_height - height)
        if touch and rng.random() < 0.5:
            edge = rng.integers(4)
            x = (0.0 if edge == 0 else frame_width - width) if edge < 2 else x
            y = (0.0 if edge == 2 else frame_height - height) if edge >= 2 else y
    # Drawn into a patch just around the digit: a whole 3000 px frame would be slow.
    patch_left, patch_top = int(x), int(y)
    patch_shape = (min(frame_height, int(np.ceil(y + height)) + 1) - patch_top,
                   min(frame_width, int(np.ceil(x + width)) + 1) - patch_left)
    coverage = draw_ink(strokes, patch_shape, (x - patch_left, y - patch_top, height), pen,
                        0.0 if even else hand.unevenness, rng, pressure)
    return Ink(coverage, patch_top, patch_left)


def _canvas_ink(strokes, hand: MessyHand, rng, side: int = 280) -> Ink:
    """A digit drawn on a `side` px canvas: usually large, sometimes tiny, sometimes touching
    the frame; the pen is the dashboard slider's (default 18 px)."""
    size_draw = rng.random()
    height = (rng.uniform(55, 100) if size_draw < 0.15 else rng.uniform(262, side)
              if size_draw < 0.3 else rng.uniform(140, 250))
    pen = 18.0 if rng.random() < 0.5 else rng.uniform(7, 36)
    pen = min(pen, 0.17 * height)
    return _placed(strokes, (side, side), height, pen, hand, rng,
                   touch=size_draw >= 0.15 and rng.random() < 0.4)


def _canvas(strokes, hand, rng):
    """The dashboard's canvas: opaque black, white ink."""
    placed = _canvas_ink(strokes, hand, rng)
    coverage = np.rint(placed.in_frame((280, 280)) * 255).astype(np.uint8)
    rgba = np.full(coverage.shape + (4,), 255, np.uint8)
    rgba[..., :3] = coverage[..., None]
    return rgba, "light", placed


def _canvas_transparent(strokes, hand, rng):
    """Another drawing app's export: transparent background, ink of any colour."""
    placed = _canvas_ink(strokes, hand, rng)
    colours = [(0, 0, 0), (255, 255, 255), (20, 60, 200), (200, 30, 30), (30, 120, 40),
               tuple(int(c) for c in rng.integers(0, 256, 3))]
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = colours[int(rng.integers(len(colours)))]
    rgba[..., 3] = np.rint(placed.in_frame((280, 280)) * 255).astype(np.uint8)
    return rgba, "auto", placed


def _export_light(strokes, hand, rng):
    """Dark ink on a light opaque background, saved as RGBA by a paint program."""
    side = int(rng.integers(200, 900))
    shape = (side, int(side * rng.uniform(0.8, 1.3)))
    height = rng.uniform(0.45, 0.95) * side
    placed = _placed(strokes, shape, height, rng.uniform(0.05, 0.14) * height, hand, rng,
                     touch=True)
    mask = placed.in_frame(shape)[..., None]
    background = rng.uniform(225, 255, 3) if rng.random() < 0.7 else np.full(3, 255.0)
    rgb = background + (rng.uniform(0, 90, 3) - background) * mask
    alpha = np.full(shape + (1,), 255.0)
    return np.rint(np.concatenate([rgb, alpha], axis=2)).astype(np.uint8), "auto", placed


# ---- paper and photos ---------------------------------------------------------------

INKS = {"ballpoint": (0.14, 0.18, 0.45), "black": (0.07, 0.07, 0.09), "pencil": (0.42, 0.42, 0.45),
        "red": (0.65, 0.1, 0.1), "green": (0.1, 0.4, 0.2)}


def _photo_of(ink_for, rng, long_side: int, ink: str, grey: bool = False,
              lines: bool = True) -> tuple[np.ndarray, str, Ink]:
    """A phone photo of paper with the Ink `ink_for(shape)` returns: lighting gradient,
    vignette, sometimes a shadow, ruled or margin lines, blur, sensor noise, JPEG.
    Whole-frame work is done by Pillow in 8 bits (a 3000 px frame in numpy floats is slow);
    only the patch around the digit is blended in floats."""
    portrait = rng.random() < 0.5
    short_side = int(long_side * rng.choice([0.75, 0.5625, 0.8]))
    shape = (long_side, short_side) if portrait else (short_side, long_side)
    light = _lighting(shape, rng)                                   # "L", 255 = full light
    if lines and rng.random() < 0.45:
        light = ImageChops.multiply(light, _ruling(shape, rng))
    paper = [rng.uniform(0.86, 0.97), rng.uniform(0.84, 0.95), rng.uniform(0.74, 0.92)]
    bands = [light.point([round(level * tint) for level in range(256)]) for tint in paper]
    placed = ink_for(shape)
    coverage = placed.coverage
    blur = rng.uniform(0.0, 1.6) * long_side / 1200         # focus, shake: the ink's edges soften
    if blur > 0.3:
        coverage = ndimage.gaussian_filter(coverage, blur)
    box = (placed.left, placed.top, placed.left + coverage.shape[1],
           placed.top + coverage.shape[0])
    lit = np.asarray(light.crop(box), dtype=np.float32)
    sigma = rng.uniform(2.5, 11.5)                          # sensor noise, of 255
    for band, ink_reflectance in zip(bands, INKS[ink]):
        patch = np.asarray(band.crop(box), dtype=np.float32)
        patch += (lit * ink_reflectance - patch) * coverage
        band.paste(Image.fromarray(np.rint(patch).astype(np.uint8)), box[:2])
    noise = _noise(shape, rng, sigma)
    bands = [ImageChops.add(band, ImageChops.offset(noise, 131 * number, 71 * number),
                            offset=-128) for number, band in enumerate(bands)]
    image = Image.merge("RGB", bands)
    image = image.convert("L") if grey else image
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(40, 91)))
    return np.asarray(Image.open(buffer)).copy(), "auto", placed


def _noise(shape, rng, sigma: float, tile: int = 509) -> Image.Image:
    """An "L" image of Gaussian noise of `sigma` about 128: a random tile repeated (a prime
    period, too long for the eye or the preprocessing to notice, and far faster). Shifted
    copies of it serve the colour bands."""
    block = Image.fromarray(np.clip(128 + sigma * rng.standard_normal((tile, tile)), 0, 255)
                            .astype(np.uint8))
    noise = Image.new("L", (shape[1], shape[0]))
    for top in range(0, shape[0], tile):
        for left in range(0, shape[1], tile):
            noise.paste(block, (left, top))
    return noise


def _lighting(shape, rng) -> Image.Image:
    """An "L" image of the light falling on the page: a gradient, a vignette, maybe a soft
    shadow; made small and enlarged, as light varies slowly."""
    small = (24, 32) if shape[0] < shape[1] else (32, 24)
    ys, xs = np.mgrid[0:small[0], 0:small[1]] / np.float32(max(small) - 1)
    angle = rng.uniform(0, 2 * np.pi)
    light = 1.0 - rng.uniform(0.05, 0.4) * (np.cos(angle) * xs + np.sin(angle) * ys)
    light *= 1 - rng.uniform(0, 0.35) * ((xs - 0.5) ** 2 + (ys - 0.5) ** 2) * 2
    if rng.random() < 0.35:       # a hand's or phone's shadow over part of the page
        edge_angle, where = rng.uniform(0, 2 * np.pi), rng.uniform(-0.2, 0.35)
        distance = np.cos(edge_angle) * (xs - 0.5) + np.sin(edge_angle) * (ys - 0.5) - where
        light *= 1 - rng.uniform(0.25, 0.5) / (1 + np.exp(-distance / 0.04))
    light *= rng.uniform(0.7, 1.05)
    small_image = Image.fromarray(np.clip(light * 255, 0, 255).astype(np.uint8))
    return small_image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)


def _ruling(shape, rng) -> Image.Image:
    """An "L" image of ruled paper's reflectance (255 = paper): faint lines, maybe a margin."""
    image = Image.new("L", (shape[1], shape[0]), 255)
    draw = ImageDraw.Draw(image)
    spacing = rng.uniform(0.06, 0.12) * max(shape)
    width = max(1, round(max(shape) / 900))
    tilt = np.tan(np.radians(rng.uniform(-3, 3))) * shape[1]
    shade = int(rng.integers(170, 215))
    for y in np.arange(rng.uniform(0, spacing) - abs(tilt), shape[0] + abs(tilt), spacing):
        draw.line([(0, y), (shape[1], y + tilt)], fill=shade, width=width)
    if rng.random() < 0.4:
        x = rng.uniform(0.05, 0.2) * shape[1]
        draw.line([(x, 0), (x, shape[0])], fill=int(rng.integers(150, 200)), width=width * 2)
    return image


def _photo(strokes, hand, rng):
    long_side = int(np.exp(rng.uniform(np.log(800), np.log(3000))))
    ink = str(rng.choice(["ballpoint", "black", "pencil", "ballpoint"]))

    def ink_for(shape):
        height = rng.uniform(0.3, 0.75) * min(shape)
        return _placed(strokes, shape, height, rng.uniform(0.035, 0.09) * height, hand, rng,
                       pressure=0.4 if ink == "pencil" else 0.15)
    return _photo_of(ink_for, rng, long_side, ink)


def _small_in_frame(strokes, hand, rng):
    """A small digit near a corner of a large picture: a screenshot or a photo."""
    long_side = int(rng.integers(1000, 2400))
    height = rng.uniform(0.06, 0.14) * long_side
    pen = rng.uniform(0.06, 0.13) * height
    if rng.random() < 0.5:
        return _photo_of(lambda shape: _placed(strokes, shape, height, pen, hand, rng,
                                               corner=True), rng, long_side, "black")
    shape = (int(long_side * 0.75), long_side)
    placed = _placed(strokes, shape, height, pen, hand, rng, corner=True)
    dark_theme = rng.random() < 0.4
    background, ink = (np.float32([14, 17, 23]), 245.0) if dark_theme else (np.float32(
        [255, 255, 255]), 20.0)
    rgb = np.empty(shape + (3,), np.uint8)
    rgb[...] = background.astype(np.uint8)
    top, left, bottom, right = placed.box
    patch = background + (ink - background) * placed.coverage[..., None]
    rgb[top:bottom, left:right] = np.rint(patch).astype(np.uint8)
    return rgb, "auto", placed


def _thick_marker(strokes, hand, rng):
    long_side = int(rng.integers(700, 1600))
    ink = str(rng.choice(["black", "ballpoint", "red", "green"]))

    def ink_for(shape):
        height = rng.uniform(0.45, 0.8) * min(shape)
        # A felt tip lays down one width whatever the pressure.
        return _placed(strokes, shape, height, rng.uniform(0.11, 0.16) * height, hand, rng,
                       even=True)
    return _photo_of(ink_for, rng, long_side, ink, lines=False)


def _thin_pen(strokes, hand, rng):
    """A fine pen: a grey scan or a photo; strokes 0.8-2% of the digit's height (a 0.25-0.6
    mm line on a 3 cm digit), never under 1.2 px."""
    long_side = int(rng.integers(900, 2200))

    def ink_for(shape):
        height = rng.uniform(0.25, 0.6) * min(shape)
        pen = max(1.2, rng.uniform(0.008, 0.02) * height)
        return _placed(strokes, shape, height, pen, hand, rng, pressure=0.2)
    return _photo_of(ink_for, rng, long_side, "black", grey=rng.random() < 0.5)


SCENES = {"canvas": _canvas, "canvas-transparent": _canvas_transparent,
          "export-light": _export_light, "photo": _photo, "small-in-frame": _small_in_frame,
          "thick-marker": _thick_marker, "thin-pen": _thin_pen}


# ---- looking at the set ---------------------------------------------------------------

def contact_sheet(samples: list[Sample], columns: int = 12, tile: int = 120) -> Image.Image:
    """Each sample's digit with some of its surroundings, shrunk into a `tile` px square
    (transparency shown over grey) and captioned with its label and kind: for a person to
    check that every digit reads as its label."""
    rows = -(-len(samples) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * (tile + 14)), (60, 60, 60))
    draw = ImageDraw.Draw(sheet)
    for index, sample in enumerate(samples):
        picture = Image.fromarray(sample.picture).convert("RGBA")
        backdrop = Image.new("RGBA", picture.size, (128, 128, 128, 255))
        picture = Image.alpha_composite(backdrop, picture).convert("RGB")
        top, left, bottom, right = sample.box
        half = max(bottom - top, right - left) * 0.65
        middle_y, middle_x = (top + bottom) / 2, (left + right) / 2
        picture = picture.crop((round(middle_x - half), round(middle_y - half),
                                round(middle_x + half), round(middle_y + half)))
        picture = picture.resize((tile - 4, tile - 4), Image.Resampling.LANCZOS)
        x, y = (index % columns) * tile, (index // columns) * (tile + 14)
        sheet.paste(picture, (x + 2, y + 2))
        draw.text((x + 2, y + tile), f"{sample.label} {sample.kind[:12]}", fill=(255, 255, 0))
    return sheet
