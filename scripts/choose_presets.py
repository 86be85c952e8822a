"""Choose the presets on MNIST's validation split, never on its test set.

For each preset picked among alternatives, train every candidate with the engines' own
code on the training images minus a held-out validation split (the same
`split_training_data` that `python -m engine train` uses), and compare them on the last
epoch's validation accuracy. The test images are never loaded into a model here.

    .venv/bin/python scripts/choose_presets.py                  # every preset, ~50 min
    .venv/bin/python scripts/choose_presets.py --only cnn       # one preset; others kept

Prints a table and merges it into docs/presets-selection.json (one entry per preset, so
a rerun of one preset leaves the others' measurements alone).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import build_model  # noqa: E402
from engine.config import PRESETS, TrainConfig, default_engine  # noqa: E402
from engine.training import EpochRecord, split_training_data  # noqa: E402

# 6,000 validation images: the standard error of an accuracy near 99% is then about
# 0.13 points, small enough to separate candidates that differ by a few tenths. The
# presets themselves hold out 5%; 10% here costs the selection runs 3,000 training images.
SELECTION_VALIDATION_FRACTION = 0.1

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "presets-selection.json"

# Each preset's candidates, cheapest first, so that a tie goes to the earlier one. Every
# candidate sets all the fields its preset is chosen on, so the list means the same
# whatever PRESETS holds today. Where candidates cost the same per epoch, the preset's
# current setting comes first: changing it would need a reason the measurement gives.
CANDIDATES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # Same cost per epoch: only the learning rate each epoch differs.
    "default": [
        ("cosine", {"lr_schedule": "cosine"}),
        ("constant", {"lr_schedule": "constant"}),
        ("step", {"lr_schedule": "step"}),
    ],
    # No augmentation skips the per-batch warps; no dropout skips the masks.
    "strong-mlp": [
        ("dropout 0.2, no augmentation", {"dropout": 0.2, "augmentation": "none"}),
        ("no dropout, light augmentation", {"dropout": 0.0, "augmentation": "light"}),
        ("dropout 0.2, light augmentation", {"dropout": 0.2, "augmentation": "light"}),
    ],
    # Three narrow blocks cost fewer multiply-adds (and 5x fewer dense weights, the last
    # map being 3x3 instead of 7x7) than two wide ones.
    "cnn": [
        ("conv 16-32-64, no augmentation", {"conv_filters": (16, 32, 64),
                                            "augmentation": "none"}),
        ("conv 16-32-64, light augmentation", {"conv_filters": (16, 32, 64),
                                               "augmentation": "light"}),
        ("conv 32-64, light augmentation", {"conv_filters": (32, 64),
                                            "augmentation": "light"}),
    ],
    # The cnn network for time to accuracy: every candidate fits 90 s of training on the
    # 2-core machine. Batch 64 and 128 cost about the same per epoch there (measured
    # 0.9-1.0x), so the 5-epoch ones cost the same; the preset's comes first.
    "fast-cnn": [
        ("batch 64, lr 0.0015, 4 epochs", {"batch_size": 64, "learning_rate": 1.5e-3,
                                           "epochs": 4}),
        ("batch 64, lr 0.0015, 5 epochs", {"batch_size": 64, "learning_rate": 1.5e-3,
                                           "epochs": 5}),
        ("batch 128, lr 0.002, 5 epochs", {"batch_size": 128, "learning_rate": 2e-3,
                                           "epochs": 5}),
    ],
    # Same network and cost: strong only distorts further.
    "strong-cnn": [
        ("light augmentation", {"augmentation": "light"}),
        ("strong augmentation", {"augmentation": "strong"}),
    ],
}


def selection_config(preset_name: str, changes: dict[str, Any],
                     epochs_cap: int | None) -> TrainConfig:
    config = PRESETS[preset_name].replace(
        **changes, validation_fraction=SELECTION_VALIDATION_FRACTION)
    if epochs_cap is not None and epochs_cap < config.epochs:
        config = config.replace(epochs=epochs_cap)
    return config


def is_preset(preset_name: str, changes: dict[str, Any]) -> bool:
    return PRESETS[preset_name].replace(**changes) == PRESETS[preset_name]


def train_on_validation_split(config: TrainConfig, data: Any, label: str) -> dict[str, Any]:
    """Train one candidate exactly as `engine train` does, without the test evaluation."""
    engine = default_engine(config)
    train_images, train_labels, val_images, val_labels = split_training_data(
        data.train_images, data.train_labels, config)
    model = build_model(engine, config)

    def report(record: EpochRecord) -> None:
        print(f"  {label}: epoch {record.epoch}/{config.epochs}  val_acc "
              f"{record.val_accuracy:.4f}  val_loss {record.val_loss:.4f}  "
              f"{record.seconds:.1f}s", file=sys.stderr, flush=True)

    started = time.monotonic()
    history = model.fit(train_images, train_labels, validation=(val_images, val_labels),
                        on_epoch=report)
    if history.status != "completed":
        raise RuntimeError(f"{label} did not complete: {history.status} {history.message}")
    last = history.epochs[-1]
    return {
        "engine": engine,
        "epochs": config.epochs,
        "training_images": len(train_labels),
        "validation_images": len(val_labels),
        "val_accuracy": last.val_accuracy,
        "val_loss": last.val_loss,
        "best_epoch_val_accuracy": max(history.column("val_accuracy")),
        "seconds_per_epoch": history.seconds_per_epoch(),
        "seconds": round(time.monotonic() - started, 1),
        "parameters": model.parameter_count,
    }


def choose(candidates: list[dict[str, Any]]) -> tuple[str, float]:
    """The chosen label and the standard error that decided ties: the cheapest candidate
    (earliest in the list) within one standard error of the best validation accuracy."""
    best = max(candidate["val_accuracy"] for candidate in candidates)
    count = candidates[0]["validation_images"]
    standard_error = math.sqrt(best * (1 - best) / count)
    for candidate in candidates:
        if best - candidate["val_accuracy"] < standard_error:
            return candidate["label"], standard_error
    raise AssertionError("the best candidate is always within its own standard error")


def select_preset(preset_name: str, data: Any, epochs_cap: int | None) -> dict[str, Any]:
    results = []
    for label, changes in CANDIDATES[preset_name]:
        config = selection_config(preset_name, changes, epochs_cap)
        print(f"{preset_name}: training {label} ({config.epochs} epochs)", file=sys.stderr,
              flush=True)
        measured = train_on_validation_split(config, data, label)
        results.append({"label": label, "changes": _plain(changes),
                        # The preset as it stood when measured, which a later choice may
                        # have changed.
                        "was_preset": is_preset(preset_name, changes), **measured})
    chosen, standard_error = choose(results)
    return {
        "preset": preset_name,
        "epochs_cap": epochs_cap,
        "validation_fraction": SELECTION_VALIDATION_FRACTION,
        "standard_error": standard_error,
        "chosen": chosen,
        "candidates": results,
        "measured_on": time.strftime("%Y-%m-%d"),
    }


def _plain(changes: dict[str, Any]) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in changes.items()}


def print_table(selection: dict[str, Any]) -> None:
    count = selection["candidates"][0]["validation_images"]
    print(f"\n{selection['preset']}  (validation {count:,} images; one standard error = "
          f"{selection['standard_error']:.2%})")
    print(f"  {'candidate':36} {'val acc':>8} {'val loss':>9} {'s/epoch':>8} {'params':>9}")
    for candidate in selection["candidates"]:
        marks = (" <- chosen" if candidate["label"] == selection["chosen"] else "") + \
                (" (was the preset)" if candidate["was_preset"] else "")
        print(f"  {candidate['label']:36} {candidate['val_accuracy']:8.2%} "
              f"{candidate['val_loss']:9.4f} {candidate['seconds_per_epoch']:8.1f} "
              f"{candidate['parameters']:9,}{marks}")


def markdown_table(saved: dict[str, Any]) -> str:
    """The measurements as one Markdown table, for docs/presets.md."""
    lines = ["| preset | candidate | val accuracy | val loss | s/epoch | parameters | |",
             "|---|---|---|---|---|---|---|"]
    for selection in (saved[name] for name in CANDIDATES if name in saved):
        for candidate in selection["candidates"]:
            chosen = candidate["label"] == selection["chosen"]
            note = ("**chosen**" if chosen else "") + \
                   (" (was the preset)" if candidate["was_preset"] and not chosen else "")
            accuracy = f"{candidate['val_accuracy']:.2%}"
            lines.append(f"| {selection['preset']} (1 SE {selection['standard_error']:.2%}) "
                         f"| {candidate['label']} | {f'**{accuracy}**' if chosen else accuracy} "
                         f"| {candidate['val_loss']:.4f} | {candidate['seconds_per_epoch']:.1f} "
                         f"| {candidate['parameters']:,} | {note.strip()} |")
    minutes = sum(candidate["seconds"] for selection in saved.values()
                  for candidate in selection["candidates"]) / 60
    caps = sorted({selection["epochs_cap"] for selection in saved.values()} - {None})
    lines.append(f"\n{sum(len(s['candidates']) for s in saved.values())} training runs, "
                 f"{minutes:.0f} minutes in all; "
                 + (f"epochs capped at {caps}." if caps else "each preset's own epochs."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(CANDIDATES), action="append",
                        help="select only this preset (repeatable); default: all")
    parser.add_argument("--epochs-cap", type=int, default=None,
                        help="train each candidate for at most this many epochs (recorded "
                             "in the JSON; the presets' own epochs otherwise)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT,
                        help=f"JSON file to merge into (default {DEFAULT_OUTPUT.name})")
    parser.add_argument("--markdown", action="store_true",
                        help="train nothing: print the saved measurements as a Markdown "
                             "table")
    args = parser.parse_args(argv)

    if args.markdown:
        print(markdown_table(json.loads(args.out.read_text())))
        return 0

    from engine.data import load_mnist

    data = load_mnist()
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    for preset_name in args.only or list(CANDIDATES):
        selection = select_preset(preset_name, data, args.epochs_cap)
        print_table(selection)
        saved[preset_name] = selection
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # Written after each preset, so an interrupted run keeps what it measured.
        args.out.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
