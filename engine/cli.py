"""The command line's shape: argparse parsers generated from the config's fields, and the
error policy (one line on stderr; exit 2 for bad usage, 1 for anything else that failed).
The work itself is in `engine.commands`; what counts as bad usage, in `engine.usage`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

from engine import ENGINES
from engine.bench import PARTS
from engine.config import AUGMENTATIONS, PRESETS, TrainConfig, describe_range, value_text
from engine.explain import METHODS
from engine.usage import UsageError, one_line

# Flag names the issues promise, where they differ from the field's own name.
FLAG_NAMES = {"hidden_sizes": "--hidden", "lr_schedule": "--schedule",
              "initialisation": "--init", "validation_fraction": "--validation-fraction"}
# Said in the help of every --out; engine.usage.output_folder makes the checks.
OUT_CHECKS = ("A bare NAME goes in $DIGIT_LAB_MODELS (default models/), a path with a slash "
              "is taken as given. Checked before any work: exit 2 if it names something "
              "other than a model, a model without --overwrite, or a path through a file; "
              "exit 1 if its folder cannot be written.")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # one line, not argparse's usage dump
        raise UsageError(f"{message} (see {self.prog} --help)")


def config_flag(name: str) -> str:
    """The command line's flag for config field `name`."""
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def train_command(engine: str, config: TrainConfig, out: str | None = None) -> str:
    """The `python -m engine train` command that trains `config` on `engine`: the preset
    nearest to it (the fewest fields apart), then a flag for each field that differs."""
    def apart(name: str) -> int:
        return sum(getattr(PRESETS[name], spec.name) != getattr(config, spec.name)
                   for spec in dataclasses.fields(TrainConfig))

    preset_name = min(PRESETS, key=apart)
    words = ["python -m engine train", f"--engine {engine}"]
    if preset_name != "default":
        words.append(f"--preset {preset_name}")
    for spec in dataclasses.fields(TrainConfig):
        value = getattr(config, spec.name)
        if value == getattr(PRESETS[preset_name], spec.name):
            continue
        words.append(f"{config_flag(spec.name)} {value_text(value)}")
    if out:
        words.append(f"--out {out}")
    return " ".join(words)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyperparameters (default: the preset's values)")
    for spec in dataclasses.fields(TrainConfig):
        flag = config_flag(spec.name)
        meta = spec.metadata
        if "choices" in meta:
            group.add_argument(flag, dest=spec.name, choices=meta["choices"], help=meta["help"])
        elif "max_layers" in meta:
            group.add_argument(flag, dest=spec.name, metavar="N,N,...", help=meta["help"])
        else:
            kind = int if spec.type in ("int", int) else float
            group.add_argument(flag, dest=spec.name, type=kind, metavar=kind.__name__.upper(),
                               help=f"{meta['help']} Range {describe_range(spec)}.")
    group.add_argument("--config", dest="config_file", metavar="FILE",
                       help="a JSON config (as saved in a model's meta.json or exported from "
                            "the dashboard); flags given as well override it")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine",
                     description="Digit Lab's command line: MNIST data, training, evaluation, "
                                 "adaptation, prediction, explanations and the benchmark.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = commands.add_parser("data", help="where MNIST comes from, and its counts")
    data.add_argument("--json", action="store_true", help="print one JSON object")

    train = commands.add_parser("train", help="train a model and print one JSON line")
    train.add_argument("--engine", choices=ENGINES,
                       help="default: keras for --architecture cnn, numpy otherwise")
    train.add_argument("--preset", choices=list(PRESETS), default="default")
    _add_config_flags(train)
    train.add_argument("--out", metavar="models/NAME",
                       help="save the model there. " + OUT_CHECKS)
    train.add_argument("--overwrite", action="store_true",
                       help="replace an existing model at --out")

    evaluate = commands.add_parser("evaluate", help="score a saved model on MNIST's test "
                                                    "set and, optionally, custom digits")
    evaluate.add_argument("--model", required=True, metavar="models/NAME")
    evaluate.add_argument("--custom-dir", metavar="DIR",
                          help="a folder of custom digits, one sub-folder per label")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    adapt = commands.add_parser("adapt", help="fine-tune a saved model on custom digits "
                                              "mixed with MNIST; print one JSON line")
    adapt.add_argument("--model", required=True, metavar="models/NAME")
    adapt.add_argument("--custom-dir", metavar="DIR",
                       help="the custom digits, one sub-folder per label (default: "
                            "$DIGIT_LAB_CUSTOM_DIR or custom_digits/)")
    adapt.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    adapt.add_argument("--learning-rate-factor", type=float, default=0.3, metavar="FLOAT",
                       help="the model's learning rate times this (default 0.3)")
    adapt.add_argument("--holdout", type=float, default=0.25, metavar="FLOAT",
                       help="share of each digit's drawings kept back to check the "
                            "adaptation (default 0.25)")
    adapt.add_argument("--mnist-per-custom", type=float, default=3.0, metavar="FLOAT",
                       help="MNIST training images mixed in per custom image (default 3)")
    adapt.add_argument("--augmentation", choices=AUGMENTATIONS, default="none",
                       help="distort the repeated custom digits (default none)")
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--out", metavar="models/NAME",
                       help="save the adapted model there. " + OUT_CHECKS)
    adapt.add_argument("--overwrite", action="store_true",
                       help="replace an existing model at --out")

    predict = commands.add_parser("predict", help="classify image files, one JSON line each")
    predict.add_argument("--model", required=True, metavar="models/NAME")
    predict.add_argument("images", nargs="+", metavar="IMAGE")

    explain = commands.add_parser("explain", help="which pixels a prediction rests on: one "
                                                  "JSON line per image with a 28x28 map")
    explain.add_argument("--model", required=True, metavar="models/NAME")
    explain.add_argument("--method", choices=list(METHODS), default="saliency",
                         help="saliency (the score's gradient), integrated-gradients "
                              "(from a black image; adds baseline_score) or occlusion "
                              "(the score's drop when 4x4 squares are hidden); default "
                              "saliency")
    explain.add_argument("--target", type=int, choices=range(10), metavar="DIGIT",
                         help="the digit whose score is explained (default: the "
                              "predicted one)")
    explain.add_argument("--json", action="store_true",
                         help="one JSON line per image (the only output; accepted for "
                              "symmetry with the other commands)")
    explain.add_argument("images", nargs="+", metavar="IMAGE")

    bench = commands.add_parser("bench", help="measure speed and accuracy of both engines")
    bench.add_argument("--epochs", type=int, default=3, help="epochs per engine (default 3)")
    bench.add_argument("--quick", action="store_true",
                       help="12,000 images and at most 2 epochs per part, to check the bench "
                            "works (its figures mean little)")
    bench.add_argument("--only", choices=PARTS, action="append",
                       help="run only these parts (repeatable); strong-mlp and strong-cnn "
                            "run only when named")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    # Internal: each part runs in a subprocess of its own (see engine/bench.py).
    bench.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)

    sweep = commands.add_parser(
        "sweep", help="train many configs under one Optuna study and rank them by "
                      "validation accuracy; progress on stderr",
        description="Each trial trains the base settings (the preset, --config and the "
                    "flags) with the --vary values Optuna picks, and is scored on the "
                    "validation images, never the test set.")
    sweep.add_argument("--engine", choices=ENGINES,
                       help="default: keras for --architecture cnn, numpy otherwise")
    sweep.add_argument("--preset", choices=list(PRESETS), default="default")
    sweep.add_argument("--vary", action="append", metavar="NAME=VALUES",
                       help="a parameter to vary (repeatable): NAME=LOW:HIGH for a range "
                            "(:log or :linear; default: the scale the parameter declares), "
                            "or NAME=A|B|C, e.g. learning_rate=1e-4:1e-1:log or "
                            "hidden_sizes=64,128|256,128. Ranges must lie within the "
                            "parameter's own. Leave it out to join a --study already in "
                            "--storage with its stored settings")
    sweep.add_argument("--trials", type=int, default=20,
                       help="trials to run now (default 20; at most $DIGIT_LAB_MAX_TRIALS, "
                            "default 200; 0 with --json and no --vary prints a stored study)")
    sweep.add_argument("--sampler", choices=("auto", "grid", "tpe"), default="auto",
                       help="auto (default): grid for one or two parameters, TPE for more")
    sweep.add_argument("--no-pruning", dest="pruning", action="store_false",
                       help="train every trial to the end (default: stop a trial whose "
                            "validation accuracy is below the median of earlier trials at "
                            "the same epoch)")
    sweep.add_argument("--storage", metavar="URL",
                       help="where the study lives: journal:PATH (a file several workers on "
                            "one machine share) or a database URL such as "
                            "postgresql://user:password@host/db (workers on many machines). "
                            "Default: in memory, for this run only")
    sweep.add_argument("--study", metavar="NAME",
                       help="the study's name in --storage (default: sweep); an existing "
                            "study resumes")
    sweep.add_argument("--workers", type=int, default=1,
                       help="worker processes to start on this machine (needs --storage); "
                            "--trials are shared among them")
    sweep.add_argument("--json", action="store_true",
                       help="print one JSON object at the end: study, trials, best_params, "
                            "best_value")
    _add_config_flags(sweep)
    # Internal: the worker number of a process `--workers` started.
    sweep.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from engine import commands

    try:
        args = build_parser().parse_args(argv)
        handler = getattr(commands, f"run_{args.command}")
        return handler(args)
    except UsageError as error:
        _fail(one_line(error))
        return 2
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except BrokenPipeError:
        # The reader left (`... | head -1`): nothing more to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, RuntimeError, OSError) as error:
        _fail(one_line(error))
        return 1


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
