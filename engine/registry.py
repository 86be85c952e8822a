"""Saved models on disk: `models/<name>/` holding `meta.json` and one weights file.

A save writes a complete folder under a temporary name and renames it into place, so a
crash never leaves half a model; a load checks the metadata, the weights' hash and every
shape before it builds anything. What meta.json holds and how it is checked is left to
engine.model_meta; the weights format belongs to each engine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic import atomic_folder, delete_folder, recover_folders, rename_folder
# ModelError, read_meta and check_weights_file are part of this module's API too.
from engine.model_meta import (META_FILE, ModelError, build_meta, check_weights_file,
                               history_from_meta, read_meta, write_json)
from engine.training import Classifier

DEFAULT_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# No trailing dot: Windows drops it, so "a." and "a" would be the same folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9_-])?")
# Names Windows cannot create, so a model folder stays portable.
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                  *(f"lpt{i}" for i in range(10))}
# Built by `make models`: every visitor's starting point.
SHIPPED_MODELS = ("default-mlp", "default-cnn")
SHARED_ENV = "DIGIT_LAB_SHARED"
# Streamlit Community Cloud checks an app's repository out under this folder.
COMMUNITY_CLOUD_CHECKOUT = Path("/mount/src")


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
            raise ModelError(f"{text[:80]!r} is not a model name: a name has no slashes "
                             "and stays in the models folder (letters, digits, '.', '_', "
                             "'-')")
        return root / safe_name(Path(text).name)
    return models_dir() / safe_name(text)


# ---- save -----------------------------------------------------------------------

def save(model: Classifier, name_or_path: str | os.PathLike, *,
         metrics: dict[str, Any] | None = None, command: str | None = None,
         overwrite: bool = False, owner: str | None = None,
         extra: dict[str, Any] | None = None) -> Path:
    """Write `model` as a complete folder, atomically; return the folder. `owner` (a
    visitor's owner id) is recorded for change_refusal; `extra` adds keys of its own to
    meta.json (e.g. the sweep that chose the config).

    An existing model of the same name is replaced only with `overwrite=True`, and even
    then the old folder stays whole until the new one is in place.
    """
    target = resolve(name_or_path)
    try:
        with atomic_folder(target, replace=overwrite) as staging:
            weights_file = model.save_weights(staging)
            meta = build_meta(model, target.name, weights_file, staging / weights_file,
                              metrics, command, owner)
            meta.update({key: value for key, value in (extra or {}).items()
                         if key not in meta})
            write_json(staging / META_FILE, meta)
    except FileExistsError:
        raise ModelError(f"a model called {target.name!r} already exists; choose another "
                         "name") from None
    return target


# ---- load -----------------------------------------------------------------------

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
    model.history = history_from_meta(meta)
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
    """Every model folder, newest first. Broken ones are listed with their problem: all
    that meta.json, the weights' hash and the weights' headers tell (`load` also checks
    the numbers and, for Keras, the shapes)."""
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
            _check_weights_inside(entry, meta)
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


def _check_weights_inside(folder: Path, meta: dict[str, Any]) -> None:
    """What loading would refuse, as far as the file tells without building the network
    (or importing TensorFlow): wrong shapes, pickled arrays, a Lambda layer."""
    try:
        if meta["engine"] == "numpy":
            from engine.numpy_nn.stack import parameter_layout
            from engine.numpy_nn.storage import check_headers

            check_headers(folder, *parameter_layout(meta["config_object"]))
        else:
            from engine.keras_nn.archive import check_archive

            check_archive(folder / meta["weights_file"])
    except ValueError as error:
        raise ModelError(f"{folder.name}: {error}") from None


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


# ---- who may change a model --------------------------------------------------------

def shared_deployment() -> bool:
    """Whether visitors share this app: DIGIT_LAB_SHARED=1 (0 says not), else whether it
    runs from Streamlit Community Cloud's checkout folder."""
    flag = os.environ.get(SHARED_ENV, "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return COMMUNITY_CLOUD_CHECKOUT in Path(__file__).resolve().parents


def recorded_owner(folder: Path) -> str | None:
    """The owner id in a model's meta.json, read leniently: broken models have owners too."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    owner = meta.get("owner") if isinstance(meta, dict) else None
    return owner if isinstance(owner, str) and owner else None


def change_refusal(name: str, owner: str | None, visitor: str | None) -> str | None:
    """Why `visitor` (an owner id) may not rename or delete the model `name` whose meta
    records `owner`; None when they may. A visitor of None is the one person managing a
    local install (or the command line), who may change every model."""
    if visitor is None:
        return None
    if name in SHIPPED_MODELS:
        return "it ships with the app and is every visitor's starting point"
    if owner is None:
        return "it records no owner (saved from the command line or by an older version)"
    if owner != visitor:
        return "another visitor saved it; only they can rename or delete it"
    return None


def _check_may_change(folder: Path, visitor: str | None, action: str) -> None:
    refusal = change_refusal(folder.name, recorded_owner(folder), visitor)
    if refusal:
        raise ModelError(f"you cannot {action} {folder.name!r}: {refusal}")


def rename(old: str, new: str, *, visitor: str | None = None) -> Path:
    """Give a model a new name; ModelError if it is missing, broken, the name taken, or
    `visitor` may not change it (change_refusal)."""
    source, target = resolve(old), resolve(new)
    if not source.is_dir():
        raise ModelError(f"no model called {old!r}")
    _check_may_change(source, visitor, "rename")
    meta = read_meta(source)
    try:
        rename_folder(source, target)
    except FileExistsError:
        raise ModelError(f"a model called {target.name!r} already exists") from None
    meta.pop("config_object")
    meta["name"] = target.name
    write_json(target / META_FILE, meta)
    return target


def delete(name: str, *, visitor: str | None = None) -> None:
    """Remove a model folder (broken ones too); ModelError if there is none or `visitor`
    may not change it (change_refusal)."""
    folder = resolve(name)
    if not folder.is_dir():
        raise ModelError(f"no model called {name!r}")
    _check_may_change(folder, visitor, "delete")
    delete_folder(folder)
