"""A model's meta.json: built from a trained model, written as strict JSON, read back and checked
with the weights' hash; where model folders live, and saving them, are left to engine.registry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine import ENGINES
from engine.atomic import atomic_file
from engine.config import TrainConfig
from engine.training import Classifier, History

FORMAT_VERSION = 1
META_FILE = "meta.json"


class ModelError(ValueError):
    """A model folder that cannot be saved or loaded; the message says why."""


# ---- build and write -------------------------------------------------------------

def build_meta(model: Classifier, name: str, weights_file: str, weights_path: Path,
               metrics: dict[str, Any] | None, command: str | None,
               owner: str | None = None) -> dict[str, Any]:
    meta = {
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
    if owner is not None:
        # Who may rename or delete it on a shared deployment (engine.registry).
        meta["owner"] = owner
    return meta


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


def write_json(path: Path, data: Any) -> None:
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


def history_from_meta(meta: dict[str, Any]) -> History:
    """The history in meta.json, with the losses stored as null (NaN) numbers again."""
    data = dict(meta.get("history") or {})
    data["batch_loss"] = [math.nan if value is None else value
                          for value in data.get("batch_loss") or []]
    data["epochs"] = [{**record, **{key: math.nan for key in ("train_loss", "train_accuracy")
                                    if record.get(key, 0) is None}}
                      for record in data.get("epochs") or []]
    return History.from_dict(data)


# ---- read and check --------------------------------------------------------------

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
        history_from_meta(meta)
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
