"""Does a prepared 28x28 picture look like a digit at all? A model answers every picture with
some digit (a scribble as a 4 at 99%); this asks a small detector of its own instead, trained
by scripts/train_detector.py on MNIST's training digits, generated handwriting and generated
letters, scribbles, shapes and paper, all prepared as an upload is. It knows no classifier, so
retraining or choosing a model does not move its rates.

The detector is zero or more conv blocks (3x3 "same" with a bias, 2x2 max pool, ReLU: the
NumPy engine's own layers) and then an MLP head (features -> hidden -> 2). Its weights and
threshold ship in engine/detector/digit_detector.npz (loaded once, on first use). The
threshold was chosen on validation material only (MNIST training rows 54,000-59,999 and
generated pictures of other tuning seeds); docs/handwriting.md gives the held-out rates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.atomic import atomic_file
from engine.numpy_nn.conv import Conv2D, MaxPool2D

DETECTOR_PATH = Path(__file__).resolve().parent / "detector" / "digit_detector.npz"
SIDE = 28
HEAD = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias")
KERNEL = 3
# Pictures scored at once: bounds the im2col matrices (29 MB for 256 pictures in the second
# block of 16 -> 32 filters); larger chunks were slower per picture, not faster (measured
# with 8 -> 16 filters on the loaded 2-core machine).
CHUNK = 256


class DetectorUnavailable(RuntimeError):
    """The detector's file is missing or damaged."""


@dataclass(frozen=True)
class DigitDetector:
    """The head's weights (f, h), (h,), (h, 2), (2,) in float32, f the feature count (784
    without conv blocks); `conv_blocks` holds each block's (3, 3, in, out) kernel and (out,)
    bias; `threshold` on the score; `about` says how it was made (training material,
    seeds, validation rates)."""

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray
    threshold: float
    about: dict
    conv_blocks: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(n,) log-odds that each (28, 28) picture in [0, 1] (or uint8) is a digit."""
        images = np.asarray(images)
        if len(images) > CHUNK:
            return np.concatenate([self.scores(images[start:start + CHUNK])
                                   for start in range(0, len(images), CHUNK)])
        scale = np.float32(1 / 255) if images.dtype == np.uint8 else np.float32(1)
        x = images.reshape(len(images), SIDE, SIDE, 1).astype(np.float32) * scale
        for kernel, bias in self.conv_blocks:
            # Pool, then ReLU: the same as ReLU then pool, on a quarter of the values.
            x = np.maximum(MaxPool2D().infer(Conv2D(kernel, bias).infer(x)), 0)
        x = x.reshape(len(images), -1)                                           # (n, f)
        hidden = np.maximum(x @ self.hidden_kernel + self.hidden_bias, 0)       # (n, h)
        logits = hidden @ self.output_kernel + self.output_bias                 # (n, 2)
        return logits[:, 1] - logits[:, 0]

    def digit_like(self, images: np.ndarray) -> np.ndarray:
        return self.scores(images) >= self.threshold


def save_detector(detector: DigitDetector, path: Path = DETECTOR_PATH) -> Path:
    """Write the detector atomically (a reader sees the old file or the new one)."""
    arrays = {name: getattr(detector, name) for name in HEAD}
    for index, (kernel, bias) in enumerate(detector.conv_blocks):
        arrays[f"conv_{index}_kernel"], arrays[f"conv_{index}_bias"] = kernel, bias
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        np.savez(handle, **{name: np.asarray(array, np.float32)
                            for name, array in arrays.items()},
                 threshold=np.float64(detector.threshold),
                 about=np.asarray(json.dumps(detector.about)))
    return path


def _expected_shapes(arrays: dict[str, np.ndarray], blocks: int) -> list[tuple[int, ...]]:
    """The shapes the arrays must have, sized by their biases' lengths."""
    def width(name: str) -> int:
        return arrays[name].shape[0] if arrays[name].ndim == 1 else -1

    shapes, channels, side = [], 1, SIDE
    for index in range(blocks):
        filters = width(f"conv_{index}_bias")
        shapes += [(KERNEL, KERNEL, channels, filters), (filters,)]
        channels, side = filters, side // 2
    hidden = width("hidden_bias")
    return shapes + [(side * side * channels, hidden), (hidden,), (hidden, 2), (2,)]


def load_detector(path: Path = DETECTOR_PATH) -> DigitDetector:
    """The detector in `path`, checked; DetectorUnavailable says what is wrong."""
    remedy = "run scripts/train_detector.py to rebuild it"
    try:
        with np.load(path, allow_pickle=False) as stored:
            blocks = sum(1 for name in stored.files if name.endswith("_kernel")) - 2
            names = [f"conv_{index}_{part}" for index in range(max(blocks, 0))
                     for part in ("kernel", "bias")] + list(HEAD)
            arrays = {name: np.asarray(stored[name], np.float32) for name in names}
            threshold = float(stored["threshold"])
            about = json.loads(str(stored["about"]))
    except FileNotFoundError:
        raise DetectorUnavailable(f"The digit detector {path} is missing; {remedy}") from None
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise DetectorUnavailable(f"The digit detector {path} is damaged ({error}); "
                                  f"{remedy}") from None
    shapes = _expected_shapes(arrays, blocks)
    if min(size for shape in shapes for size in shape) < 1 \
            or [array.shape for array in arrays.values()] != shapes:
        raise DetectorUnavailable(f"The digit detector {path} has weights of the wrong shape; "
                                  f"{remedy}")
    if not all(np.isfinite(array).all() for array in arrays.values()) \
            or not np.isfinite(threshold):
        raise DetectorUnavailable(f"The digit detector {path} holds non-finite numbers; "
                                  f"{remedy}")
    conv_blocks = tuple((arrays[f"conv_{index}_kernel"], arrays[f"conv_{index}_bias"])
                        for index in range(blocks))
    return DigitDetector(**{name: arrays[name] for name in HEAD}, threshold=threshold,
                         about=about, conv_blocks=conv_blocks)


@lru_cache(maxsize=1)
def shipped_detector() -> DigitDetector:
    return load_detector(DETECTOR_PATH)


def looks_like_digit(images: np.ndarray, detector: DigitDetector | None = None
                     ) -> np.ndarray:
    """(n,) bool: True where a prepared (n, 28, 28) picture looks like a digit to the
    detector. The model's own answer is not asked: validation showed its doubt adds
    nothing the detector does not already know."""
    detector = detector if detector is not None else shipped_detector()
    return detector.digit_like(images)
