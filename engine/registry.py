"""Saved models on disk: `models/<name>/` holding `meta.json` and one weights file.

A save writes a complete folder under a temporary name and renames it into place, so a
crash never leaves half a model; a load checks the metadata, the weights' hash and every
shape before it builds anything. The weights format belongs to each engine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import ENGINES
from engine.atomic import (atomic_file, atomic_folder, delete_folder, recover_folders,
                           rename_folder)
from engine.config import TrainConfig
from engine.training import Classifier, History

FORMAT_VERSION = 1
META_FILE = "meta.json"
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# No trailing dot: Windows drops it, so "a." and "a" would be the same folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?")
# Names Windows cannot create, so a model folder stays portable.
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                  *(f"lpt{i}" for i in range(10))}


class ModelError(ValueError):
    """A model folder that cannot be saved or loaded; the message says why."""


def models_dir() -> Path:
    """Where models live: $DIGIT_LAB_MODELS, else the repository's models/."""
    return Path(os.environ.get("DIGIT_LAB_MODELS", DEFAULT_MODELS_DIR))


def safe_name(name: str) -> str:
    """`name` if it is a safe folder name, else ModelError saying what is allowed."""
    name = name.strip() if isinstance(name, str) else ""
    if not NAME_PATTERN.fullmatch(name) or name.split(".")[0].lower() in RESERVED_NAMES:
        raise ModelError(
            f"model name {name[:80]!r} is not allowed: use 1-64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit and not ending with '.' (no slashes, "
            "no reserved device names such as 'con')")
    return name


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A model folder. A str is a model name in models_dir() (a path to a folder right
    there is accepted too), so typed text never reaches elsewhere; a Path object is used
    as it is (the command line's explicit choice). The folder's name is always checked."""
    if isinstance(name_or_path, os.PathLike):
        path = Path(name_or_path)
        safe_name(path.name)
        return path
    text = name_or_path if isinstance(name_or_path, str) else ""
    if os.sep in text or (os.altsep and os.altsep in text):
        root = models_dir()
        if Path(text).resolve().parent != root.resolve():
            raise ModelError(f"{text[:80]!r} is not a model name: give the name of a "
                             f"model in {root}, without slashes")
        return root / safe_name(Path(text).name)
    return models_dir() / safe_name(text)


# ---- save -----------------------------------------------------------------------

def save(model: Classifier, name_or_path: str | os.PathLike, *,
         metrics: dict[str, Any] | None = None, command: str | None = None,
         overwrite: bool = False) -> Path:
    """Write `model` as a complete folder, atomically; return the folder.

    An existing model of the same name is replaced only with `overwrite=True`, and even
    then the old folder stays whole until the new one is in place.
    """
    target = resolve(name_or_path)
    try:
        with atomic_folder(target, replace=overwrite) as staging:
            weights_file = model.save_weights(staging)
            meta = _build_meta(model, target.name, weights_file, staging / weights_file,
                               metrics, command)
            _write_json(staging / META_FILE, meta)
    except FileExistsError:
        raise ModelError(f"a model called {target.name!r} already exists; choose another "
                         "name or allow overwriting") from None
    return target


def _build_meta(model: Classifier, name: str, weights_file: str, weights_path: Path,
                metrics: dict[str, Any] | None, command: str | None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "engine": model.engine_name,
        "architecture": model.config.architecture,
        "config": model.config.to_dict(),
        "history": model.history.to_dict(),
        "metrics": metrics or {},
        "parameter_count": model.parameter_count,
        "weights_file": weights_file,
        "weights_sha256": file_sha256(weights_path),
        # Microseconds, so two saves in one second still list newest first.
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        "command": command,
        "versions": library_versions(model.engine_name),
    }


def library_versions(engine: str) -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    if engine == "keras" and "keras" in sys.modules:
        versions["keras"] = sys.modules["keras"].__version__
        versions["tensorflow"] = sys.modules["tensorflow"].__version__
    return versions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    with atomic_file(path, "w") as handle:
        json.dump(_finite(data), handle, indent=2, allow_nan=False, default=_json_default)


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None: meta.json stays strict JSON, readable by
    any tool, even when an epoch stopped before its first batch (its loss is NaN)."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    raise TypeError(f"cannot store {type(value).__name__} in meta.json")


def _history(meta: dict[str, Any]) -> History:
    """The history in meta.json, with the losses stored as null (NaN) numbers again."""
    data = dict(meta.get("history") or {})
    data["batch_loss"] = [math.nan if value is None else value
                          for value in data.get("batch_loss") or []]
    data["epochs"] = [{**record, **{key: math.nan for key in ("train_loss", "train_accuracy")
                                    if record.get(key, 0) is None}}
                      for record in data.get("epochs") or []]
    return History.from_dict(data)


# ---- load -----------------------------------------------------------------------

def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated meta.json of a model folder; ModelError says what is wrong."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise ModelError(f"no model at {folder}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{folder.name}: meta.json is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{folder.name}: meta.json is unreadable ({error})") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{folder.name}: meta.json must hold a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{folder.name}: format_version {meta.get('format_version')!r} "
                         f"is not supported (expected {FORMAT_VERSION})")
    if meta.get("engine") not in ENGINES:
        raise ModelError(f"{folder.name}: engine must be one of {', '.join(ENGINES)}, "
                         f"got {meta.get('engine')!r}")
    for key in ("history", "metrics", "versions"):
        if not isinstance(meta.get(key) or {}, dict):
            raise ModelError(f"{folder.name}: meta.json's {key} must be a JSON object")
    try:
        meta["config_object"] = TrainConfig.from_dict(meta.get("config"))
        _history(meta)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{folder.name}: meta.json holds an invalid config or history "
                         f"({error})") from None
    weights_file = meta.get("weights_file")
    if not isinstance(weights_file, str) or Path(weights_file).name != weights_file \
            or weights_file in ("", ".", "..", META_FILE):
        raise ModelError(f"{folder.name}: meta.json names no valid weights file")
    return meta


def check_weights_file(folder: Path, meta: dict[str, Any]) -> Path:
    """The weights file named in `meta`, if it exists and matches the recorded hash."""
    weights_path = folder / meta["weights_file"]
    if not weights_path.is_file():
        raise ModelError(f"{folder.name}: the weights file {meta['weights_file']} is missing")
    try:
        digest = file_sha256(weights_path)
    except OSError as error:
        raise ModelError(f"{folder.name}: cannot read {meta['weights_file']} "
                         f"({error.strerror})") from None
    if digest != meta.get("weights_sha256"):
        raise ModelError(f"{folder.name}: {meta['weights_file']} does not match the hash in "
                         "meta.json (corrupted or replaced); retrain or restore the model")
    return weights_path


def load(name_or_path: str | os.PathLike) -> Classifier:
    """Rebuild a saved model from its config and weights, checking everything first."""
    folder = resolve(name_or_path)
    if not folder.is_dir():     # perhaps a save was killed between its two renames
        recover_folders(folder.parent)
    meta = read_meta(folder)
    check_weights_file(folder, meta)
    config = meta["config_object"]
    try:
        if meta["engine"] == "numpy":
            from engine.numpy_nn.network import NumpyNetwork
            model: Classifier = NumpyNetwork.load_weights(folder, config)
        else:
            from engine.keras_nn import KerasNetwork
            model = KerasNetwork.load_weights(folder, config)
    except ModelError:
        raise
    except (ValueError, OSError) as error:
        raise ModelError(f"{folder.name}: {error}") from None
    model.history = _history(meta)
    return model


# ---- list, rename, delete -------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    """One row of the registry's listing; `problem` is set for a broken model."""

    name: str
    path: Path
    engine: str | None
    architecture: str | None
    test_accuracy: float | None
    created: str | None
    size_bytes: int
    problem: str | None
    meta: dict[str, Any]


def list_models(folder: str | os.PathLike | None = None) -> list[ModelInfo]:
    """Every model folder, newest first. Broken ones are listed with their problem (as
    far as meta.json and the weights' hash tell; `load` checks the rest)."""
    root = Path(folder) if folder is not None else models_dir()
    if not root.is_dir():
        return []
    recover_folders(root)
    infos = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        meta: dict[str, Any] = {}
        try:
            meta = read_meta(entry)
            check_weights_file(entry, meta)
            problem = None
        except ModelError as error:
            problem = str(error)
        accuracy = (meta.get("metrics") or {}).get("test_accuracy")
        created = meta.get("created")
        infos.append(ModelInfo(
            name=entry.name, path=entry, engine=meta.get("engine"),
            architecture=meta.get("architecture"),
            test_accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else None,
            created=created if isinstance(created, str) else None,
            size_bytes=_folder_size(entry), problem=problem, meta=meta))
    return sorted(infos, key=_created_order, reverse=True)


def _created_order(info: ModelInfo) -> float:
    try:
        return dt.datetime.fromisoformat(info.created or "").timestamp()
    except ValueError:
        return float("-inf")


def _folder_size(folder: Path) -> int:
    size = 0
    for path in folder.iterdir():
        with contextlib.suppress(OSError):      # a file deleted while we look
            size += path.stat().st_size if path.is_file() else 0
    return size


def rename(old: str, new: str) -> Path:
    """Give a model a new name; ModelError if it is missing, broken or the name taken."""
    source, target = resolve(old), resolve(new)
    if not source.is_dir():
        raise ModelError(f"no model called {old!r}")
    meta = read_meta(source)
    try:
        rename_folder(source, target)
    except FileExistsError:
        raise ModelError(f"a model called {target.name!r} already exists") from None
    meta.pop("config_object")
    meta["name"] = target.name
    _write_json(target / META_FILE, meta)
    return target


def delete(name: str) -> None:
    """Remove a model folder (broken ones too); ModelError if there is none."""
    folder = resolve(name)
    if not folder.is_dir():
        raise ModelError(f"no model called {name!r}")
    delete_folder(folder)
