"""The same weights in both engines: copy a model's weights into a network the other
engine builds from the same config, and measure how closely the two agree."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import build_model
from engine.timing import median_latency
from engine.training import Classifier


def other_engine(model: Classifier) -> Classifier:
    """A network of the other engine from `model`'s config, holding `model`'s weights
    (for a CNN, the batch norms' moving statistics too: both engines list them in Keras's
    `get_weights` order)."""
    twin = build_model("keras" if model.engine_name == "numpy" else "numpy", model.config)
    twin.set_weights([np.array(weight) for weight in model.get_weights()])
    return twin


def compare_engines_on(model: Classifier, images: np.ndarray) -> dict[str, Any]:
    """Agreement of predicted digits, largest probability gap, and one-image latencies."""
    twin = other_engine(model)
    mine, theirs = model.predict_proba(images), twin.predict_proba(images)
    return {
        "engines": (model.engine_name, twin.engine_name),
        "agreement": float(np.mean(np.argmax(mine, 1) == np.argmax(theirs, 1))),
        "max_probability_gap": float(np.max(np.abs(mine - theirs))),
        "latency_ms": (median_latency(model, images[:1]) * 1000,
                       median_latency(twin, images[:1]) * 1000),
    }
