"""Any picture of a digit -> MNIST's 28x28 (light ink on black, 20 px box, centred by mass), keeping
each step for display; decoding files is left to engine.imageio, predicting to the models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image
from scipy import ndimage

from engine.imageio import MAX_SIDE, image_to_rgba, read_image, unit_range

FIELD = 28              # MNIST's image side
BOX = 20                # MNIST scales each digit so its larger side is this many pixels
WORK_PIXELS = 640 * 640  # pictures over twice this are analysed shrunk to it: enough for a digit,
                         # fast, and never a near-1 resampling that would only blur
INK_CHOICES = ("auto", "light", "dark")
THIN_STROKE = 1.2       # px at 20 px scale, below all but ~0.5% of MNIST's (median ~2.6)
TARGET_STROKE = 2.0     # what a too-thin stroke is widened to
POLARITY_SIDE = 96      # px: the view polarity is judged on (noise averaged away)
LEVEL_SIDE = 200        # px: the view the paper's light is estimated on
LINE_VIEW = 320         # px: the view ruled lines are looked for on
LINE_SPAN = 0.6         # of the page's width (height): a thin straight run this long is a line
STROKE_FREE = 0.3       # of the smaller side: wider than any stroke (a thick marker's are
                        # ~0.15 of a digit), so an opening this wide leaves only the light
_EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Step:
    name: str
    image: np.ndarray    # 2-D float32 in [0, 1]
    note: str


@dataclass(frozen=True)
class PreparedDigit:
    image: np.ndarray        # (28, 28) float32 in [0, 1], light ink on black, MNIST-like
    steps: tuple[Step, ...]
    inverted: bool           # True when the input was dark ink on a light background


class NoDigitFound(ValueError):
    """The picture holds no ink that could be a digit; never predict on it."""

    def __init__(self, why: str):
        super().__init__(f"no digit found: {why} -- draw or photograph one digit, "
                         "filling most of the picture")
        self.why = why


def prepare_digit(image: np.ndarray | Image.Image, ink: str = "auto") -> PreparedDigit:
    """MNIST's 28x28 view of `image`: (H, W), (H, W, 3), (H, W, 4) array or a PIL image.

    `ink` is "light" or "dark" when the caller knows the ink's polarity (the canvas: "light"),
    else "auto". Raises NoDigitFound when there is no ink that could be a digit.
    """
    if ink not in INK_CHOICES:
        raise ValueError(f"ink must be one of {', '.join(INK_CHOICES)}, got {ink!r}")
    grey, known_ink, grey_note = _greyscale(image, ink)
    steps = [Step("greyscale", grey, grey_note)]
    bright, inverted, note = _polarity(grey, known_ink, told=ink != "auto")
    steps.append(Step("polarity", bright, note))
    residual, note = _level(bright, inverted)
    steps.append(Step("levelled", np.clip(residual, 0, 1), note))
    cleaned, note = _clean(residual)
    steps.append(Step("cleaned", cleaned, note))
    rows, cols = _ink_box(cleaned)
    steps.append(Step("cropped", cleaned[rows, cols].copy(),
                      f"ink box {cols.stop - cols.start}x{rows.stop - rows.start} px"))
    scaled, note = _scale(cleaned, rows, cols)
    steps.append(Step(f"scaled to {BOX} px", scaled, note))
    # The stroke is measured on the crop, before shrinking can fade a fine pen's line away.
    scale = BOX / max(rows.stop - rows.start, cols.stop - cols.start)
    scaled, note = _normalise_stroke(scaled, _stroke_width(cleaned[rows, cols]) * scale)
    steps.append(Step("stroke", scaled, note))
    final, note = _centre_by_mass(scaled)
    steps.append(Step("centred by mass", final, note))
    return PreparedDigit(image=final, steps=tuple(steps), inverted=inverted)


def prepare_file(source: Any, ink: str = "auto") -> PreparedDigit:
    """read_image + prepare_digit: raises UnreadableImage or NoDigitFound for people."""
    return prepare_digit(read_image(source), ink=ink)


def prepare_batch(images: Iterable[Any], ink: str = "auto") -> np.ndarray:
    """(n, 28, 28) float32 of prepare_digit on each image; NoDigitFound names the index."""
    prepared = []
    for index, image in enumerate(images):
        try:
            prepared.append(prepare_digit(image, ink=ink).image)
        except NoDigitFound as error:
            raise NoDigitFound(f"image {index}: {error.why}") from error
    return np.stack(prepared) if prepared else np.zeros((0, FIELD, FIELD), np.float32)


def _greyscale(image: Any, ink: str) -> tuple[np.ndarray, str | None, str]:
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


def _polarity(grey: np.ndarray, known_ink: str | None, told: bool
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
        flat = np.sort(flat.ravel())
        # The strongest few pixels either side decide: ink is far from the paper, while what
        # is left of the light is faint, however much of the picture it covers.
        count = max(4, round(0.005 * flat.size))
        middle = float(np.median(flat))
        light = float(flat[-count:].sum() - count * middle)
        dark = float(count * middle - flat[:count].sum())
        # Light ink must stand out clearly: pictures of it are screens and canvases, flat and
        # with nothing darker than their background, while paper under uneven light (the
        # common photo) may show some lighter patches too.
        dark_ink = 3 * dark > light
        why = f"the strongest ink-like pixels are {dark / max(light, 1e-9):.1f}x as far below"
    if dark_ink:
        return 1.0 - grey, True, f"dark ink on a light background ({why}): inverted"
    return grey, False, f"light ink on a dark background ({why}): kept"


def _level(bright: np.ndarray, inverted: bool) -> tuple[np.ndarray, str]:
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


def _clean(residual: np.ndarray) -> tuple[np.ndarray, str]:
    """Ink in [0, 1] without noise, specks or far-off blobs; NoDigitFound if none stands out."""
    smooth = _smooth(residual)
    middle = float(np.median(smooth))
    noise = 1.4826 * float(np.median(np.abs(smooth - middle)))     # robust sigma of the paper
    core = smooth > max(_otsu(smooth), middle + 4 * noise)
    if not core.any():
        raise NoDigitFound("nothing stands out from the noise" if noise > 0.005
                           else "the picture is blank or uniform")
    # Contrast is judged on the blur (as the noise was); brightness is scaled by the unblurred ink.
    contrast = float(np.percentile(smooth[core], 90)) - middle
    if contrast < 0.025:
        raise NoDigitFound(f"the picture is almost uniform (contrast {contrast:.3f})")
    if contrast < 6 * noise:
        raise NoDigitFound(f"nothing stands out from the noise (contrast {contrast:.2f}, "
                           f"noise {noise:.2f})")
    level = max(float(np.percentile(residual[core], 99)), middle + contrast)   # > floor, always
    labels, count = ndimage.label(core, structure=_EIGHT_NEIGHBOURS)
    kept_ids = _digit_components(labels, count)
    # Hysteresis: faint edges and joins belong to the ink when they touch a kept component.
    floor = middle + 2 * noise
    faint_labels, faint_count = ndimage.label((smooth > floor) | core, structure=_EIGHT_NEIGHBOURS)
    kept_core = np.zeros(count + 1, dtype=bool)
    kept_core[kept_ids] = True
    kept_faint = np.zeros(faint_count + 1, dtype=bool)
    kept_faint[faint_labels[kept_core[labels]]] = True
    # ... and lie near it: faint ink reaching far off is a ruled line or a shadow's edge.
    reach = 2 * max(2, round(0.015 * max(residual.shape))) + 1
    support = kept_faint[faint_labels] & ndimage.maximum_filter(kept_core[labels], size=reach)
    # Intensities from the unblurred residual: the blur only decides where the ink is.
    cleaned = np.clip((residual - floor) / (level - floor), 0, 1) * support
    rows, cols = _ink_box(cleaned)
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    if extent < max(3, 0.03 * max(cleaned.shape)):
        raise NoDigitFound(f"only a speck of ink ({extent} px across)")
    return cleaned.astype(np.float32), (f"kept {len(kept_ids)} of {count} ink regions; "
                                        f"noise {noise:.3f}, ink level {level:.2f}")


def _digit_components(labels: np.ndarray, count: int) -> np.ndarray:
    """Ids of the largest ink region and the sizeable ones near it (a 5's bar, an i-like 1)."""
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    main = int(np.argmax(areas))
    boxes = ndimage.find_objects(labels)
    main_rows, main_cols = boxes[main]
    reach = 0.6 * max(main_rows.stop - main_rows.start, main_cols.stop - main_cols.start)
    kept = [main + 1]
    for index in np.flatnonzero(areas >= 0.03 * areas[main]):
        rows, cols = boxes[index]
        gap_y = max(0, rows.start - main_rows.stop, main_rows.start - rows.stop)
        gap_x = max(0, cols.start - main_cols.stop, main_cols.start - cols.stop)
        if index != main and max(gap_y, gap_x) <= reach:
            kept.append(int(index) + 1)
    return np.array(kept)


def _ink_box(ink: np.ndarray, threshold: float = 0.1) -> tuple[slice, slice]:
    present = ink > threshold
    rows, cols = np.flatnonzero(present.any(axis=1)), np.flatnonzero(present.any(axis=0))
    if rows.size == 0:
        raise NoDigitFound("the picture is blank or uniform")
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _scale(ink: np.ndarray, rows: slice, cols: slice) -> tuple[np.ndarray, str]:
    """The ink box resized so its larger side is BOX px (aspect kept), with a 2 px black margin."""
    box_height, box_width = rows.stop - rows.start, cols.stop - cols.start
    scale = BOX / max(box_height, box_width)
    out_width = int(np.ceil(box_width * scale)) + 4
    out_height = int(np.ceil(box_height * scale)) + 4
    pad = int(np.ceil(3 / scale)) + 1        # zeros around, so the source box stays inside
    padded = np.pad(ink, pad)
    centre_x, centre_y = (cols.start + cols.stop) / 2 + pad, (rows.start + rows.stop) / 2 + pad
    half_x, half_y = out_width / (2 * scale), out_height / (2 * scale)
    box = (centre_x - half_x, centre_y - half_y, centre_x + half_x, centre_y + half_y)
    # Area averaging when shrinking (anti-aliased like MNIST); bilinear when enlarging.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    scaled = np.asarray(Image.fromarray(padded.astype(np.float32)).resize(
        (out_width, out_height), resample, box=box))
    return np.clip(scaled, 0, 1).astype(np.float32), (
        f"{box_width}x{box_height} -> {box_width * scale:.0f}x{box_height * scale:.0f} px "
        f"({'shrunk' if scale < 1 else 'enlarged' if scale > 1 else 'kept'} x{scale:.2f})")


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in px: ink mass over stroke length, the length being half the outline
    (Crofton's pi/4 corrects a pixel outline's staircase). A faint 1 px line measures below 1."""
    mask = ink > 0.2
    outline = (np.count_nonzero(mask[:, 1:] != mask[:, :-1])
               + np.count_nonzero(mask[1:] != mask[:-1]))
    return 2 * float(ink.sum()) / max(outline * np.pi / 4, 1.0)


def _normalise_stroke(scaled: np.ndarray, width: float) -> tuple[np.ndarray, str]:
    """Thicken only strokes thinner than nearly all of MNIST's (a fine pen seen from afar):
    `width` is the stroke's width at this scale, measured before shrinking.

    Thick markers are left alone: MNIST has plenty of bold digits, while a faint 1 px line is
    unlike anything the networks saw. Shrunk, a fine line is a faint trace in the right place:
    brought to full brightness, then spread by a blur of sigma 0.8 px to MNIST's ~2 px
    profile, with the gain that makes its ink mass per length (its width) about 2 px.
    """
    if width >= THIN_STROKE:
        return scaled, f"stroke about {width:.1f} px wide, like MNIST's: kept"
    peak = float(np.percentile(scaled[scaled > 0.02], 95)) if (scaled > 0.02).any() else 1.0
    trace = np.clip(scaled / max(peak, 1e-3), 0, 1)
    trace_width = width * float(trace.sum()) / max(float(scaled.sum()), 1e-6)
    gain = min(TARGET_STROKE / max(trace_width, 1e-3), 6.0)
    thicker = np.clip(gain * ndimage.gaussian_filter(trace, sigma=0.8), 0, 1).astype(np.float32)
    return thicker, (f"thin stroke ({width:.1f} px) thickened to about "
                     f"{_stroke_width(thicker):.1f} px")


def _centre_by_mass(scaled: np.ndarray) -> tuple[np.ndarray, str]:
    """Paste into 28x28 with the centre of mass at (14, 14), by whole pixels as MNIST did."""
    total = float(scaled.sum())
    ys, xs = np.indices(scaled.shape)
    com_y, com_x = float((ys * scaled).sum()) / total, float((xs * scaled).sum()) / total
    top, left = int(np.rint(FIELD / 2 - com_y)), int(np.rint(FIELD / 2 - com_x))
    margin = max(scaled.shape)
    field = np.zeros((FIELD + 2 * margin, FIELD + 2 * margin), dtype=np.float32)
    field[margin + top: margin + top + scaled.shape[0],
          margin + left: margin + left + scaled.shape[1]] = scaled
    final = np.ascontiguousarray(field[margin: margin + FIELD, margin: margin + FIELD])
    return final, f"centre of mass moved to (14, 14) by ({left:+d}, {top:+d}) px"


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


def _smooth(image: np.ndarray) -> np.ndarray:
    """A light blur against noise and JPEG blocks, scaled with the picture's smaller side (none
    on 28x28, ~1 px on a 280 px canvas; the smaller side bounds how large a digit can be)."""
    return ndimage.gaussian_filter(image, sigma=min(image.shape) / 300, truncate=3.0)


def _otsu(values: np.ndarray) -> float:
    """The threshold that best splits `values` into two classes (Otsu, 256 bins)."""
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        return high
    bins = np.minimum(((values - low) * (256 / (high - low))).astype(np.intp), 255)
    counts = np.bincount(bins.ravel(), minlength=256)
    edges = low + (high - low) / 256 * np.arange(257)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_below = np.cumsum(counts)
    mass_below = np.cumsum(counts * centres)
    weight_above = weight_below[-1] - weight_below
    mean_below = mass_below / np.maximum(weight_below, 1)
    mean_above = (mass_below[-1] - mass_below) / np.maximum(weight_above, 1)
    between = weight_below * weight_above * (mean_below - mean_above) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _fit(shape: tuple[int, ...], pixels: int) -> tuple[int, int]:
    """(height, width) scaled, aspect kept, to hold about `pixels` pixels."""
    factor = np.sqrt(pixels / (shape[0] * shape[1]))
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def _resize(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    resample = Image.Resampling.BOX if shape[0] < image.shape[0] else Image.Resampling.BILINEAR
    resized = Image.fromarray(image.astype(np.float32)).resize((shape[1], shape[0]), resample)
    return np.asarray(resized, dtype=np.float32)
