"""What counts as bad usage of the command line, and how any error becomes one line.

Both `engine.cli` (which reports errors) and `engine.commands` (which finds them) import
this module, so neither needs the other's."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from engine import registry
from engine.config import PRESETS, TrainConfig, default_engine, engine_problem, parse_settings


class UsageError(Exception):
    """Bad usage: exit status 2."""


def one_line(error: BaseException) -> str:
    """An error message folded onto one line (some, like MnistUnavailable, span several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines) or type(error).__name__


def model_location(text: str) -> str | Path:
    """A bare name means models_dir()/NAME; anything with a slash is a folder path, which
    the registry takes as given (only typed-in names are confined to models_dir())."""
    return Path(text) if "/" in text or os.sep in text else text


def settings_from_args(args: argparse.Namespace) -> tuple[str, TrainConfig]:
    """(engine, config): the preset, then a --config file, then individual flags,
    validated; the engine from --engine, else the file's, else the one the architecture
    needs."""
    values = PRESETS[args.preset].to_dict()
    file_engine = None
    if args.config_file:
        try:
            file_engine, fields = parse_settings(read_config_text(args.config_file))
            # Over the preset, as a partial file means: what it leaves out stays.
            values = TrainConfig.from_dict({**values, **fields}).to_dict()
        except ValueError as error:
            raise UsageError(f"--config {args.config_file}: {error}") from None
    for spec in dataclasses.fields(TrainConfig):
        given = getattr(args, spec.name, None)
        if given is not None:
            values[spec.name] = given
    try:
        config = TrainConfig.from_dict(values)
    except ValueError as error:
        raise UsageError(str(error)) from None
    engine = args.engine or file_engine or default_engine(config)
    problem = engine_problem(engine, config)
    if problem:
        raise UsageError(f"{problem}; pass --engine keras or --architecture mlp")
    return engine, config


def read_config_text(path: str) -> str:
    """The text of a --config file; UsageError naming the file if it is not readable text
    (a model's weights.npz passed by mistake, a folder, a missing file)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise UsageError(f"cannot read --config {path}: {error.strerror}") from None
    try:
        # utf-8-sig: editors on Windows start UTF-8 files with a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UsageError(
            f"--config {path} is not a JSON config (it is not text: byte "
            f"0x{data[error.start]:02x} at offset {error.start} is not UTF-8); pass a "
            "model's meta.json or a config exported from the dashboard") from None


def output_folder(args: argparse.Namespace) -> Path | None:
    """Where --out saves, checked before any work starts; None without --out."""
    if not args.out:
        return None
    try:
        target = registry.resolve(model_location(args.out))
    except registry.ModelError as error:
        raise UsageError(f"--out {args.out}: {error}") from None
    if target.exists() and not args.overwrite:
        raise UsageError(f"--out {args.out} already holds a model; pass --overwrite to "
                         "replace it or choose another name")
    return target
