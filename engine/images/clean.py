"""The picture-level steps of preprocessing: greyscale and transparency, the ink's polarity,
uneven light and ruled lines; finding and framing the digit is left to engine.images.preprocess."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from engine.images.imageio import MAX_SIDE, image_to_rgba, unit_range

WORK_PIXELS = 640 * 640  # pictures over twice this are analysed shrunk to it: enough for a digit,
                         # fast, and never a near-1 resampling that would only blur
POLARITY_SIDE = 96      # px: the view polarity is judged on (noise averaged away)
FINE_SHARE = 0.0001     # of the work-size picture: the darkest few pixels, a small digit's
                        # strokes, when it is too small for the polarity view
LEVEL_SIDE = 200        # px: the view the paper's light is estimated on
LINE_VIEW = 320         # px: the view ruled lines are looked for on
LINE_SPAN = 0.6         # of the page's width (height): a thin straight run this long is a line
STROKE_FREE = 0.3       # of the smaller side: wider than any stroke (a thick marker's are
                        # ~0.15 of a digit), so an opening this wide leaves only the light


class NoDigitFound(ValueError):
    """The picture holds no ink that could be a digit; never predict on it."""

    def __init__(self, why: str):
        super().__init__(f"no digit found: {why} -- draw or photograph one digit, "
                         "filling most of the picture")
        self.why = why


def greyscale(image: Any, ink: str) -> tuple[np.ndarray, str | None, str]:
    """Grey float32 at work size, alpha composited; the ink's polarity if it is known."""
    values = image_to_rgba(image, MAX_SIDE) if isinstance(image, Image.Image) else np.asarray(image)
    if values.ndim == 3 and values.shape[2] == 1:
        values = values[..., 0]
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) picture, got {values.shape}")
    if values.size == 0:
        raise NoDigitFound("the picture is empty")
    height, width = values.shape[:2]
    if values.dtype == np.uint8 and height * width > 2 * WORK_PIXELS:
        # Shrink 8-bit pictures before going to floats: a 12-megapixel photo then takes a few ms.
        # (Pillow premultiplies alpha when it resizes RGBA and LA, so edges stay clean.)
        work_height, work_width = _fit(values.shape, WORK_PIXELS)
        values = np.asarray(Image.fromarray(values).resize((work_width, work_height),
                                                           Image.Resampling.BOX))
    values = unit_range(values)
    known_ink = None if ink == "auto" else ink
    note = f"{width}x{height} px"
    if values.ndim == 2:
        grey = values
    else:
        colour = values[..., :-1] if values.shape[2] in (2, 4) else values
        # ITU-R 601 luma, as Pillow's "L" conversion.
        luma = np.float32([0.299, 0.587, 0.114])
        grey = colour[..., 0] if colour.shape[2] == 1 else colour @ luma
        if values.shape[2] in (2, 4) and values[..., -1].min() < 0.98:
            grey, known_ink, note = _composite(grey, values[..., -1], known_ink, note)
    if grey.size > 2 * WORK_PIXELS:
        grey = _resize(grey, _fit(grey.shape, WORK_PIXELS))
    if grey.shape != (height, width):
        note += f", analysed at {grey.shape[1]}x{grey.shape[0]}"
    return np.clip(grey, 0, 1).astype(np.float32), known_ink, note


def _composite(grey: np.ndarray, alpha: np.ndarray, known_ink: str | None, note: str
               ) -> tuple[np.ndarray, str | None, str]:
    """Flatten transparency. On a transparent background (a drawing canvas) the ink is where
    the picture is opaque, whatever its colour; elsewhere transparent holes read as background."""
    if float(alpha.max()) <= 0:
        raise NoDigitFound("the picture is fully transparent")
    if float(np.median(_border(alpha))) < 0.5:
        return alpha, "light", f"{note}; transparent background: the opaque strokes are the ink"
    background = float(np.median(grey[alpha >= 0.5])) if (alpha >= 0.5).any() else 1.0
    return (grey * alpha + background * (1.0 - alpha), known_ink,
            f"{note}; transparent parts filled with the background's grey {background:.2f}")


def polarity(grey: np.ndarray, known_ink: str | None, told: bool
              ) -> tuple[np.ndarray, bool, str]:
    """Light ink on dark: invert dark ink, judged by which side holds more of the strokes."""
    if known_ink is not None:
        dark_ink, why = known_ink == "dark", "as told" if told else "transparent background"
    else:
        # The paper's light is taken out first (a median keeps the edges of shadows and drops
        # strokes); what is left is the ink, far above or below zero, and noise either side.
        small = _shrunk(grey, POLARITY_SIDE)
        background = _median_background(small)
        flat = small - background
        # Where the light itself changes fast (a shadow's edge) the estimate lags: not judged.
        if min(small.shape) > 1:
            steady = np.hypot(*np.gradient(background)) < 0.02
            flat = flat[steady] if steady.mean() > 0.25 else flat
        # The strongest few pixels either side decide: ink is far from the paper, while what
        # is left of the light is faint, however much of the picture it covers.
        dark, light = _tails(flat, 0.005)
        # Light ink must stand out clearly: pictures of it are screens and canvases, flat and
        # with nothing darker than their background, while paper under uneven light (the
        # common photo) may show some lighter patches too.
        dark_ink = 3 * dark > light
        why = _polarity_why(dark, light)
        if not dark_ink and _small_dark_ink(grey):
            # A small digit in a large photo is a few pixels of this view, where a lamp's
            # bright patch outweighs it; at full detail its strokes lie far below the paper.
            dark_ink = True
            why += (", but at full detail the darkest few pixels lie over 3x as far below "
                    "their surroundings as the lightest few above")
    if dark_ink:
        return 1.0 - grey, True, f"dark ink on a light background ({why}): inverted"
    return grey, False, f"light ink on a dark background ({why}): kept"


def _small_dark_ink(grey: np.ndarray) -> bool:
    """Ink too small for the polarity view: at the work size, the darkest few pixels lie over
    three times as far below their surroundings (a mean over 2% of the picture, which follows
    any lighting) as the lightest few lie above theirs. Light ink can never pass: its strokes'
    edges stand at least half its contrast above their surroundings, and nothing lies below
    by more than that contrast; noise is even both ways."""
    if max(grey.shape) <= 2 * POLARITY_SIDE:
        return False
    window = max(3, round(0.02 * max(grey.shape)))
    dark, light = _tails(grey - ndimage.uniform_filter(grey, window, mode="reflect"),
                         FINE_SHARE)
    return dark > 3 * light


def _tails(flat: np.ndarray, share: float) -> tuple[float, float]:
    """(dark, light): how far the darkest and the lightest `share` of the pixels (at least
    four) lie, summed, below and above the median of `flat` (a picture less its paper)."""
    values = np.sort(flat.ravel())
    count = max(4, round(share * values.size))
    middle = float(np.median(values))
    return (float(count * middle - values[:count].sum()),
            float(values[-count:].sum() - count * middle))


def _polarity_why(dark: float, light: float) -> str:
    """The polarity decision in words: how much farther the strongest pixels lie below the
    paper than above (or the reverse), capped, as a clean picture has nothing on one side."""
    if max(dark, light) <= 1e-6:
        return "nothing stands out from the paper"
    below = dark >= light
    stronger, weaker = (dark, light) if below else (light, dark)
    ratio = stronger / weaker if weaker > 0 else np.inf
    # Truncated, not rounded: 2.98x is not shown as the 3x the decision compares with.
    amount = "over 100x" if ratio > 100 else f"{np.floor(ratio * 10) / 10:.1f}x"
    side, other = ("below", "above") if below else ("above", "below")
    why = f"the strongest ink-like pixels are {amount} as far {side} the paper as {other}"
    if not below and 3 * dark > light:
        why += ", short of the 3x light ink needs"
    return why


def level(bright: np.ndarray, inverted: bool) -> tuple[np.ndarray, str]:
    """Subtract the large-scale background (uneven lighting), leaving ink above ~0 (signed)."""
    background = _opened_background(bright)
    low, high = float(background.min()), float(background.max())
    note = (f"background flat ({low:.2f}): nothing to remove" if high - low < 0.02 and low < 0.02
            else f"subtracted a smooth background ranging {low:.2f}-{high:.2f}")
    residual = bright - background
    if inverted:
        # Dark ink on paper: ink darkens the paper by a fraction of the local light, so divide
        # by the local paper brightness (1 - background) to even out shadowed parts.
        residual = residual / np.maximum(1.0 - background, 0.2)
        note += ", divided by the paper's local brightness" if high > 0.02 else ""
        residual, removed = _without_ruled_lines(residual)
        note += f"; removed ruled lines ({removed:.1%} of the page)" if removed else ""
    return residual, note


def _without_ruled_lines(residual: np.ndarray) -> tuple[np.ndarray, float]:
    """Paper's ruled and margin lines set to the paper: thin, straight, near-horizontal (or
    vertical) runs across most of the page, which no stroke of a digit is all at once. Ink
    crossing a line is kept where it is darker than the line. Returns the share removed."""
    if max(residual.shape) < 200:         # a thumbnail, not a photographed page
        return residual, 0.0
    view = _shrunk(residual, LINE_VIEW)
    noise = 1.4826 * float(np.median(np.abs(view - np.median(view))))
    threshold = max(3 * noise, 0.02)
    reach = max(1, round(max(residual.shape) / 300))     # the view's pixel, and a tilt's error
    remove = np.zeros(residual.shape, dtype=bool)
    # Ruled lines, then margins: each kind is removed up to twice its own darkness.
    for found in (_straight_runs(view, threshold), _straight_runs(view.T, threshold).T):
        if not found.any():
            continue
        band = ndimage.binary_dilation(_resize(found.astype(np.float32), residual.shape) > 0.1,
                                       iterations=reach)
        on_line = residual[band]
        on_line = on_line[on_line > threshold]
        line_level = float(np.median(on_line)) if on_line.size else threshold
        remove |= band & (residual < 2 * line_level)
    if not remove.any():
        return residual, 0.0
    return np.where(remove, 0.0, residual).astype(np.float32), float(remove.mean())


def _straight_runs(view: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels of thin lines across LINE_SPAN of the view's width (and at least 0.3 of its
    larger side), tilted up to 4 degrees; ink crossing them may break them anywhere."""
    height, width = view.shape
    span = max(LINE_SPAN * width, 0.3 * max(view.shape))
    if span > width:
        return np.zeros(view.shape, dtype=bool)
    # Thinner than 1% of the page across, and allowed to drift a pixel, so a tilted line
    # stays on one row of the half-degree shears tried below.
    across = max(2, round(0.01 * max(view.shape)))
    thin = (view - ndimage.grey_opening(view, size=(across, 1))) > threshold
    thin = ndimage.maximum_filter1d(thin, 3, axis=0)
    rows, columns = np.nonzero(thin)
    found = np.zeros(view.shape, dtype=bool)
    for degrees in np.arange(-4.0, 4.01, 0.5):
        drop = np.rint(np.tan(np.radians(degrees)) * (columns - width / 2)).astype(np.intp)
        sheared_rows = rows - drop + width            # >= 0, as tan(4 deg) * width < width
        counts = np.bincount(sheared_rows, minlength=height + 2 * width)
        on_line = counts[sheared_rows] >= span
        found[rows[on_line], columns[on_line]] = True
    return found


def _opened_background(bright: np.ndarray) -> np.ndarray:
    """The light without the ink: a grey opening (erosion, then dilation) wider than any
    stroke, on a shrunk copy. It removes bright strokes whatever their share of the picture
    and keeps gradients, vignettes and the edges of shadows where they are."""
    # Lightly blurred first: an erosion picks the darkest noise, and would leave plateaus.
    small = _shrunk(bright, LEVEL_SIDE)
    small = ndimage.gaussian_filter(small, min(small.shape) / 150)
    window = max(3, round(STROKE_FREE * min(small.shape)))
    # Extended by point reflection, so light rising towards an edge (a vignette) keeps
    # rising: a plain opening would flatten the last half window into a false frame of ink.
    # What is reflected is blurred, or ink near the edge would come back as dark holes.
    blurred = ndimage.uniform_filter(small, window // 2 + 1, mode="nearest")
    padded = np.pad(blurred, window, mode="reflect", reflect_type="odd")
    padded[window:-window, window:-window] = small
    opened = ndimage.grey_opening(padded, size=(window, window))[window:-window,
                                                                  window:-window]
    return _resize(opened, bright.shape) if opened.shape != bright.shape else opened


def _median_background(image: np.ndarray) -> np.ndarray:
    """A polarity-blind estimate of the paper: a median over a window as wide as the picture,
    from a thumbnail (strokes are a minority in it; a median keeps straight step edges)."""
    small = _shrunk(image, 32)
    window = max(1, min(small.shape), max(small.shape) // 2)    # a strip: along it, too
    estimate = ndimage.median_filter(small, size=window, mode="nearest")
    return _resize(estimate, image.shape) if estimate.shape != image.shape else estimate


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    """`image` area-averaged so its larger side is at most `side` px (noise averages out)."""
    if max(image.shape) <= side:
        return image
    scale = side / max(image.shape)
    return _resize(image, (max(1, round(image.shape[0] * scale)),
                           max(1, round(image.shape[1] * scale))))


def _border(image: np.ndarray) -> np.ndarray:
    """The outer ring of pixels, 1/20 of the smaller side thick (the whole of a tiny picture)."""
    thick = max(1, min(image.shape) // 20)
    if min(image.shape) <= 2 * thick:
        return image.ravel()
    inner = image[thick:-thick]
    return np.concatenate([image[:thick].ravel(), image[-thick:].ravel(),
                           inner[:, :thick].ravel(), inner[:, -thick:].ravel()])


def _fit(shape: tuple[int, ...], pixels: int) -> tuple[int, int]:
    """(height, width) scaled, aspect kept, to hold about `pixels` pixels."""
    factor = np.sqrt(pixels / (shape[0] * shape[1]))
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def _resize(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    resample = Image.Resampling.BOX if shape[0] < image.shape[0] else Image.Resampling.BILINEAR
    resized = Image.fromarray(image.astype(np.float32)).resize((shape[1], shape[0]), resample)
    return np.asarray(resized, dtype=np.float32)
