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
from engine.limits import max_sweep_trials, max_sweep_workers
from engine.model_meta import META_FILE
from engine.sweep_spec import SweepSpec, parse_vary

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


def sweep_arguments(args: argparse.Namespace) -> SweepSpec | None:
    """The sweep to create from --vary and the base settings, checked in full; None when
    --vary is left out to join a study already in --storage (checked once it is open)."""
    # 0 is for joining a stored study only to print it (--json).
    low, high = (1 if args.vary else 0), max_sweep_trials()
    if not low <= args.trials <= high:
        raise UsageError(f"--trials must be from {low} to {high} (this host's limit, "
                         f"DIGIT_LAB_MAX_TRIALS), got {args.trials}")
    most = max_sweep_workers()
    if not 1 <= args.workers <= most:
        raise UsageError(f"--workers must be from 1 to {most} (this machine's limit, "
                         f"DIGIT_LAB_MAX_WORKERS), got {args.workers}")
    if args.workers > 1 and not args.storage:
        raise UsageError(f"--workers {args.workers} needs a --storage the workers share "
                         "(journal:PATH, or a database URL); an in-memory study lives in "
                         "one process")
    if args.workers > max(args.trials, 1):
        raise UsageError(f"--workers {args.workers} is more than the {args.trials} trials "
                         "to share; some would have nothing to do")
    if not args.vary:
        return _joining(args)
    params = []
    for text in args.vary:
        try:
            params.append(parse_vary(text))
        except ValueError as error:
            raise UsageError(f"--vary {text}: {error}") from None
    engine, base = settings_from_args(args)
    for param in params:
        if getattr(args, param.name, None) is not None:
            raise UsageError(f"{param.name} is both set by its flag and varied by --vary; "
                             "give one of them")
    spec = SweepSpec(engine, tuple(params), args.trials, base, args.sampler, args.pruning)
    problems = spec.problems()
    if problems:
        raise UsageError(problems[0].message)
    return spec


def _joining(args: argparse.Namespace) -> None:
    if not args.storage:
        raise UsageError("give the parameters to vary with --vary (only a study kept in a "
                         "--storage can be joined without them)")
    settings = [spec.name for spec in dataclasses.fields(TrainConfig)
                if getattr(args, spec.name, None) is not None]
    settings += [flag for flag, given in (("--engine", args.engine),
                                          ("--config", args.config_file),
                                          ("--preset", args.preset != "default"),
                                          ("--sampler", args.sampler != "auto"),
                                          ("--no-pruning", not args.pruning)) if given]
    if settings:
        raise UsageError(f"without --vary the study's stored settings are used, so "
                         f"{settings[0]} would be ignored; drop it, or give --vary to "
                         "create a study")
    return None


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
