"""What can be told of a `.keras` file without TensorFlow: it is a zip archive whose
config.json describes the model. Enough for the registry's listing to flag a file that
loading would refuse, without paying TensorFlow's import for a table."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Layers whose config carries Python code: safe_mode refuses them on load.
CODE_LAYERS = frozenset({"Lambda", "TFOpLambda"})


def check_archive(path: str | Path) -> None:
    """Raise ValueError if `path` is no Keras archive or its model runs arbitrary code."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except KeyError:
        raise ValueError(f"{path} has no config.json: not a Keras model file") from None
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable Keras model ({error}); re-save or "
                         "re-train it") from None
    if any(name in CODE_LAYERS for name in _class_names(config)):
        raise ValueError(f"{path} contains a Lambda layer, i.e. arbitrary Python code, which "
                         "is refused for safety; only load models saved by this app")


def _class_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            yield node["class_name"]
        for value in node.values():
            yield from _class_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _class_names(value)
