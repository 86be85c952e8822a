"""Each preprocessing step's reading: the picture as it stands after that step, shrunk to
28x28, read by a real model; the last reading is the model's prediction."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine import registry
from engine.images.preprocess import prepare_digit
from engine.images.step_effect import shrunk, step_readings


def test_shrunk_keeps_the_background_and_the_aspect():
    tall = np.ones((200, 100), np.float32)          # white paper...
    tall[50:150, 40:60] = 0.0                        # ...with a dark bar in the middle
    small = shrunk(tall)
    assert small.shape == (28, 28) and small.dtype == np.float32
    assert small[:, :5].min() == 1.0 and small[:, -5:].min() == 1.0   # padded with paper
    assert small[14, 14] < 0.2                        # the bar stays in the middle
    assert shrunk(small) is small


def test_a_digit_on_paper_is_misread_raw_and_read_after_preprocessing(mnist):
    model = registry.load(registry.models_dir() / "default-mlp")
    digit = mnist.test_images[0]                    # a 7
    big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR))
    paper = np.full((600, 600), 235, np.uint8)
    paper[40:320, 300:580] = 255 - big              # dark ink, small and off in a corner
    prepared = prepare_digit(paper)
    readings = step_readings(model, prepared)
    assert len(readings) == len(prepared.steps)
    final = model.predict_proba(prepared.image[None])[0]
    assert readings[-1] == (int(np.argmax(final)), float(np.max(final)))
    assert readings[-1][0] == mnist.test_labels[0]
    assert readings[0][0] != mnist.test_labels[0]   # dark on light, off-centre: misread
