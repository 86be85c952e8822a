"""Does a prepared 28x28 picture look like a digit at all? A model answers every picture with
some digit (a scribble as a 4 at 99%); this asks a small detector of its own instead: an MLP
(784 -> hidden -> 2) trained by scripts/train_detector.py on MNIST's training digits,
generated handwriting and generated letters, scribbles, shapes and paper, all prepared as an
upload is. It knows no classifier, so retraining or choosing a model does not move its rates.

Its weights and threshold ship in engine/detector/digit_detector.npz (loaded once, on first use).
The threshold was chosen on validation material only (MNIST training rows 54,000-59,999 and
generated pictures of other tuning seeds); docs/handwriting.md gives the held-out rates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.atomic import atomic_file

DETECTOR_PATH = Path(__file__).resolve().parent / "detector" / "digit_detector.npz"
PIXELS = 28 * 28
ARRAYS = ("hidden_kernel", "hidden_bias", "output_kernel", "output_bias")


class DetectorUnavailable(RuntimeError):
    """The detector's file is missing or damaged."""


@dataclass(frozen=True)
class DigitDetector:
    """Weights (784, h), (h,), (h, 2), (2,) in float32; `threshold` on the score; `about`
    says how it was made (training material, seeds, validation rates)."""

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray
    threshold: float
    about: dict

    def scores(self, images: np.ndarray) -> np.ndarray:
        """(n,) log-odds that each (28, 28) picture in [0, 1] (or uint8) is a digit."""
        images = np.asarray(images)
        scale = np.float32(1 / 255) if images.dtype == np.uint8 else np.float32(1)
        x = images.reshape(len(images), PIXELS).astype(np.float32) * scale     # (n, 784)
        hidden = np.maximum(x @ self.hidden_kernel + self.hidden_bias, 0)       # (n, h)
        logits = hidden @ self.output_kernel + self.output_bias                 # (n, 2)
        return logits[:, 1] - logits[:, 0]

    def digit_like(self, images: np.ndarray) -> np.ndarray:
        return self.scores(images) >= self.threshold


def save_detector(detector: DigitDetector, path: Path = DETECTOR_PATH) -> Path:
    """Write the detector atomically (a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        np.savez(handle, **{name: np.asarray(getattr(detector, name), np.float32)
                            for name in ARRAYS},
                 threshold=np.float64(detector.threshold),
                 about=np.asarray(json.dumps(detector.about)))
    return path


def load_detector(path: Path = DETECTOR_PATH) -> DigitDetector:
    """The detector in `path`, checked; DetectorUnavailable says what is wrong."""
    remedy = "run scripts/train_detector.py to rebuild it"
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: np.asarray(stored[name], np.float32) for name in ARRAYS}
            threshold = float(stored["threshold"])
            about = json.loads(str(stored["about"]))
    except FileNotFoundError:
        raise DetectorUnavailable(f"The digit detector {path} is missing; {remedy}") from None
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise DetectorUnavailable(f"The digit detector {path} is damaged ({error}); "
                                  f"{remedy}") from None
    hidden = arrays["hidden_bias"].shape[0] if arrays["hidden_bias"].ndim == 1 else -1
    shapes = [(PIXELS, hidden), (hidden,), (hidden, 2), (2,)]
    if hidden < 1 or [arrays[name].shape for name in ARRAYS] != shapes:
        raise DetectorUnavailable(f"The digit detector {path} has weights of the wrong shape; "
                                  f"{remedy}")
    if not all(np.isfinite(array).all() for array in arrays.values()) \
            or not np.isfinite(threshold):
        raise DetectorUnavailable(f"The digit detector {path} holds non-finite numbers; "
                                  f"{remedy}")
    return DigitDetector(**arrays, threshold=threshold, about=about)


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
