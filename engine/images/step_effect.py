"""What each preprocessing step does to the prediction: every step's picture shrunk to
28x28 as it stands (the way many MNIST demos feed a canvas to a model) and what the model
reads there. The last step is the model's real input, so its reading is the prediction."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from engine.images.preprocess import PreparedDigit

SIDE = 28


def step_readings(model: Any, prepared: PreparedDigit) -> list[tuple[int, float]]:
    """(digit, probability) the model reads at each step, in the steps' order."""
    images = np.stack([shrunk(step.image) for step in prepared.steps[:-1]] + [prepared.image])
    probabilities = model.predict_proba(images)
    return [(int(np.argmax(row)), float(np.max(row))) for row in probabilities]


def shrunk(image: np.ndarray) -> np.ndarray:
    """`image` (2-D, [0, 1]) made square with its own background and area-averaged to
    28x28: no cropping, centring or inversion, which is the point."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape == (SIDE, SIDE):
        return image
    height, width = image.shape
    side = max(height, width)
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    square = np.full((side, side), np.median(border), dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    square[top:top + height, left:left + width] = image
    resized = Image.fromarray(square, mode="F").resize((SIDE, SIDE), Image.Resampling.BOX)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
