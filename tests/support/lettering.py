"""Digits in the kinds of writing the plain varied set (tests/support/varied_digits.py) leaves
out: strongly slanted script, hollow (outlined) lettering, very heavy strokes and hairlines,
from two sources: the project's own stroke generator (tests/support/messy_handwriting.py) and
real handwriting-style fonts from Debian's fonts-* packages. Each is put in a scene (a paper
photo, a clean scan, a drawing canvas). Scoring is left to callers (scripts/measure_varied.py).

    samples = lettering_set(seed=1, per_digit=8, fonts="tuning")

Honesty: the fonts are split once, by package, into a tuning set (looked at while the
preprocessing was developed) and a held-out set (never looked at, only measured); the same goes
for seeds (TUNING_SEEDS and HELD_OUT_SEEDS). The held-out fonts must be installed to be used:
`.ci/run` installs them; `available_fonts` says which are here. Two more groups serve the
digit detector (scripts/train_detector.py): "extra-letters", handwriting fonts whose letters
only join its training, and "validation", handwriting fonts it never trains on, so its
validation sees letters in unseen hands before the held-out measure does. A fifth,
"more-hands", gives the classifiers' fine-tune digits in more hands than the tuning fonts';
"validation" then chooses that fine-tune too. MORE_FONT_PACKAGES holds the three groups'
packages.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from engine.images.shape import stroke_width
from tests.support.messy_handwriting import draw_ink, messy_hand, messy_strokes
from tests.support.varied_digits import Ink, Sample, _photo_of

KINDS = ("slanted-script", "hollow", "heavy", "thin")
SALT = 0x1E77E2          # this module's own random streams
TUNING_SEEDS = range(1, 100)        # developed on these
HELD_OUT_SEEDS = range(100, 200)    # measured on these, never looked at
FONT_PACKAGES = ("fonts-bwht fonts-comic-neue fonts-humor-sans fonts-kaushanscript fonts-lobster "
                 "fonts-dkg-handwriting fonts-breip fonts-dancingscript fonts-ecolier-court "
                 "fonts-femkeklaver fonts-kristi fonts-rufscript fonts-leckerli-one "
                 "fonts-cabinsketch")
MORE_FONT_PACKAGES = ("fonts-isabella fonts-dustin fonts-joscelyn fonts-nanum-extra fonts-kiloji "
                      "fonts-aoyagi-soseki fonts-havana fonts-klee")
_TRUETYPE, _OPENTYPE = Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype")
FONTS = {
    "tuning": {
        "BecauseWeBuild": _OPENTYPE / "bwht/BecauseWeBuild-Regular.otf",
        "BecauseWeCreate": _OPENTYPE / "bwht/BecauseWeCreate-Regular.otf",
        "BecauseWeLearn": _OPENTYPE / "bwht/BecauseWeLearn-Regular.otf",
        "BecauseWeMentor": _OPENTYPE / "bwht/BecauseWeMentor-Regular.otf",
        "ComicNeue": _OPENTYPE / "comic-neue/ComicNeue-Regular.otf",
        "HumorSans": _TRUETYPE / "humor-sans/Humor-Sans.ttf",
        "KaushanScript": _OPENTYPE / "kaushanscript/KaushanScript-Regular.otf",
        "Lobster": _OPENTYPE / "lobster/lobster.otf",
        "dkg": _TRUETYPE / "fifthhorseman/dkg.ttf",
    },
    "held-out": {
        "Breip": _TRUETYPE / "breip/Breip.ttf",
        "DancingScript": _OPENTYPE / "dancingscript/DancingScript-Regular.otf",
        "Ecolier": _TRUETYPE / "ecolier-court/Ecolier-court.ttf",
        "FemkeKlaver": _TRUETYPE / "femkeklaver/femkeklaver.ttf",
        "Kristi": _TRUETYPE / "kristi/Kristi.ttf",
        "Rufscript": _TRUETYPE / "rufscript/Rufscript010.ttf",
        "LeckerliOne": _TRUETYPE / "leckerli-one/LeckerliOne-Regular.ttf",
        "CabinSketch": _TRUETYPE / "cabinsketch/CabinSketch-Regular.ttf",
        "BecauseWeConnect": _OPENTYPE / "bwht/BecauseWeConnect-Regular.otf",
        "BecauseWeOrganize": _OPENTYPE / "bwht/BecauseWeOrganize-Regular.otf",
    },
    # One script and one or two casual hands on each side, as the held-out group mixes both.
    "extra-letters": {
        "Isabella": _TRUETYPE / "isabella/Isabella.ttf",
        "DomesticManners": _TRUETYPE / "dustin/Domestic_Manners.ttf",
        "Joscelyn": _OPENTYPE / "joscelyn/Joscelyn-Regular.otf",
    },
    # More hands for the classifiers' fine-tune (scripts/make_lettering_digits.py): the
    # extra-letters three and six more, casual pens and brushes, none from a held-out package.
    "more-hands": {
        "Isabella": _TRUETYPE / "isabella/Isabella.ttf",
        "DomesticManners": _TRUETYPE / "dustin/Domestic_Manners.ttf",
        "Joscelyn": _OPENTYPE / "joscelyn/Joscelyn-Regular.otf",
        "NanumPen": _TRUETYPE / "nanum/NanumPen.ttf",
        "NanumBrush": _TRUETYPE / "nanum/NanumBrush.ttf",
        "NanumBarunpen": _TRUETYPE / "nanum/NanumBarunpenR.ttf",
        "Kiloji": _TRUETYPE / "kiloji/kiloji.ttf",
        "AoyagiSoseki": _TRUETYPE / "aoyagi-soseki/aoyagi-soseki.ttf",
        "ElAbogadoLoco": _TRUETYPE / "dustin/El_Abogado_Loco.ttf",
    },
    "validation": {
        "Havana": _OPENTYPE / "havana/Havana-Regular.otf",
        "KleeOne": _TRUETYPE / "klee/KleeOne-Regular.ttf",
        "ItWasntMe": _TRUETYPE / "dustin/It_wasn_t_me.ttf",
    },
}
# Each group's own random stream; tuning and held-out keep the streams they always had.
FONT_STREAMS = {"tuning": 0, "held-out": 1, "extra-letters": 2, "validation": 3,
                "more-hands": 4}
SCENE_NAMES = ("photo", "scan", "canvas")


def available_fonts(which: str) -> dict[str, Path]:
    """The fonts of `which` (a FONTS group) installed on this machine."""
    if which not in FONTS:
        raise ValueError(f"unknown font group {which!r}; groups are {', '.join(FONTS)}")
    return {name: path for name, path in FONTS[which].items() if path.exists()}


def lettering_set(seed: int, per_digit: int, fonts: str = "tuning",
                  kinds: tuple[str, ...] = KINDS) -> list[Sample]:
    """`per_digit` pictures of each digit, the kinds taking turns; about half from the
    stroke generator and half from fonts (`fonts`: a FONTS group). A Sample's
    `style` names the source: "strokes" or "font <name>"."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; kinds are {', '.join(KINDS)}")
    faces = available_fonts(fonts)
    rng = np.random.default_rng([SALT, seed, FONT_STREAMS[fonts]])
    samples = []
    for digit in range(10):
        for number in range(per_digit):
            kind = kinds[(digit + number) % len(kinds)]
            # Thin lettering from a font would be a font eroded to a hairline, not a pen.
            use_font = bool(faces) and kind != "thin" and rng.random() < 0.5
            source = str(rng.choice(sorted(faces))) if use_font else "strokes"
            scene = str(rng.choice(SCENE_NAMES))
            height = _scene_height(scene, kind, rng)
            coverage = (_font_coverage(faces[source], digit, height, kind, rng) if use_font
                        else _stroke_coverage(digit, height, kind, rng))
            picture, ink, placed = SCENES[scene](coverage, rng)
            style = f"font {source}" if use_font else "strokes"
            samples.append(Sample(picture, digit, kind, style, number, ink, placed.box))
    return samples


# ---- the digit's ink ------------------------------------------------------------------

def _stroke_coverage(digit: int, height: float, kind: str, rng) -> np.ndarray:
    """The stroke generator's digit, `height` px tall, written as `kind` asks."""
    hand = messy_hand(rng)
    if kind == "slanted-script":
        hand = _with(hand, slant=rng.uniform(0.5, 0.9) * (1 if rng.random() < 0.85 else -1),
                     rotation=rng.uniform(-6, 6))
    strokes, _ = messy_strokes(digit, rng, hand)
    pen_share = {"slanted-script": rng.uniform(0.05, 0.11), "hollow": rng.uniform(0.14, 0.22),
                 "heavy": rng.uniform(0.18, 0.27), "thin": rng.uniform(0.004, 0.009)}[kind]
    pen = max(1.0, pen_share * height)
    left, top, right, bottom = _box(strokes)
    width = (height - pen) * (right - left) / max(bottom - top, 1e-6) + pen
    shape = (int(np.ceil(height)) + 2, int(np.ceil(width)) + 2)
    coverage = draw_ink(strokes, shape, (1.0, 1.0, height), pen,
                        0.0 if kind in ("hollow", "heavy") else hand.unevenness, rng)
    return _hollowed(coverage, height, rng) if kind == "hollow" else coverage


def _font_coverage(path: Path, digit: int, height: float, kind: str, rng) -> np.ndarray:
    """The font's glyph of `digit`, its ink `height` px tall, written as `kind` asks."""
    glyph = glyph_coverage(path, str(digit), height)
    if kind == "slanted-script":
        glyph = _sheared(glyph, rng.uniform(0.35, 0.7))
    elif kind in ("hollow", "heavy"):
        target = height * (rng.uniform(0.14, 0.2) if kind == "hollow" else rng.uniform(0.2, 0.28))
        glyph = _emboldened(glyph, target)
        if kind == "hollow":
            glyph = _hollowed(glyph, height, rng)
    return glyph


def glyph_coverage(path: Path, character: str, height: float) -> np.ndarray:
    """The font's glyph of `character`, its ink `height` px tall."""
    glyph = _glyph(str(path), character)
    return _resize(glyph, height / glyph.shape[0])


@lru_cache(maxsize=256)
def _glyph(path: str, character: str) -> np.ndarray:
    """The glyph's ink coverage at 200 px of font size, cropped to its ink."""
    font = ImageFont.truetype(path, 200)
    # A wide canvas: some fonts' digits reach far past their nominal size.
    image = Image.new("L", (700, 700), 0)
    ImageDraw.Draw(image).text((350, 350), character, fill=255, font=font, anchor="mm")
    ink = np.asarray(image, np.float32) / 255
    rows, cols = np.flatnonzero(ink.max(axis=1) > 0.1), np.flatnonzero(ink.max(axis=0) > 0.1)
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _hollowed(coverage: np.ndarray, height: float, rng) -> np.ndarray:
    """Outlined lettering: only a line along the inside of the ink's edge is kept."""
    solid = coverage > 0.5
    line = max(1.0, rng.uniform(0.02, 0.045) * height)
    inside = ndimage.distance_transform_edt(solid)
    return (solid & (inside <= line)).astype(np.float32)


def _emboldened(coverage: np.ndarray, stroke: float) -> np.ndarray:
    """The ink grown (never shrunk) so its mean stroke width is about `stroke` px."""
    solid = coverage > 0.5
    grow = (stroke - stroke_width(solid)) / 2
    if grow <= 0:
        return coverage
    pad = int(np.ceil(grow)) + 1
    solid = np.pad(solid, pad)
    return (ndimage.distance_transform_edt(~solid) <= grow).astype(np.float32)


def _sheared(coverage: np.ndarray, shear: float) -> np.ndarray:
    """Leaned right by `shear` (the top moves right by shear x height)."""
    height, width = coverage.shape
    extra = int(np.ceil(abs(shear) * height))
    # output (r, c) reads input (r, c - shear * (height - r) + offset)
    matrix = np.array([[1.0, 0.0], [shear, 1.0]])
    offset = (0.0, -shear * height)
    return ndimage.affine_transform(coverage, matrix, offset=offset,
                                    output_shape=(height, width + extra), order=1)


def _resize(coverage: np.ndarray, factor: float) -> np.ndarray:
    height, width = coverage.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    return np.clip(np.asarray(Image.fromarray(coverage).resize(size, resample)), 0, 1)


def _box(strokes):
    points = np.vstack(strokes)
    (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
    return left, top, right, bottom


def _with(hand, **changes):
    return replace(hand, **changes)


# ---- scenes -----------------------------------------------------------------------------

def _scene_height(scene: str, kind: str, rng) -> float:
    if scene == "canvas":
        return rng.uniform(140, 240)
    # Hairlines are at their thinnest on large pictures.
    return rng.uniform(300, 700) if kind == "thin" else rng.uniform(150, 450)


def _placed(coverage: np.ndarray, shape: tuple[int, int], rng) -> Ink:
    coverage = coverage[:shape[0], :shape[1]]
    top = int(rng.integers(0, shape[0] - coverage.shape[0] + 1))
    left = int(rng.integers(0, shape[1] - coverage.shape[1] + 1))
    return Ink(coverage.astype(np.float32), top, left)


def _frame(coverage: np.ndarray, rng, low: float = 1.45, high: float = 2.4) -> tuple[int, int]:
    side = int(max(coverage.shape) * rng.uniform(low, high))
    return side, int(side * rng.uniform(0.75, 1.33))


def _photo(coverage, rng):
    long_side = max(_frame(coverage, rng))
    ink = str(rng.choice(["ballpoint", "black", "pencil"]))

    def ink_for(shape):
        return _placed(coverage, shape, rng)
    return _photo_of(ink_for, rng, max(long_side, int(max(coverage.shape) / 0.5) + 8), ink)


def _scan(coverage, rng):
    """A clean scan: white paper, dark grey ink, a little noise; grey."""
    shape = _frame(coverage, rng)
    placed = _placed(coverage, shape, rng)
    paper, ink = rng.uniform(225, 255), rng.uniform(0, 70)
    picture = paper + (ink - paper) * placed.in_frame(shape)
    picture += rng.normal(0, 3, shape)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8), "auto", placed


def _canvas(coverage, rng):
    """The dashboard's canvas: 280 px, white ink on black, RGBA."""
    factor = min(1.0, 270 / max(coverage.shape))
    if factor < 1:
        coverage = _resize(coverage, factor)
    placed = _placed(coverage, (280, 280), rng)
    grey = np.rint(placed.in_frame((280, 280)) * 255).astype(np.uint8)
    rgba = np.full((280, 280, 4), 255, np.uint8)
    rgba[..., :3] = grey[..., None]
    return rgba, "light", placed


SCENES = {"photo": _photo, "scan": _scan, "canvas": _canvas}
