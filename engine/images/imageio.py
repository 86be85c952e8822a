"""Safe decoding of any uploaded picture into an RGBA uint8 array; what the picture shows is left
to engine.images.preprocess."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps

MAX_BYTES = 20 * 1024 * 1024        # an upload larger than this is refused before decoding
MAX_PIXELS = 40_000_000             # declared in the header; checked before any pixel is decoded
MAX_SIDE = 2000                     # decoded pictures are shrunk so their larger side fits this

READABLE = "PNG, JPEG, BMP, GIF, WebP or TIFF"

# Leading bytes of files people upload by mistake, and what to tell them.
_KNOWN_NOT_PICTURES = (
    (b"PK\x03\x04", "this is a ZIP archive, not a picture; unpack it and upload one image"),
    (b"\x1f\x8b", "this is a gzip archive, not a picture; unpack it and upload one image"),
    (b"%PDF", "this is a PDF document; export the page as PNG or JPEG"),
    (b"Rar!", "this is a RAR archive, not a picture; unpack it and upload one image"),
    (b"7z\xbc\xaf", "this is a 7-Zip archive, not a picture; unpack it and upload one image"),
)


class UnreadableImage(ValueError):
    """The input is not a picture we can decode safely; the message is one line for people."""


def read_image(source: bytes | bytearray | memoryview | str | os.PathLike | BinaryIO, *,
               max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
               max_side: int = MAX_SIDE) -> np.ndarray:
    """Decode `source` (bytes, a path or a binary file object) into an (H, W, 4) uint8 RGBA array.

    Rotated per EXIF, first frame of an animation, shrunk to at most `max_side` px per side.
    Raises UnreadableImage, and nothing else, for input that is not a safe, whole picture
    (TypeError only for a `source` that is none of the three kinds).
    """
    data = _read_bytes(source, max_bytes)
    _refuse_known_non_pictures(data)
    # A warning turned into an error here only, so Pillow's global state stays as it was.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data, max_pixels)
        try:
            return _decode(image, max_side)
        finally:
            image.close()


def image_to_rgba(image: Image.Image, max_side: int | None = None) -> np.ndarray:
    """An already opened PIL image in any mode as an (H, W, 4) uint8 RGBA array."""
    image = _to_standard_mode(image)
    if max_side is not None and max(image.size) > max_side:
        # resize, not thumbnail: thumbnail would shrink the caller's own image in place.
        image = image.resize(_fit_side(image.size, max_side), Image.Resampling.LANCZOS,
                             reducing_gap=3.0)
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    return np.asarray(image, dtype=np.uint8).copy()


def _read_bytes(source: Any, max_bytes: int) -> bytes:
    too_big = f"the file is larger than {max_bytes // (1024 * 1024)} MB; shrink or re-export it"
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            if path.stat().st_size > max_bytes:
                raise UnreadableImage(too_big)
            data = path.read_bytes()
        except (OSError, ValueError) as error:      # ValueError: a NUL byte in the name
            reason = getattr(error, "strerror", None) or error
            raise UnreadableImage(f"cannot read {path.name[:60]!r}: {reason}") from error
    elif hasattr(source, "read"):
        try:
            data = source.read(max_bytes + 1)
        except (OSError, ValueError) as error:
            raise UnreadableImage(f"cannot read the upload: {error}") from error
        if not isinstance(data, (bytes, bytearray)):
            raise UnreadableImage("the upload was opened as text; open it in binary mode ('rb')")
        data = bytes(data)
    else:
        raise TypeError("read_image takes bytes, a path or a binary file, "
                        f"got {type(source).__name__}")
    if len(data) > max_bytes:
        raise UnreadableImage(too_big)
    if not data:
        raise UnreadableImage("the file is empty")
    return data


def _refuse_known_non_pictures(data: bytes) -> None:
    for magic, reason in _KNOWN_NOT_PICTURES:
        if data.startswith(magic):
            raise UnreadableImage(reason)
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc"):
        raise UnreadableImage("HEIC photos are not supported; export or share it as JPEG")
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) and b"<svg" in head:
        raise UnreadableImage("SVG is a vector format; export it as PNG")
    if _looks_like_text(data[:4096]):
        raise UnreadableImage(f"this is a text file, not a picture; upload a {READABLE} image")


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False        # binary, or a UTF-8 character cut at the 4096-byte mark: let Pillow try
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return printable >= 0.95 * len(text)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(_bomb_reason(None, max_pixels)) from error
    except Image.UnidentifiedImageError as error:
        raise UnreadableImage(f"not a picture we can read; upload a {READABLE} image") from error
    except Exception as error:  # noqa: BLE001 -- a plugin may raise anything on a malformed header
        raise UnreadableImage(_damage_reason(error, "header")) from error
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise UnreadableImage(_bomb_reason((width, height), max_pixels))
    if width < 1 or height < 1:
        image.close()
        raise UnreadableImage("the picture has no pixels")
    return image


def _decode(image: Image.Image, max_side: int) -> np.ndarray:
    # Truncated files fail in load() as long as PIL.ImageFile.LOAD_TRUNCATED_IMAGES stays False,
    # its default, which nothing here changes (a test checks it).
    try:
        if image.format in ("JPEG", "MPO"):
            # JPEG can decode at 1/2, 1/4 or 1/8 scale: far less memory for a phone photo.
            image.draft(None, _fit_side(image.size, max_side))
        image.load()
        image = ImageOps.exif_transpose(image) or image
        return image_to_rgba(image, max_side)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(_bomb_reason(image.size, MAX_PIXELS)) from error
    except MemoryError as error:
        raise UnreadableImage("the picture is too large to decode in memory") from error
    except Exception as error:  # noqa: BLE001 -- decoders raise many types on corrupt data
        raise UnreadableImage(_damage_reason(error, "data")) from error


def _to_standard_mode(image: Image.Image) -> Image.Image:
    """The picture in L, LA, RGB or RGBA."""
    mode = image.mode
    if mode.startswith("I;16"):
        return Image.fromarray(np.rint(np.asarray(image) / 257.0).astype(np.uint8))
    if mode in ("I", "F"):
        # 32-bit integers or floats: by their range (8- or 16-bit values, [0, 1], or stretched).
        return Image.fromarray(np.rint(unit_range(np.asarray(image)) * 255).astype(np.uint8))
    if mode in ("P", "PA"):
        return image.convert("RGBA")      # keeps a palette's transparent entry as alpha
    if mode in ("RGBa", "La"):
        return image.convert("RGBA")
    if mode not in ("L", "LA", "RGB", "RGBA"):
        return image.convert("RGB")       # CMYK, YCbCr, LAB, HSV, 1, RGBX
    return image


def unit_range(values: np.ndarray) -> np.ndarray:
    """Pixels of any numeric dtype as float32 in [0, 1]: bool, uint8 and uint16 by their dtype;
    other numbers by their range (within [0, 1], 255 or 65535 as such, else stretched)."""
    if values.dtype == bool:
        return values.astype(np.float32)
    if values.dtype == np.uint8:
        return values * np.float32(1 / 255)
    if values.dtype == np.uint16:
        return values * np.float32(1 / 65535)
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise ValueError(f"a picture must hold real numbers, got dtype {values.dtype}")
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    full_scale = next((top for top in (1.0, 255.0, 65535.0) if low >= 0 and high <= top), None)
    if full_scale is not None:
        return (values / full_scale).astype(np.float32)
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)      # uniform, at whatever level
    # Halved first, so even a range spanning all of float64 does not overflow.
    unit = (values / 2 - low / 2) / (high / 2 - low / 2)
    return np.clip(unit, 0, 1).astype(np.float32)


def _fit_side(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(width, height) scaled, aspect kept, so the larger side is `max_side`."""
    scale = max_side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _bomb_reason(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"{max_pixels / 1e6:g} megapixels"
    if size is None:
        return f"the picture declares far more pixels than the {limit} we accept; resize it first"
    width, height = size
    return (f"the picture declares {width}x{height} pixels "
            f"({width * height / 1e6:.0f} megapixels), more than the {limit} we accept; "
            "resize it first")


def _damage_reason(error: BaseException, part: str) -> str:
    text = " ".join(str(error).split())[:80] or type(error).__name__
    if any(word in text.lower() for word in ("truncated", "broken data stream", "end of file")):
        return "the picture is cut short (truncated); upload the whole file again"
    return f"the picture's {part} is damaged ({text})"
