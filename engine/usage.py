"""What counts as bad usage of the command line, and how any error becomes one line.

Each command's arguments are checked here in one call made before the command loads any
data or model, so a typo costs no waiting. Both `engine.cli` (which reports errors) and
`engine.commands` (which does the work) import this module, so neither needs the other."""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

from engine import registry
from engine.adapt import check_options
from engine.config import (PRESETS, TrainConfig, default_engine, engine_problem,
                           field_spec, parse_settings)
from engine.model_meta import META_FILE

BENCH_EPOCHS = (1, 200)


class UsageError(Exception):
    """Bad usage: exit status 2."""


def one_line(error: BaseException | str) -> str:
    """A message folded onto one line (some, like MnistUnavailable's, span several)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines) or type(error).__name__


def model_location(text: str) -> str | Path:
    """A bare name means models_dir()/NAME; anything with a slash is a folder path, which
    the registry takes as given (only typed-in names are confined to models_dir())."""
    return Path(text) if "/" in text or os.sep in text else text


def train_arguments(args: argparse.Namespace) -> tuple[str, TrainConfig, Path | None]:
    """(engine, config, --out folder or None) for `train`."""
    engine, config = settings_from_args(args)
    return engine, config, output_folder(args)


def adapt_arguments(args: argparse.Namespace
                    ) -> tuple[str | Path, dict[str, Any], Path | None]:
    """(base model, Adaptation's keyword options, --out folder or None) for `adapt`."""
    options = {"epochs": args.epochs, "learning_rate_factor": args.learning_rate_factor,
               "holdout_fraction": args.holdout, "mnist_per_custom": args.mnist_per_custom,
               "augmentation": args.augmentation}
    try:
        check_options(**options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    # The fine-tune's config takes the seed, so the same range applies as for train.
    low, high = field_spec("seed").metadata["range"]
    if not low <= args.seed <= high:
        raise UsageError(f"--seed must be a whole number from {low} to {high}, "
                         f"got {args.seed}")
    return model_argument(args.model), {**options, "seed": args.seed}, output_folder(args)


def bench_arguments(args: argparse.Namespace) -> None:
    low, high = BENCH_EPOCHS
    if not low <= args.epochs <= high:
        raise UsageError(f"--epochs must be in [{low}, {high}], got {args.epochs}")


def model_argument(text: str) -> str | Path:
    """--model as the registry takes it; a name it could never hold is bad usage (a model
    that is simply not there is not: that is found when loading)."""
    location = model_location(text)
    try:
        registry.resolve(location)
    except registry.ModelError as error:
        raise UsageError(f"--model {text}: {error}") from None
    return location


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
        raise UsageError(f"{problem}; pass another --engine or --architecture")
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
    """Where --out saves, checked before any work starts; None without --out.

    UsageError (exit 2) for what the command line got wrong: a name no model can have, a
    path through a file, a taken name without --overwrite, something other than a model
    in the way. OSError (exit 1) for what the machine refuses: a folder it cannot write.
    """
    if not args.out:
        return None
    try:
        target = registry.resolve(model_location(args.out))
    except registry.ModelError as error:
        raise UsageError(f"--out {args.out}: {error}") from None
    # The save creates the missing folders, so the nearest one that exists is written.
    folder = next(path for path in [target.parent, *target.parent.parents]
                  if os.path.lexists(path))
    if not folder.is_dir():
        raise UsageError(f"--out {args.out}: {folder} is a file, not a folder")
    if os.path.lexists(target):
        if not target.is_dir() or (any(target.iterdir())
                                   and not (target / META_FILE).exists()):
            # --overwrite sets the old folder aside and deletes it: only a model's.
            raise UsageError(f"--out {args.out} exists and is not a model folder; choose "
                             "another name")
        if not args.overwrite:
            raise UsageError(f"--out {args.out} already exists; pass --overwrite to "
                             "replace it or choose another name")
    check_writable(folder, f"--out {args.out}")
    return target


def check_writable(folder: Path, what: str) -> None:
    """OSError unless a file can be created in `folder`. A real write: for root,
    os.access says yes to folders that refuse new files, such as /sys and /proc."""
    try:
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".digit-lab-write-test-")
    except OSError as error:
        raise OSError(f"{what}: cannot create files in {folder} "
                      f"({error.strerror or error})") from None
    os.close(descriptor)
    os.unlink(probe)
