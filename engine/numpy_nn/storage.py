"""The NumPy engine's weights file: `model.npz` with one named array per kernel and
bias, written atomically and checked name by name on load. Where model folders live
and what else they hold is the registry's business.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from engine.atomic import atomic_file

WEIGHTS_FILE = "model.npz"


def check_weights(weights: list[np.ndarray], names: list[str],
                  shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Raise ValueError naming the first array of the wrong count, kind, shape or with
    non-finite values; return the arrays as given."""
    if len(weights) != len(names):
        raise ValueError(f"expected {len(names)} weight arrays ({', '.join(names)}), "
                         f"got {len(weights)}; the weights belong to another network")
    for weight, name, shape in zip(weights, names, shapes):
        weight = np.asarray(weight)
        if not (np.issubdtype(weight.dtype, np.floating)
                or np.issubdtype(weight.dtype, np.integer)):
            raise ValueError(f"{name} must hold numbers, got dtype {weight.dtype}")
        _check_shape(name, weight.shape, shape)
        if not np.all(np.isfinite(weight)):
            raise ValueError(f"{name} holds infinite or NaN values; these weights "
                             f"cannot be used, train again")
    return weights


def check_headers(folder: str | os.PathLike, names: list[str],
                  shapes: list[tuple[int, ...]]) -> None:
    """What `load` would refuse, told from the arrays' headers alone (no data is read):
    a file that is no .npz, missing or extra arrays, pickled objects, wrong shapes."""
    path = Path(folder) / WEIGHTS_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for member in archive.namelist():
                with archive.open(member) as stream:
                    version = np.lib.format.read_magic(stream)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    headers[member.removesuffix(".npy")] = read_header(stream)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error}); save the model "
                         "again") from None
    _check_names(path, set(headers), names)
    for name, shape in zip(names, shapes):
        stored_shape, _, dtype = headers[name]
        if dtype.hasobject:
            raise ValueError(f"{name} in {path} holds Python objects (pickled objects are "
                             "refused)")
        _check_shape(name, tuple(stored_shape), shape)


def save(folder: str | os.PathLike, names: list[str], weights: list[np.ndarray]) -> str:
    """Write `model.npz` into `folder` via a temporary file; return its file name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_file(folder / WEIGHTS_FILE) as file:
        np.savez(file, **dict(zip(names, weights)))
    return WEIGHTS_FILE


def load(folder: str | os.PathLike, names: list[str]) -> list[np.ndarray]:
    """The arrays called `names` from `folder/model.npz`, in that order. Never unpickles;
    any missing, extra or unreadable array is a ValueError naming it."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ValueError(f"no {WEIGHTS_FILE} in {folder}; save the model again")
    if not zipfile.is_zipfile(path):    # np.load would take it for a pickle and say so
        raise ValueError(f"{path} is not a .npz archive (damaged, or another kind of "
                         "file); save the model again")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz file ({error}); save the "
                         f"model again") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not named weights; save the "
                         f"model again")
    with archive:
        _check_names(path, set(archive.files), names)
        weights = []
        for name in names:
            try:
                weights.append(archive[name])
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
                raise ValueError(f"{name} in {path} cannot be read as a plain numeric "
                                 f"array (pickled objects are refused): {error}") from None
        return weights


def _check_names(path: Path, stored: set[str], names: list[str]) -> None:
    missing = [name for name in names if name not in stored]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; it was saved by a "
                         f"different network")
    extra = sorted(stored - set(names))
    if extra:
        raise ValueError(f"{path} holds unexpected arrays {', '.join(extra)}; it "
                         f"was saved by a different network")


def _check_shape(name: str, stored: tuple[int, ...], needed: tuple[int, ...]) -> None:
    if stored != needed:
        raise ValueError(f"{name} has shape {stored} but this network needs {needed}; the "
                         "weights belong to a different architecture")
