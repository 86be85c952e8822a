"""Pictures made for the image tests: rendered glyphs, canvas-like RGBA, simulated photos."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

# Polyline digits in unit coordinates (x right, y down), drawn like a pen on the canvas.
GLYPHS = {
    "2": [(0.2, 0.3), (0.35, 0.12), (0.6, 0.1), (0.78, 0.25), (0.75, 0.45), (0.2, 0.88),
          (0.82, 0.88)],
    "7": [(0.2, 0.12), (0.8, 0.12), (0.45, 0.9)],
    "4": [(0.65, 0.9), (0.65, 0.1), (0.15, 0.65), (0.85, 0.65)],
    "1": [(0.35, 0.25), (0.55, 0.1), (0.55, 0.9)],
    "3": [(0.2, 0.15), (0.75, 0.15), (0.45, 0.45), (0.75, 0.6), (0.7, 0.85), (0.2, 0.85)],
}


def render_glyph(name: str = "2", size: tuple[int, int] = (280, 280), width: int = 20,
                 extent: float = 200, centre: tuple[float, float] | None = None) -> np.ndarray:
    """Light ink on black, uint8 (H, W): glyph `name` `extent` px tall, centred at `centre`."""
    image = Image.new("L", size, 0)
    cx, cy = centre if centre is not None else (size[0] / 2, size[1] / 2)
    points = [(cx + (x - 0.5) * extent, cy + (y - 0.5) * extent) for x, y in GLYPHS[name]]
    ImageDraw.Draw(image).line(points, fill=255, width=width, joint="curve")
    return np.asarray(image).copy()


def canvas_rgba(ink: np.ndarray, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A drawing-canvas export: transparent background, `ink` (uint8 coverage) as alpha."""
    rgba = np.zeros(ink.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = ink
    return rgba


def simulated_photo(ink: np.ndarray, rng: np.random.Generator, noise: float = 0.04,
                    quality: int = 70) -> np.ndarray:
    """Dark ink on paper under a lighting gradient, with sensor noise, through JPEG: uint8 RGB."""
    height, width = ink.shape
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    lighting = 0.55 + 0.4 * xs + 0.15 * ys * rng.uniform(-1, 1)            # (H, W)
    reflectance = 0.9 - 0.75 * (ink.astype(np.float64) / 255)               # paper 0.9, ink 0.15
    grey = lighting * reflectance + rng.normal(0, noise, ink.shape)
    rgb = np.repeat(np.clip(grey * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb[..., 2] = np.clip(rgb[..., 2].astype(int) - 12, 0, 255)             # a warm tint
    return np.asarray(Image.open(io.BytesIO(encode(rgb, "JPEG", quality=quality))))


def encode(pixels: np.ndarray | Image.Image, image_format: str, **options) -> bytes:
    """The bytes Pillow writes for `pixels` in `image_format`."""
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(first), np.ravel(second))[0, 1])


def aligned_correlation(first: np.ndarray, second: np.ndarray, max_shift: int = 1) -> float:
    """The best correlation over whole-pixel shifts up to `max_shift`: centring by mass rounds
    to whole pixels (as MNIST did), so the same glyph may land one pixel apart."""
    shifts = range(-max_shift, max_shift + 1)
    return max(correlation(first, np.roll(second, (dy, dx), axis=(0, 1)))
               for dy in shifts for dx in shifts)


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Aligned correlation after a 0.5 px blur: the same glyph sampled at another sub-pixel phase
    scores > 0.9, MNIST digits of different classes < 0.75 (test_preprocess checks both)."""
    return aligned_correlation(ndimage.gaussian_filter(first, 0.5),
                               ndimage.gaussian_filter(second, 0.5))
