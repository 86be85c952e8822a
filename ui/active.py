"""The active model every page works with: a model with where it came from, and how pages
name it. Kept apart from session state so the cache can build one without importing it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import TrainConfig, describe
from engine.training import Classifier

ENGINE_NAMES = {"numpy": "NumPy", "keras": "Keras"}    # how pages name the engines


@dataclass(eq=False)
class ActiveModel:
    """A model with where it came from; its test-set predictions are computed once."""

    model: Classifier
    name: str
    origin: str                      # "shipped", "saved" or "trained here"
    path: Path | None = None
    test_accuracy: float | None = None
    _test_probabilities: np.ndarray | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def engine(self) -> str:
        return self.model.engine_name

    def describe(self) -> str:
        return describe_model(self.name, self.origin, self.engine, self.model.config,
                              self.test_accuracy)

    def test_probabilities(self, test_images: np.ndarray) -> np.ndarray:
        """(10000, 10) probabilities on MNIST's test set, read-only, computed once."""
        with self._lock:
            if self._test_probabilities is None:
                probabilities = self.model.predict_proba(test_images)
                probabilities.flags.writeable = False
                self._test_probabilities = probabilities
            return self._test_probabilities

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per model and key (e.g. the hidden-space map over 5,000 test
        digits), shared by every visitor holding this model. Streamlit's caches cannot
        key on a model trained here, which has no file to hash."""
        with self._memo_lock:
            if key not in self._memo:
                self._memo[key] = compute()
            return self._memo[key]


def describe_model(name: str, origin: str, engine: str, config: TrainConfig,
                   test_accuracy: float | None) -> str:
    """A model in one line: name, origin, engine, network, test accuracy."""
    accuracy = f", {test_accuracy:.2%} on MNIST test" if test_accuracy is not None else ""
    return f"{name} ({origin}): {ENGINE_NAMES[engine]} {describe(config)}{accuracy}"
