"""Draw docs/im2col.png, the README's picture of how the NumPy engine's Conv2D works.

A real MNIST digit goes through the engine's own `Conv2D` (3x3, "same", no bias) with two
Sobel edge kernels. The figure shows one 3x3 window, that window unrolled into one row of
the layer's patch matrix (its im2col rows, 784 x 9), the kernel reshaped to 9 x 2, and
the product, reshaped back into the two 28x28 feature maps. Every number drawn is read
from the layer's arrays; the script checks that the maps are exactly the product it
draws. Deterministic (same data, same picture); drawn with Pillow, no matplotlib.

    .venv/bin/python scripts/im2col_figure.py            # writes docs/im2col.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.data import load_mnist  # noqa: E402
from engine.numpy_nn.conv import Conv2D  # noqa: E402
from engine.training import as_model_input  # noqa: E402

DIGIT_INDEX = 0          # the training set's first digit, a 5
WINDOW = (15, 18)        # the output pixel (row i, column j) whose window is followed
# Sobel kernels as Keras lays a conv kernel out, (kh, kw, in, out): filter 1 answers
# ink that changes left to right (vertical edges), filter 2 top to bottom.
SOBEL = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32)
KERNEL = np.stack([SOBEL, SOBEL.T], axis=-1)[:, :, None, :]          # (3, 3, 1, 2)

WIDTH, HEIGHT = 900, 960
BACKGROUND = (255, 255, 255)
TEXT = (33, 37, 41)
MUTED = (108, 117, 125)
HIGHLIGHT = (230, 110, 0)
PADDING = (214, 226, 240)
GRID = (190, 196, 204)
NEGATIVE, POSITIVE = np.array([33, 102, 172]), np.array([178, 24, 43])
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = FONT_DIR / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
    if path.exists():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def ink(values: np.ndarray) -> np.ndarray:
    """Pixel values 0..1 as RGB, dark ink on white."""
    grey = np.round(255 * (1 - np.clip(values, 0, 1))).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def diverging(values: np.ndarray, scale: float) -> np.ndarray:
    """Negative blue, zero white, positive red; |value| = scale is full colour."""
    t = np.clip(values / scale, -1, 1)[..., None]
    white = np.array([255, 255, 255])
    rgb = np.where(t < 0, white + (white - NEGATIVE) * t, white - (white - POSITIVE) * t)
    return np.round(rgb).astype(np.uint8)


def paste(canvas: Image.Image, rgb: np.ndarray, x: int, y: int, width: int,
          height: int, resample: int = Image.Resampling.NEAREST) -> None:
    canvas.paste(Image.fromarray(rgb, "RGB").resize((width, height), resample), (x, y))


def arrow(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float],
          colour: tuple[int, int, int] = MUTED, width: int = 3, head: float = 11) -> None:
    (x0, y0), (x1, y1) = start, end
    length = float(np.hypot(x1 - x0, y1 - y0))
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    base = (x1 - ux * head, y1 - uy * head)
    draw.line([start, base], fill=colour, width=width)
    draw.polygon([(x1, y1), (base[0] - uy * head * 0.6, base[1] + ux * head * 0.6),
                  (base[0] + uy * head * 0.6, base[1] - ux * head * 0.6)], fill=colour)


def cell_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], text: str,
              background: np.ndarray, size: int) -> None:
    dark = float(np.mean(background)) < 140
    draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, anchor="mm",
              font=font(size), fill=(255, 255, 255) if dark else TEXT)


def number(value: float) -> str:
    if value == 0:
        return "0"
    return f"{value:.2f}".replace("0.", ".", 1) if abs(value) < 1 else f"{value:.0f}"


def grid_lines(draw: ImageDraw.ImageDraw, x: int, y: int, columns: int, rows: int,
               cell_w: float, cell_h: float, colour=GRID) -> None:
    for c in range(columns + 1):
        draw.line([(x + c * cell_w, y), (x + c * cell_w, y + rows * cell_h)], fill=colour)
    for r in range(rows + 1):
        draw.line([(x, y + r * cell_h), (x + columns * cell_w, y + r * cell_h)], fill=colour)


def compute() -> dict[str, np.ndarray | int]:
    """The digit through the engine's Conv2D; its patch matrix and feature maps."""
    data = load_mnist()
    image = as_model_input(data.train_images[DIGIT_INDEX])[..., None]  # (1, 28, 28, 1)
    layer = Conv2D(KERNEL.copy(), padding="same", input_gradient=False)
    maps = layer.forward(image, training=False)[0].copy()               # (28, 28, 2)
    cols = layer._cols.copy()                    # (784, 9): the rows im2col built
    product = cols @ KERNEL.reshape(9, 2)
    if not np.array_equal(product.reshape(maps.shape), maps):
        raise AssertionError("the feature maps are not the drawn product")
    i, j = WINDOW
    padded = np.pad(image[0, :, :, 0], 1)
    if not np.array_equal(cols[28 * i + j], padded[i:i + 3, j:j + 3].ravel()):
        raise AssertionError("the highlighted row is not the highlighted window")
    return {"image": image[0, :, :, 0], "padded": padded, "cols": cols, "maps": maps,
            "label": int(data.train_labels[DIGIT_INDEX])}


def draw_figure(arrays: dict) -> Image.Image:
    canvas = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    padded, cols, maps = arrays["padded"], arrays["cols"], arrays["maps"]
    i, j = WINDOW
    row = 28 * i + j
    label_font, small = font(19), font(15)

    draw.text((WIDTH / 2, 26), "im2col: a 3×3 convolution becomes one matrix product",
              anchor="mm", font=font(25, bold=True), fill=TEXT)

    # --- 1. the digit, zero-padded ("same"), with one window ------------------------
    cell = 8
    dx, dy = 30, 108
    rgb = ink(padded)
    rgb[0, :] = rgb[-1, :] = rgb[:, 0] = rgb[:, -1] = PADDING        # the padding ring
    paste(canvas, rgb, dx, dy, 30 * cell, 30 * cell)
    draw.rectangle([dx, dy, dx + 30 * cell - 1, dy + 30 * cell - 1], outline=GRID)
    win = (dx + j * cell, dy + i * cell, dx + (j + 3) * cell, dy + (i + 3) * cell)
    draw.rectangle(win, outline=HIGHLIGHT, width=3)
    draw.text((dx, 62), "1. a digit, 28×28", font=label_font, fill=TEXT)
    draw.text((dx, 86), "blue ring: zero padding (\"same\")", font=small, fill=MUTED)

    # --- 2. the window, enlarged, with its 9 values ----------------------------------
    zoom = 54
    zx, zy = 330, 150
    window = padded[i:i + 3, j:j + 3]
    paste(canvas, ink(window), zx, zy, 3 * zoom, 3 * zoom)
    grid_lines(draw, zx, zy, 3, 3, zoom, zoom)
    for a in range(3):
        for b in range(3):
            box = (zx + b * zoom, zy + a * zoom, zx + (b + 1) * zoom, zy + (a + 1) * zoom)
            cell_text(draw, box, number(window[a, b]), ink(window)[a, b], 16)
            draw.text((box[0] + 3, box[1] + 1), str(3 * a + b + 1), font=font(11),
                      fill=MUTED)
    draw.rectangle([zx, zy, zx + 3 * zoom, zy + 3 * zoom], outline=HIGHLIGHT, width=3)
    draw.line([(win[2], win[1]), (zx, zy)], fill=HIGHLIGHT, width=1)
    draw.line([(win[2], win[3]), (zx, zy + 3 * zoom)], fill=HIGHLIGHT, width=1)
    draw.text((zx, 62), "2. one 3×3 window", font=label_font, fill=TEXT)
    draw.text((zx, 86), f"around output pixel ({i}, {j})", font=small, fill=MUTED)

    # --- 3. the window unrolled into one row of 9 -----------------------------------
    unit = 36
    ux, uy = 552, zy + zoom + (zoom - unit) // 2
    arrow(draw, (zx + 3 * zoom + 10, uy + unit / 2), (ux - 10, uy + unit / 2))
    patch = cols[row]
    paste(canvas, ink(patch[None]), ux, uy, 9 * unit, unit)
    grid_lines(draw, ux, uy, 9, 1, unit, unit)
    for k in range(9):
        box = (ux + k * unit, uy, ux + (k + 1) * unit, uy + unit)
        cell_text(draw, box, number(patch[k]), ink(patch[None])[0, k], 13)
        draw.text(((box[0] + box[2]) / 2, uy - 4), str(k + 1), anchor="mb", font=font(11),
                  fill=MUTED)
    draw.rectangle([ux, uy, ux + 9 * unit, uy + unit], outline=HIGHLIGHT, width=3)
    draw.text(((zx + 3 * zoom + ux) / 2, uy - 4), "unroll", anchor="mb", font=small,
              fill=MUTED)
    # That row times each kernel column is the output pixel of each filter.
    kernel = KERNEL.reshape(9, 2)
    for f in range(2):
        value = float(patch @ kernel[:, f])
        draw.text((ux, uy + unit + 30 + 26 * f),
                  f"row {row} · column f{f + 1} = {value:.2f}".replace("-", "−"),
                  font=small, fill=TEXT)
    draw.text((ux, uy + unit + 82), f"= pixel ({i}, {j}) of feature maps f1 and f2",
              font=small, fill=MUTED)
    draw.text((ux, 62), "3. unrolled: one row", font=label_font, fill=TEXT)
    draw.text((ux, 86), f"row {row} = 28·{i} + {j} of the patches", font=small, fill=MUTED)

    # --- 4. patches (784 x 9) x kernel (9 x 2) = outputs (784 x 2) -> feature maps ---
    top = 392
    draw.line([(30, top - 24), (WIDTH - 30, top - 24)], fill=GRID)
    draw.text((30, top), "4. every window is a row: the whole convolution is one "
              "matrix product", font=label_font, fill=TEXT)
    my, mh = top + 96, 392                      # 784 rows at half a pixel each
    px, pw = 100, 9 * 22
    paste(canvas, ink(cols), px, my, pw, mh, Image.Resampling.BOX)
    draw.rectangle([px, my, px + pw, my + mh], outline=GRID)
    ry = my + row * mh / 784
    draw.rectangle([px - 4, ry - 3, px + pw + 4, ry + 3], outline=HIGHLIGHT, width=3)
    draw.text((px - 10, ry), f"row {row}", anchor="rm", font=small, fill=HIGHLIGHT)
    draw.text((px + pw / 2, my - 34), "patches", anchor="mm", font=label_font, fill=TEXT)
    draw.text((px + pw / 2, my - 12), "784 × 9", anchor="mm", font=small, fill=MUTED)
    draw.text((px + pw / 2, my + mh + 16), "one row per", anchor="mm", font=small,
              fill=MUTED)
    draw.text((px + pw / 2, my + mh + 35), "output pixel", anchor="mm", font=small,
              fill=MUTED)

    sign = font(34)
    draw.text((px + pw + 34, my + mh / 2), "×", anchor="mm", font=sign, fill=TEXT)
    kx, kw, kh = px + pw + 62, 50, 36
    ky = my + (mh - 9 * kh) // 2
    paste(canvas, diverging(kernel, 2.6), kx, ky, 2 * kw, 9 * kh)
    grid_lines(draw, kx, ky, 2, 9, kw, kh)
    for k in range(9):
        draw.text((kx - 6, ky + k * kh + kh / 2), str(k + 1), anchor="rm", font=font(11),
                  fill=MUTED)
        for f in range(2):
            box = (kx + f * kw, ky + k * kh, kx + (f + 1) * kw, ky + (k + 1) * kh)
            cell_text(draw, box, f"{kernel[k, f]:.0f}", diverging(kernel, 2.6)[k, f], 16)
    for f in range(2):
        draw.text((kx + f * kw + kw / 2, ky - 6), f"f{f + 1}", anchor="mb", font=small,
                  fill=MUTED)
    draw.text((kx + kw, my - 34), "kernel", anchor="mm", font=label_font, fill=TEXT)
    draw.text((kx + kw, my - 12), "9 × 2", anchor="mm", font=small, fill=MUTED)
    draw.text((kx + kw, my + mh + 16), "(3, 3, 1, 2)", anchor="mm", font=small, fill=MUTED)
    draw.text((kx + kw, my + mh + 35), "reshaped", anchor="mm", font=small, fill=MUTED)

    scale = float(np.abs(maps).max())
    draw.text((kx + 2 * kw + 30, my + mh / 2), "=", anchor="mm", font=sign, fill=TEXT)
    ox, ow = kx + 2 * kw + 58, 2 * 22
    outputs = maps.reshape(784, 2)
    paste(canvas, diverging(outputs, scale), ox, my, ow, mh, Image.Resampling.BOX)
    draw.rectangle([ox, my, ox + ow, my + mh], outline=GRID)
    draw.line([(ox + ow / 2, my), (ox + ow / 2, my + mh)], fill=GRID)
    draw.rectangle([ox - 4, ry - 3, ox + ow + 4, ry + 3], outline=HIGHLIGHT, width=3)
    draw.text((ox + ow / 2, my - 34), "outputs", anchor="mm", font=label_font, fill=TEXT)
    draw.text((ox + ow / 2, my - 12), "784 × 2", anchor="mm", font=small, fill=MUTED)
    for f in range(2):
        draw.text((ox + f * 22 + 11, my + mh + 16), f"f{f + 1}", anchor="mm", font=small,
                  fill=MUTED)

    # The two columns, reshaped to 28 x 28: the feature maps.
    fx, fcell = 660, 6
    side = 28 * fcell
    arrow(draw, (ox + ow + 12, my + mh / 2), (fx - 14, my + mh / 2))
    draw.text(((ox + ow + fx) / 2, my + mh / 2 - 20), "reshape", anchor="mm", font=small,
              fill=MUTED)
    names = ("f1: vertical edges", "f2: horizontal edges")
    for f in range(2):
        fy = my + f * (side + 56)
        paste(canvas, diverging(maps[:, :, f], scale), fx, fy, side, side)
        draw.rectangle([fx, fy, fx + side, fy + side], outline=GRID)
        draw.rectangle([fx + j * fcell - 1, fy + i * fcell - 1, fx + (j + 1) * fcell,
                        fy + (i + 1) * fcell], outline=HIGHLIGHT, width=2)
        draw.text((fx + side / 2, fy - 12), names[f], anchor="mm", font=small, fill=MUTED)
        draw.text((fx + side + 8, fy + i * fcell + fcell / 2),
                  f"{maps[i, j, f]:.2f}".replace("-", "−"), anchor="lm", font=small,
                  fill=HIGHLIGHT)
    draw.text((fx + side / 2, my - 34), "feature maps", anchor="mm",
              font=label_font, fill=TEXT)

    draw.text((WIDTH / 2, HEIGHT - 20),
              f"MNIST training digit {DIGIT_INDEX} (a {arrays['label']}) through the NumPy "
              f"engine's own Conv2D: red > 0, blue < 0",
              anchor="mm", font=small, fill=MUTED)
    return canvas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "im2col.png")
    args = parser.parse_args()
    figure = draw_figure(compute())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"wrote {args.out} ({figure.width}x{figure.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
