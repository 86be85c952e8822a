"""Random distortions of 28x28 digits for training: affine, elastic and stroke thickness;
where each distorted pixel is read from (the maps, the fields, the gather) is left to
engine.images.warp.

Both engines call `augment_batch` on float images in [0, 1]; when to augment, which
random generator to use and the labels are left to the training loops. Everything is
vectorised across the batch: one affine matrix per image, one displacement field per
image cut from a precomputed bank, and a single bilinear gather for the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.images.warp import (IMAGE_SIZE, Transforms, affine_maps, bilinear_sample, displacements,
                                draw_elastic, source_coordinates)

# Images warped at once. Small chunks keep every temporary near 100 KB, which the
# allocator recycles; at 256 a fresh process spent two thirds of its time page-faulting
# on new ones (measured: 1.8 ms vs 5.3 ms per 128 "light" images, 0 vs 1,400 faults).
CHUNK_SIZE = 32
# Ink below this is dropped at full thinning strength: about half a pixel off each side
# of an MNIST stroke.
THIN_THRESHOLD = 0.75
# Stroke widths (px): thickening fades out from MNIST's typical width up to the
# thickest, thinning from the typical width down to the thinnest.
TYPICAL_STROKE = 2.0
THICKEST_STROKE = 3.2
THINNEST_STROKE = 1.2


@dataclass(frozen=True)
class AugmentParams:
    """The ranges each random distortion is drawn from (uniformly, per image)."""

    max_rotation_degrees: float = 0.0
    max_shift_pixels: float = 0.0           # each axis, in [-max, max]
    scale_range: tuple[float, float] = (1.0, 1.0)
    aspect_range: tuple[float, float] = (1.0, 1.0)   # width / height multiplier
    max_shear: float = 0.0                  # horizontal slant: columns move by shear * row
    elastic_alpha: float = 0.0              # Simard et al. (2003): field scale in pixels
    elastic_sigma: float = 4.0              # ... and its Gaussian smoothing, in pixels
    thickness_probability: float = 0.0      # share of images thickened or thinned
    max_thickness: float = 1.0              # 1 = a full one-pixel dilation, or thinning
                                            # at the full THIN_THRESHOLD
    thickest_stroke: float = THICKEST_STROKE  # width (px) at which thickening stops

    def __post_init__(self) -> None:
        for name in ("max_rotation_degrees", "max_shift_pixels", "max_shear",
                     "elastic_alpha", "thickness_probability", "max_thickness"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)!r}")
        for name in ("scale_range", "aspect_range"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, "
                                 f"got {getattr(self, name)!r}")
        if not TYPICAL_STROKE < self.thickest_stroke <= 2 * IMAGE_SIZE:
            raise ValueError(f"thickest_stroke must be in ({TYPICAL_STROKE}, {2 * IMAGE_SIZE}], "
                             f"got {self.thickest_stroke!r}")
        if not self.elastic_sigma > 0:
            raise ValueError(f"elastic_sigma must be above 0, got {self.elastic_sigma!r}")
        if self.thickness_probability > 1 or self.max_thickness > 1:
            raise ValueError("thickness_probability and max_thickness must be at most 1")


LEVELS: dict[str, AugmentParams] = {
    # Within the variation of MNIST's own writers: meant to help an MLP without costing
    # clean accuracy (Simard et al. report elastic distortion helps MLPs most).
    "light": AugmentParams(max_rotation_degrees=10.0, max_shift_pixels=2.0,
                           scale_range=(0.9, 1.1), aspect_range=(0.92, 1.08),
                           max_shear=0.15, elastic_alpha=16.0, elastic_sigma=4.0),
    # For CNNs and for digits drawn on a canvas or photographed: tilted, off-centre,
    # slanted, wobbly, with pens thinner or thicker than MNIST's.
    "strong": AugmentParams(max_rotation_degrees=15.0, max_shift_pixels=3.0,
                            scale_range=(0.8, 1.15), aspect_range=(0.85, 1.15),
                            max_shear=0.3, elastic_alpha=30.0, elastic_sigma=4.0,
                            thickness_probability=0.5, max_thickness=1.0),
    # For lettering and marker pens: light's geometry, which keeps MNIST's accuracy, and
    # strokes up to 4 px wide, as heavy lettering still is after preprocessing thins it
    # (median 3.2 px, against MNIST's 1.9; thickening stops at 4). Measured on validation
    # (scripts/choose_handwriting.py, docs/handwriting.md), it did not read lettering better
    # than light for either shipped preset, so they keep light.
    "handwriting": AugmentParams(max_rotation_degrees=10.0, max_shift_pixels=2.0,
                                 scale_range=(0.9, 1.1), aspect_range=(0.92, 1.08),
                                 max_shear=0.15, elastic_alpha=16.0, elastic_sigma=4.0,
                                 thickness_probability=0.7, max_thickness=1.0,
                                 thickest_stroke=4.0),
}


# ---- the public call ------------------------------------------------------------

def augment_batch(images: np.ndarray, rng: np.random.Generator,
                  level: str | AugmentParams = "light") -> np.ndarray:
    """(b, 28, 28) float in [0, 1] -> a new, randomly distorted (b, 28, 28) float32.

    `level` is "none" (returns `images` itself), a name in LEVELS, or explicit
    `AugmentParams`. The same generator state gives the same output.
    """
    if isinstance(level, AugmentParams):
        params = level
    elif level == "none":
        return images
    elif level in LEVELS:
        params = LEVELS[level]
    else:
        raise ValueError(f"augmentation level must be one of none, {', '.join(LEVELS)} "
                         f"or AugmentParams, got {level!r}")
    return apply_transforms(images, sample_transforms(len(images), rng, params),
                            params.thickest_stroke)


def sample_transforms(count: int, rng: np.random.Generator,
                      params: AugmentParams) -> Transforms:
    """Draw `count` images' distortions from the ranges in `params`."""
    def symmetric(limit: float, shape: tuple[int, ...] = (count,)) -> np.ndarray:
        return rng.uniform(-limit, limit, shape)

    scale_low, scale_high = params.scale_range
    aspect_low, aspect_high = params.aspect_range
    # Aspect drawn in log space, so widening and narrowing are equally likely.
    aspect = np.exp(rng.uniform(math.log(aspect_low), math.log(aspect_high), count))
    transforms = Transforms(
        rotation_degrees=symmetric(params.max_rotation_degrees),
        shift=symmetric(params.max_shift_pixels, (count, 2)),
        scale=rng.uniform(scale_low, scale_high, count),
        aspect=aspect,
        shear=symmetric(params.max_shear),
        thickness=np.zeros(count),
    )
    if params.thickness_probability > 0:
        chosen = rng.random(count) < params.thickness_probability
        transforms.thickness = np.where(chosen, symmetric(params.max_thickness), 0.0)
    if params.elastic_alpha > 0:
        transforms.elastic = draw_elastic(count, rng, params.elastic_alpha,
                                          params.elastic_sigma)
    return transforms


def apply_transforms(images: np.ndarray, transforms: Transforms,
                     thickest_stroke: float = THICKEST_STROKE) -> np.ndarray:
    """Distort each image by its own explicit parameters: the affine map and elastic
    displacement, sampled bilinearly (zero outside), then the stroke thickness (no
    thickening past `thickest_stroke` pixels)."""
    images = _checked_images(images)
    matrices, offsets = affine_maps(transforms)
    thickness = np.asarray(transforms.thickness, np.float32)
    result = np.empty_like(images)
    for start in range(0, len(images), CHUNK_SIZE):
        rows = slice(start, start + CHUNK_SIZE)
        source_rows, source_cols = source_coordinates(matrices[rows], offsets[rows])
        for displacement in displacements(transforms, rows):
            source_rows += displacement[:, 0]
            source_cols += displacement[:, 1]
        warped = bilinear_sample(images[rows], source_rows, source_cols)
        if np.any(thickness[rows]):
            _change_thickness(warped, thickness[rows], thickest_stroke)
        np.clip(warped, 0.0, 1.0, out=result[rows])
    return result


# ---- stroke thickness -------------------------------------------------------------

def _change_thickness(images: np.ndarray, strength: np.ndarray,
                      thickest: float = THICKEST_STROKE) -> None:
    """Thicken (strength > 0) by blending towards a grey dilation over a plus-shaped
    3x3 neighbourhood; thin (< 0) by raising the ink threshold, which trims the soft
    edges of strokes and keeps their cores bright, as a thin pen draws. (An erosion
    erases MNIST's two-pixel strokes outright, and blending towards it only dims them.)
    Strokes already thick are thickened less, and strokes already thin thinned less,
    so neither turns into a blob or breaks apart. Changes `images` in place; the
    result may leave [0, 1].
    """
    widths = stroke_width(images)
    # Each image is thickened or thinned (or neither), so one weight of each is zero.
    thicken = np.maximum(strength, 0) * np.clip(
        (thickest - widths) / (thickest - TYPICAL_STROKE), 0, 1)
    threshold = THIN_THRESHOLD * np.maximum(-strength, 0) * np.clip(
        (widths - THINNEST_STROKE) / (TYPICAL_STROKE - THINNEST_STROKE), 0, 1)
    dilated = images.copy()                                     # (k, 28, 28)
    np.maximum(dilated[:, 1:], images[:, :-1], out=dilated[:, 1:])
    np.maximum(dilated[:, :-1], images[:, 1:], out=dilated[:, :-1])
    np.maximum(dilated[:, :, 1:], images[:, :, :-1], out=dilated[:, :, 1:])
    np.maximum(dilated[:, :, :-1], images[:, :, 1:], out=dilated[:, :, :-1])
    dilated -= images
    dilated *= thicken[:, None, None]
    images += dilated
    images -= threshold[:, None, None]
    images /= (1 - threshold)[:, None, None]


def stroke_width(images: np.ndarray) -> np.ndarray:
    """(k,) mean stroke width in pixels: twice the inked area over its outline's length
    (exact for long straight strokes). MNIST's median is about 1.9, 95% under 3."""
    ink = images > 0.5                                          # (k, 28, 28)
    area = ink.sum(axis=(1, 2))
    outline = ((ink[:, 1:] != ink[:, :-1]).sum(axis=(1, 2))
               + (ink[:, :, 1:] != ink[:, :, :-1]).sum(axis=(1, 2)))
    return (2 * area / np.maximum(outline, 1)).astype(np.float32)


def _checked_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected images of shape (n, 28, 28), got {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype}; "
                         f"convert with engine.training.as_model_input first")
    return images.astype(np.float32, copy=False)
