"""People's own digits: `custom_digits/<label>/*.png`, one folder per label (the layout of
Keras's `image_dataset_from_directory`). Loading never stops at a bad file; saving is
atomic and keeps the original picture, so better preprocessing later still applies."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine import metrics
from engine.atomic import atomic_write_bytes
from engine.images.imageio import UnreadableImage, read_image

DEFAULT_CUSTOM_DIR = Path(__file__).resolve().parent.parent / "custom_digits"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# A folder of thousands of drawings is fine; an accidental photo dump is not.
MAX_FILES = 20_000
LABELS = [str(digit) for digit in range(10)]
MAX_MISPLACED = 100


def custom_dir() -> Path:
    """Where custom digits live: $DIGIT_LAB_CUSTOM_DIR, else the repository's folder."""
    return Path(os.environ.get("DIGIT_LAB_CUSTOM_DIR", DEFAULT_CUSTOM_DIR))


@dataclass
class CustomDigits:
    """Preprocessed custom digits and the files that could not be used."""

    images: np.ndarray                       # (n, 28, 28) float32 in [0, 1]
    labels: np.ndarray                       # (n,) uint8
    paths: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)   # (file, reason)

    def __len__(self) -> int:
        return len(self.labels)


def load_custom_digits(folder: str | os.PathLike | None = None) -> CustomDigits:
    """Every readable digit under `folder/<0-9>/`; unreadable files are reported, not raised."""
    root = Path(folder) if folder is not None else custom_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"no custom digits folder at {root}; create it with one "
                                "sub-folder per label, 0 to 9")
    # Here, not at the top: SciPy's ndimage takes 0.3 s to import, and pages that only
    # name the folder (Evaluate's first view) should not wait for it.
    from engine.images.preprocess import NoDigitFound, prepare_digit

    images, labels, paths = [], [], []
    pictures, skipped = _scan(root)
    for path in pictures:
        label = int(path.parent.name)
        try:
            images.append(prepare_digit(read_image(path)).image)
        except (UnreadableImage, NoDigitFound, ValueError, OSError) as error:
            # Any one bad file is reported and skipped; it never stops the load.
            skipped.append((path, " ".join(str(error).split()) or type(error).__name__))
            continue
        labels.append(label)
        paths.append(path)
    stacked = np.stack(images) if images else np.zeros((0, 28, 28), np.float32)
    return CustomDigits(stacked, np.asarray(labels, dtype=np.uint8), paths, skipped)


def _scan(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """In one pass over the folder: the pictures in the label folders, and the files a
    person put there that the layout cannot use, each with why (pictures outside the label
    folders, other files inside them). One level deep and capped: pointed at a large
    folder by mistake, the scan stays quick and the report short."""
    pictures, misplaced = [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and entry.name in LABELS:
            for path in sorted(entry.iterdir()):
                if not path.is_file() or path.name.startswith("."):
                    continue
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    pictures.append(path)
                else:
                    misplaced.append((path, f"not a picture ({path.suffix or 'no suffix'}); "
                                            f"use {', '.join(sorted(IMAGE_SUFFIXES))}"))
        elif entry.is_dir():
            misplaced += [(path, f"in {entry.name}/, which is no label: move it into a "
                                 "folder named 0 to 9")
                          for path in sorted(entry.iterdir())
                          if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            misplaced.append((entry, "outside the label folders: move it into the folder "
                                     "named after its digit (0 to 9)"))
    return pictures[:MAX_FILES], misplaced[:MAX_MISPLACED]


def folder_signature(folder: str | os.PathLike | None = None) -> tuple:
    """Changes whenever a file is added, removed or rewritten: a cache key for loads."""
    root = Path(folder) if folder is not None else custom_dir()
    if not root.is_dir():
        return ()
    pictures, misplaced = _scan(root)
    signature = []
    for path in [*pictures, *(path for path, _ in misplaced)]:
        try:
            status = path.stat()
        except OSError:         # deleted while we look: the next call sees the change
            continue
        signature.append((str(path), status.st_mtime_ns, status.st_size))
    return tuple(signature)


def count_by_label(folder: str | os.PathLike | None = None) -> list[int]:
    """How many image files each label folder holds (without decoding them)."""
    root = Path(folder) if folder is not None else custom_dir()
    counts = [0] * 10
    for path in _scan(root)[0] if root.is_dir() else []:
        counts[int(path.parent.name)] += 1
    return counts


def save_custom_digit(picture: np.ndarray | bytes, label: int,
                      folder: str | os.PathLike | None = None) -> Path:
    """Store one labelled picture as PNG under `folder/<label>/`, atomically; the path of
    the file that holds it (the earlier one if this very picture was stored before).

    `picture` is an image array (e.g. the canvas's RGBA) or the bytes of an image file;
    it is decoded first, so only a readable image with a digit in it is ever stored.
    """
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label <= 9:
        raise ValueError(f"label must be a digit from 0 to 9, got {label!r}")
    from engine.images.preprocess import prepare_digit

    pixels = read_image(picture) if isinstance(picture, (bytes, bytearray)) else np.asarray(picture)
    prepare_digit(pixels)   # raises NoDigitFound: never store an empty drawing
    png = _encode_png(pixels)
    label_dir = (Path(folder) if folder is not None else custom_dir()) / str(int(label))
    label_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(png).hexdigest()[:10]
    # The same drawing added twice (a second click on Add) stays one file: the one there.
    for existing in sorted(label_dir.glob(f"*-{digest}.png")):
        return existing
    # Time first, so a folder sorts in saving order; the hash tells apart drawings saved
    # in the same second.
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return atomic_write_bytes(label_dir / f"{stamp}-{digest}.png", png)


def _encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    if pixels.dtype != np.uint8:
        scale = 255.0 if pixels.max(initial=0) <= 1.0 else 1.0
        pixels = np.clip(pixels * scale, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def evaluate_custom(model: Any, folder: str | os.PathLike | None = None, *,
                    digits: CustomDigits | None = None) -> dict[str, Any]:
    """The same scores on a custom-digits folder (or already loaded `digits`), plus each
    misread and skipped file."""
    custom = digits if digits is not None else load_custom_digits(folder)
    skipped = [{"file": str(path), "reason": reason} for path, reason in custom.skipped]
    if not len(custom):
        return {"accuracy": None, "count": 0, "per_class_accuracy": [None] * 10,
                "confusion_matrix": [[0] * 10 for _ in range(10)], "mistakes": [],
                "skipped": skipped}
    probabilities = model.predict_proba(custom.images)
    scores = metrics.summary(custom.labels, probabilities)
    wrong = metrics.mistakes(custom.labels, probabilities)
    return {
        "accuracy": round(scores["accuracy"], 6),
        "count": len(custom),
        "per_class_accuracy": _rounded(scores["per_class_accuracy"]),
        "confusion_matrix": scores["confusion_matrix"],
        "mistakes": [{"file": str(custom.paths[i]), "label": int(custom.labels[i]),
                      "predicted": int(np.argmax(probabilities[i])),
                      "confidence": round(float(np.max(probabilities[i])), 4)}
                     for i in wrong],
        "skipped": skipped,
    }


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if value is None else round(float(value), 6) for value in values]
