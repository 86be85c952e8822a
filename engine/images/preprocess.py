"""Any picture of a digit -> MNIST's 28x28 (light ink on black, 20 px box, centred by mass),
keeping each step for display; picture-level steps are left to engine.images.clean, decoding
to engine.images.imageio."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from PIL import Image
from scipy import ndimage

from engine.images import clean, shape
from engine.images.imageio import read_image
# Raised first by the picture-level steps, so it lives with them; it is part of this API.
from engine.images.clean import NoDigitFound
from engine.images.shape import stroke_width as _stroke_width

FIELD = 28              # MNIST's image side
BOX = 20                # MNIST scales each digit so its larger side is this many pixels
INK_CHOICES = ("auto", "light", "dark")
THIN_STROKE = 1.2       # px at 20 px scale, below all but ~0.5% of MNIST's (median ~2.6)
TARGET_STROKE = 2.0     # what a too-thin stroke is widened to
DOT_EXTENT = 2.5        # ink spanning fewer of its own stroke widths (measured as below: mass
                        # over half the outline) is a dot or a blob, not a digit. A round dot
                        # measures 2.0, a stroke twice as long as wide 2.4-3.0, a blob 1.5x as
                        # long as wide 2.0-2.5; real digits (tests/support/varied_digits.py, the
                        # mouse-drawn custom_digits/) measure 4.6 and more
SPECK = 8               # px at analysis scale: ink spanning fewer is a speck (or, on a
                        # picture under 270 px, 3% of its larger side, and at least 3 px)
CORE_SHARE = 0.25       # of the strongest ink's contrast: fainter ink seeds no region of its own
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


def prepare_digit(image: np.ndarray | Image.Image, ink: str = "auto") -> PreparedDigit:
    """MNIST's 28x28 view of `image`: (H, W), (H, W, 3), (H, W, 4) array or a PIL image.

    `ink` is "light" or "dark" when the caller knows the ink's polarity (the canvas: "light"),
    else "auto". Raises NoDigitFound when there is no ink that could be a digit.
    """
    if ink not in INK_CHOICES:
        raise ValueError(f"ink must be one of {', '.join(INK_CHOICES)}, got {ink!r}")
    grey, known_ink, grey_note = clean.greyscale(image, ink)
    steps = [Step("greyscale", grey, grey_note)]
    bright, inverted, note = clean.polarity(grey, known_ink, told=ink != "auto")
    steps.append(Step("polarity", bright, note))
    residual, note = clean.level(bright, inverted)
    steps.append(Step("levelled", np.clip(residual, 0, 1), note))
    cleaned, note = _clean(residual)
    steps.append(Step("cleaned", cleaned, note))
    rows, cols = _ink_box(cleaned)
    crop = cleaned[rows, cols].copy()
    _refuse_dot(crop)
    steps.append(Step("cropped", crop,
                      f"ink box {cols.stop - cols.start}x{rows.stop - rows.start} px"))
    # The shape is normalised at full detail, before shrinking blurs gaps and loops shut.
    crop, note = shape.fill_outlines(crop)
    steps.append(Step("filled", crop, note))
    crop, note = shape.deskew(crop)
    crop = crop[_ink_box(crop)]
    steps.append(Step("deskewed", crop, note))
    crop, note = shape.thin_heavy(crop)
    steps.append(Step("thinned", crop, note))
    # The stroke is measured on the crop, before shrinking can fade a fine pen's line away.
    width = _stroke_width(crop)
    rows, cols = _ink_box(crop)
    scaled, note = _scale(crop, rows, cols)
    steps.append(Step(f"scaled to {BOX} px", scaled, note))
    scale = BOX / max(rows.stop - rows.start, cols.stop - cols.start)
    scaled, note = _normalise_stroke(scaled, width * scale)
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


def _clean(residual: np.ndarray) -> tuple[np.ndarray, str]:
    """Ink in [0, 1] without noise, specks or far-off blobs; NoDigitFound if none stands out."""
    smooth = _smooth(residual)
    middle = float(np.median(smooth))
    noise = 1.4826 * float(np.median(np.abs(smooth - middle)))     # robust sigma of the paper
    # Ink is the strongest thing in the picture: what is left of uneven light after levelling
    # (a dim patch narrower than the background's window, the frame's edges) stands out from
    # the noise too, and in a large photo can outsize a small digit many times, but it is
    # faint beside the ink's strokes.
    strongest = float(smooth.max()) - middle
    core = smooth > max(_otsu(smooth), middle + 4 * noise, middle + CORE_SHARE * strongest)
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
    labels, count = ndimage.label(core, structure=_EIGHT_NEIGHBOURS)
    kept_ids = _digit_components(labels, count)
    kept_core = np.zeros(count + 1, dtype=bool)
    kept_core[kept_ids] = True
    reach = 2 * max(2, round(0.015 * max(residual.shape))) + 1
    near = ndimage.maximum_filter(kept_core[labels], size=reach)
    # The paper is judged around the ink: a small digit may lie on a dim patch the levelling
    # left (see above), whose noise would otherwise join the ink and widen its box.
    around = near & ~core
    paper_level = max(middle, float(np.median(smooth[around]))) if around.any() else middle
    # Hysteresis: faint edges and joins belong to the ink when they touch a kept component.
    floor = paper_level + 2 * noise
    level = max(float(np.percentile(residual[core], 99)), middle + contrast,
                floor + 0.01)                                                    # > floor, always
    faint_labels, faint_count = ndimage.label((smooth > floor) | core, structure=_EIGHT_NEIGHBOURS)
    kept_faint = np.zeros(faint_count + 1, dtype=bool)
    kept_faint[faint_labels[kept_core[labels]]] = True
    # ... and lie near it: faint ink reaching far off is a ruled line or a shadow's edge.
    support = kept_faint[faint_labels] & near
    # Intensities from the unblurred residual: the blur only decides where the ink is.
    cleaned = np.clip((residual - floor) / (level - floor), 0, 1) * support
    rows, cols = _ink_box(cleaned)
    extent = max(rows.stop - rows.start, cols.stop - cols.start)
    # Small, not frame-relative: a digit in a corner of a large photo may span 2% of it.
    # Dots and blobs of any size are refused against their stroke width (_refuse_dot).
    if extent < max(3, min(SPECK, 0.03 * max(cleaned.shape))):
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


def _refuse_dot(crop: np.ndarray) -> None:
    """NoDigitFound when the ink spans under DOT_EXTENT of its own stroke widths: a click on the
    canvas, a blot or a speck, which scaled to 20 px would read as a bold 0. Relative to the
    stroke, not the frame, so small digits, thick short 1s and fine pens all pass. Judged on
    the ink's solid core, so a photo's faint halo (noise, JPEG ringing) neither widens the
    box nor, with ink below full strength, makes the stroke look thinner than it is."""
    core = crop > 0.5
    if not core.any():
        core = crop > 0.1
    rows, cols = np.flatnonzero(core.any(axis=1)), np.flatnonzero(core.any(axis=0))
    extent = int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1
    width = _stroke_width(core.astype(np.float32))
    if extent < DOT_EXTENT * width:
        raise NoDigitFound(f"the ink is a dot, not a digit ({extent} px across, "
                           f"{extent / width:.1f} times its {width:.0f} px stroke): "
                           "draw the whole digit")


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
