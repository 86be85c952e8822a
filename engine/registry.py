"""Saved models on disk: `models/<name>/` holding `meta.json` and one weights file.

A save writes a complete folder under a temporary name and renames it into place, so a
crash never leaves half a model; a load checks the metadata, the weights' hash and every
shape before it builds anything. The weights format belongs to each engine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine import ENGINES
from engine.config import TrainConfig
from engine.training import Classifier, History

FORMAT_VERSION = 1
META_FILE = "meta.json"
DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Names Windows cannot create, so a model folder stays portable.
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                  *(f"lpt{i}" for i in range(10))}
_TEMP_PREFIX, _REPLACED_PREFIX = ".tmp-", ".replaced-"


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
            f"model name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no slashes, no reserved device names)")
    return name


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A model folder from a bare name (in models_dir()) or a path to the folder."""
    text = os.fspath(name_or_path)
    if os.sep in text or (os.altsep and os.altsep in text) or Path(text).is_absolute():
        return Path(text)
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
    safe_name(target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover_interrupted(target.parent)
    if target.exists() and not overwrite:
        raise ModelError(f"a model called {target.name!r} already exists; choose another "
                         "name or allow overwriting")
    staging = target.parent / f"{_TEMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        weights_file = model.save_weights(staging)
        meta = _build_meta(model, target.name, weights_file, staging / weights_file,
                           metrics, command)
        _write_json_atomic(staging / META_FILE, meta)
        _fsync_dir(staging)
        _move_into_place(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    if not target.exists():
        try:
            os.rename(staging, target)
        except OSError:
            raise ModelError(f"a model called {target.name!r} was saved by someone else "
                             "at the same moment; choose another name") from None
        _fsync_dir(target.parent)
        return
    if not overwrite:
        raise ModelError(f"a model called {target.name!r} already exists")
    # Two renames: if the process dies between them, _recover_interrupted puts the old
    # folder back, so the previous model is never lost.
    replaced = target.parent / f"{_REPLACED_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
    os.rename(target, replaced)
    os.rename(staging, target)
    _fsync_dir(target.parent)
    shutil.rmtree(replaced, ignore_errors=True)


def _recover_interrupted(folder: Path) -> None:
    """Put back models whose replacement was interrupted; drop stale staging folders."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name.startswith(_REPLACED_PREFIX):
            original = folder / entry.name[len(_REPLACED_PREFIX):].rsplit("-", 1)[0]
            if not original.exists():
                os.rename(entry, original)
            else:
                shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(_TEMP_PREFIX) and _older_than(entry, hours=1):
            shutil.rmtree(entry, ignore_errors=True)


def _older_than(path: Path, *, hours: float) -> bool:
    try:
        age = dt.datetime.now().timestamp() - path.stat().st_mtime
    except OSError:
        return False
    return age > hours * 3600


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
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
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


def _write_json_atomic(path: Path, data: Any) -> None:
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, allow_nan=False, default=_json_default)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in meta.json")


def _fsync_dir(path: Path) -> None:
    if os.name == "posix":
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


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
    try:
        meta["config_object"] = TrainConfig.from_dict(meta.get("config"))
        History.from_dict(meta.get("history") or {})
    except (TypeError, ValueError) as error:
        raise ModelError(f"{folder.name}: meta.json holds an invalid config or history "
                         f"({error})") from None
    weights_file = meta.get("weights_file")
    if not isinstance(weights_file, str) or Path(weights_file).name != weights_file:
        raise ModelError(f"{folder.name}: meta.json names no valid weights file")
    return meta


def load(name_or_path: str | os.PathLike) -> Classifier:
    """Rebuild a saved model from its config and weights, checking everything first."""
    folder = resolve(name_or_path)
    meta = read_meta(folder)
    weights_path = folder / meta["weights_file"]
    if not weights_path.is_file():
        raise ModelError(f"{folder.name}: the weights file {meta['weights_file']} is missing")
    if file_sha256(weights_path) != meta.get("weights_sha256"):
        raise ModelError(f"{folder.name}: {meta['weights_file']} does not match the hash in "
                         "meta.json (corrupted or replaced); retrain or restore the model")
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
    model.history = History.from_dict(meta.get("history") or {})
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
    """Every model folder, newest first; broken ones are listed with their problem."""
    root = Path(folder) if folder is not None else models_dir()
    if not root.is_dir():
        return []
    _recover_interrupted(root)
    infos = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        size = sum(path.stat().st_size for path in entry.iterdir() if path.is_file())
        try:
            meta = read_meta(entry)
            problem = None
        except ModelError as error:
            meta, problem = {}, str(error)
        infos.append(ModelInfo(
            name=entry.name, path=entry, engine=meta.get("engine"),
            architecture=meta.get("architecture"),
            test_accuracy=(meta.get("metrics") or {}).get("test_accuracy"),
            created=meta.get("created"), size_bytes=size, problem=problem, meta=meta))
    return sorted(infos, key=lambda info: info.created or "", reverse=True)


def rename(old: str, new: str) -> Path:
    source, target = resolve(old), resolve(new)
    if not source.is_dir():
        raise ModelError(f"no model called {old!r}")
    if target.exists():
        raise ModelError(f"a model called {target.name!r} already exists")
    meta = read_meta(source)
    meta.pop("config_object")
    meta["name"] = target.name
    _write_json_atomic(source / META_FILE, meta)
    os.rename(source, target)
    return target


def delete(name: str) -> None:
    folder = resolve(name)
    if not folder.is_dir():
        raise ModelError(f"no model called {name!r}")
    # Rename first so a half-deleted folder never shows up as a broken model.
    doomed = folder.parent / f"{_TEMP_PREFIX}deleted-{folder.name}-{uuid.uuid4().hex[:8]}"
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
