"""Loaders shared by every visitor of this server process: MNIST and saved models are
read once, kept read-only, and handed out by reference (`st.cache_resource`)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from engine import registry
from engine.data import MnistData, MnistUnavailable, load_mnist
from ui.active import ActiveModel, describe_model


@st.cache_resource(show_spinner="Loading MNIST...")
def _mnist() -> MnistData:
    return load_mnist()


_prefetch_started = threading.Event()


def prefetch_mnist() -> None:
    """Start reading and checking MNIST in a thread, once per process, so that a first
    page's imports and sidebar overlap it: the content check's SHA-256 (0.06-0.1 s)
    runs outside the GIL on the other core. `mnist()` then finds it done, or waits on
    load_mnist's lock for the same read."""
    if _prefetch_started.is_set():
        return
    _prefetch_started.set()
    threading.Thread(target=_load_quietly, name="mnist-prefetch", daemon=True).start()


def _load_quietly() -> None:
    try:
        # The copies on this machine only: a download belongs to the page's own call,
        # with its progress shown, and is then tried once, not twice.
        load_mnist(allow_download=False)
    except Exception:   # not remembered: the page's own call tries again and says why
        return


def mnist() -> tuple[MnistData | None, str | None]:
    """MNIST, or None and a message for people (a failure is not cached, so a later
    visit retries)."""
    try:
        return _mnist(), None
    except MnistUnavailable as error:
        return None, str(error)


SHIPPED_MODELS = registry.SHIPPED_MODELS


@st.cache_resource(show_spinner="Loading the model...", max_entries=16)
def _saved_model(path: str, weights_sha256: str) -> ActiveModel:
    # weights_sha256 is part of the cache key: a model saved again under the same name
    # is loaded afresh.
    model = registry.load(path)
    name = Path(path).name
    accuracy = (registry.read_meta(path).get("metrics") or {}).get("test_accuracy")
    return ActiveModel(model=model, name=name, origin=_origin(name), path=Path(path),
                       test_accuracy=accuracy)


def _origin(name: str) -> str:
    return "shipped" if name in SHIPPED_MODELS else "saved"


def saved_model(path: Path) -> tuple[ActiveModel | None, str | None]:
    """A model from the registry shared by all sessions, or None and why it failed."""
    try:
        meta = registry.read_meta(path)
        return _saved_model(str(path), meta["weights_sha256"]), None
    except registry.ModelError as error:
        return None, str(error)


def saved_model_summary(path: Path) -> str | None:
    """A saved model in one line from its meta.json, or None when it cannot be read."""
    try:
        stamp = (path / registry.META_FILE).stat().st_mtime_ns
    except OSError:
        return None
    return _summary(str(path), stamp)


@st.cache_data(show_spinner=False, max_entries=16)
def _summary(path: str, meta_stamp: int) -> str | None:
    # meta_stamp is part of the key: a model saved again is described afresh.
    try:
        meta = registry.read_meta(path)
    except registry.ModelError:
        return None
    name = Path(path).name
    return describe_model(name, _origin(name), meta["engine"], meta["config_object"],
                          (meta.get("metrics") or {}).get("test_accuracy"))


@st.cache_data(show_spinner=False)
def sample_indices(per_class: int, spread: int = 97) -> np.ndarray:
    """Indices of `per_class` test digits of each class, for the Home page's grid: every
    `spread`-th of each class's images, so the grid shows many hands. No random numbers:
    numpy.random's import alone would add 0.05-0.15 s to a cold server's first page."""
    data, _ = mnist()
    return np.concatenate([np.flatnonzero(data.test_labels == digit)[::spread][:per_class]
                           for digit in range(10)])


@st.cache_data(show_spinner="Reading the custom digits...", max_entries=4)
def _custom_digits(folder: str, signature: tuple) -> Any:
    from engine.custom import load_custom_digits

    return load_custom_digits(folder)


def custom_digits(folder: Path) -> Any:
    """The preprocessed custom digits (a CustomDigits), read again only when the folder
    changes. Imported here, not at the top: preprocessing pulls in scipy, which the Home
    page does not need and should not wait for."""
    from engine.custom import folder_signature

    return _custom_digits(str(folder), folder_signature(folder))
