"""The digit's shape brought into MNIST's range, on the crop at full detail before it is
shrunk: outlined (hollow) lettering filled, a slant beyond MNIST's sheared back (the classic
moment-based deskew, limited to what MNIST's writers never do), very heavy strokes thinned.
Finding, cropping and scaling the digit are left to engine.images.preprocess."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

INK = 0.35               # of the crop's [0, 1]: what counts as ink for the shape measures
# Slant = mu11 / mu02 of the ink (x right, y down: negative leans the top right). MNIST's
# training rows: 1st percentile -0.78, 5th -0.57, median -0.10, 95th 0.34, 99th 0.53
# (measured on 54,000 rows). Only the outer 2% is touched: an MNIST digit comes back as it was.
MNIST_SLANT = (-0.78, 0.53)
# Stroke width over the ink's larger side. MNIST: median 0.12, 95th percentile 0.19, 99th 0.23.
HEAVY_STROKE = 0.23      # wider than this (MNIST's 99th percentile) is thinned ...
THINNED_STROKE = 0.15    # ... to this (a bold MNIST digit, not a median one: less is erased)
HOLLOW_ELONGATION = 6.0  # a gap in the ink this elongated (area over its mean width squared)
                         # is the inside of an outlined stroke; a digit's loops are rounder (a
                         # disc measures pi, an oval three times as tall as wide 4.7)
HOLLOW_SOLIDITY = 0.85   # ... and fills at most this share of its convex hull
HOLLOW_GAP = 1.5         # ... and it is at least this many of the outline's widths across


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in px: ink mass over stroke length, the length being half the outline
    (Crofton's pi/4 corrects a pixel outline's staircase). A faint 1 px line measures below 1.
    The outline includes the ink's edges on the picture's border (a tight crop's are all there)."""
    mask = np.pad(ink > 0.2, 1)
    outline = (np.count_nonzero(mask[:, 1:] != mask[:, :-1])
               + np.count_nonzero(mask[1:] != mask[:-1]))
    return 2 * float(ink.sum()) / max(outline * np.pi / 4, 1.0)


def slant(image: np.ndarray) -> float:
    """mu11 / mu02 of the ink's intensity: how far x moves per unit of y (0 = upright)."""
    total = float(image.sum())
    if total <= 0:
        return 0.0
    ys, xs = np.indices(image.shape, dtype=np.float64)
    dy = ys - float((ys * image).sum()) / total
    dx = xs - float((xs * image).sum()) / total
    spread = float((image * dy * dy).sum())
    return float((image * dx * dy).sum()) / spread if spread > 0 else 0.0


def fill_outlines(crop: np.ndarray) -> tuple[np.ndarray, str]:
    """Outlined lettering made solid: each enclosed gap shaped like the inside of a stroke
    (long and narrow, wider than the outline's line) is filled. A digit's own loops are
    round or oval, and are kept."""
    ink = crop > INK
    gaps = ndimage.binary_fill_holes(ink) & ~ink
    labels, count = ndimage.label(gaps)
    if count == 0:
        return crop, "no enclosed gaps: nothing to fill"
    line = stroke_width(ink.astype(np.float32))
    hollow = np.zeros(count, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels)):
        gap = labels[box] == index + 1
        # The gap's own mean width, measured as a stroke's: a long strip scores its length
        # over its width, a disc pi, an oval three times as tall as wide about 4.7.
        width = stroke_width(gap.astype(np.float32))
        # And it bends (a stroke's inside follows the digit's curves), where a loop, however
        # narrow or slanted, is convex: a straight outlined 1 is left as the narrow 0 it is.
        hollow[index] = (gap.sum() / max(width, 1.0) ** 2 >= HOLLOW_ELONGATION
                         and width >= HOLLOW_GAP * line and _solidity(gap) < HOLLOW_SOLIDITY)
    if not hollow.any():
        return crop, f"{count} enclosed gap(s), all loops of the digit: kept"
    filled = crop.copy()
    filled[np.isin(labels, np.flatnonzero(hollow) + 1)] = float(crop.max())
    return filled, (f"filled {int(hollow.sum())} outlined stroke(s): hollow lettering "
                    f"made solid")


def deskew(crop: np.ndarray) -> tuple[np.ndarray, str]:
    """A slant beyond MNIST's 1st-99th percentile sheared back to that range's edge, about the
    ink's centre of mass; a slant MNIST's writers share is the networks' to read, and kept."""
    measured = slant(crop)
    low, high = MNIST_SLANT
    target = min(max(measured, low), high)
    if measured == target:
        return crop, f"slant {_lean(measured)}, within MNIST's range: kept"
    shear = measured - target
    height, width = crop.shape
    total = float(crop.sum())
    centre_y = float((np.arange(height)[:, None] * crop).sum()) / total
    # Output (r, c) reads input (r, c + shear * (r - centre_y) - pad): columns move back by
    # the shear, into a frame widened so the sheared ink stays inside.
    pad = int(np.ceil(abs(shear) * max(centre_y, height - centre_y))) + 1
    matrix = np.array([[1.0, 0.0], [shear, 1.0]])
    offset = (0.0, -shear * centre_y - pad)
    straight = ndimage.affine_transform(crop, matrix, offset=offset, order=1,
                                        output_shape=(height, width + 2 * pad))
    return np.clip(straight, 0, 1).astype(np.float32), (
        f"slant {_lean(measured)}, beyond MNIST's {_lean(low)} to {_lean(high)}: "
        f"sheared to {_lean(target)}")


def thin_heavy(crop: np.ndarray) -> tuple[np.ndarray, str]:
    """Strokes heavier than nearly all of MNIST's, relative to the digit's size, eroded to a
    bold MNIST stroke. Heavy ink closes a digit's loops to pinholes, which erosion opens
    again; a part narrower than the erosion keeps a line along its middle."""
    ink = crop > INK
    extent = max(crop.shape)
    width = stroke_width(ink.astype(np.float32))
    if width <= HEAVY_STROKE * extent:
        return crop, f"stroke {width / extent:.2f} of the digit's size, like MNIST's: kept"
    target = THINNED_STROKE * extent
    depth = ndimage.distance_transform_edt(ink)
    core = depth > (width - target) / 2
    # The middle line of every part: where the distance to the paper peaks.
    middle = ink & (depth >= ndimage.maximum_filter(depth, size=3) - 0.5)
    near_middle = ndimage.distance_transform_edt(~middle) <= target / 2
    thinned = ink & (core | near_middle)
    # Smoothed at a quarter of the new stroke: the middle lines leave spurs at corners.
    thinned = ndimage.gaussian_filter(thinned.astype(np.float32), target / 4) > 0.5
    thinned = thinned.astype(np.float32) * float(crop.max())
    return thinned, (f"heavy stroke ({width / extent:.2f} of the digit's size, MNIST's "
                     f"99th percentile {HEAVY_STROKE}) thinned to about "
                     f"{stroke_width(thinned) / extent:.2f}")


def _solidity(region: np.ndarray) -> float:
    """The region's area over its convex hull's (pixels as unit squares)."""
    rows, cols = np.nonzero(region)
    corners = np.concatenate([np.stack([rows + dy, cols + dx], axis=1)
                              for dy in (0, 1) for dx in (0, 1)])
    try:
        hull = ConvexHull(corners)
    except QhullError:          # a straight line of pixels: as convex as it gets
        return 1.0
    return float(len(rows)) / max(hull.volume, 1.0)


def _lean(value: float) -> str:
    """A slant in words: mu11/mu02 is negative when the top leans right."""
    if abs(value) < 0.005:
        return "0.00 (upright)"
    return f"{abs(value):.2f} to the {'right' if value < 0 else 'left'}"
