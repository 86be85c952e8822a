"""What each `python -m engine` command does. Results go to stdout as JSON; progress and
errors go to stderr, so the output can be piped."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from engine import build_model, metrics, registry
from engine.training import BatchProgress, Classifier, EpochRecord, split_training_data
from engine.usage import (adapt_arguments, bench_arguments, model_argument, one_line,
                          train_arguments)


def _print_json(data: Any) -> None:
    print(json.dumps(data, allow_nan=False), flush=True)


# ---- data -----------------------------------------------------------------------

def load_mnist_saying_what_was_refused() -> Any:
    """MNIST from the first source that passes; a file passed over for its content gets
    one line on stderr, since the person may not know their copy is altered."""
    from engine.data import load_mnist

    data = load_mnist()
    for line in data.refused:
        print(f"warning: {line}", file=sys.stderr)
    return data


def run_data(args: argparse.Namespace) -> int:
    from engine.data import data_summary, describe_source

    data = load_mnist_saying_what_was_refused()
    if args.json:
        _print_json(data_summary(data))
    else:
        print(f"MNIST from {describe_source(data)}")
        print(f"training images: {len(data.train_labels):,}   test images: "
              f"{len(data.test_labels):,}")
    return 0


# ---- train ----------------------------------------------------------------------

class ProgressBar:
    """A one-line progress bar on stderr (a line per epoch when stderr is not a terminal),
    and after each epoch the advice lines `model`'s history gained, each once."""

    def __init__(self, total_epochs: int, model: Classifier,
                 stream: TextIO | None = None) -> None:
        self.total_epochs, self.model = total_epochs, model
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self._last_draw = 0.0
        # Only this run's advice: a model fitted before keeps its earlier lines.
        self._warnings_shown = len(model.history.warnings)

    def on_batch(self, progress: BatchProgress) -> None:
        now = time.monotonic()
        if not self.live or now - self._last_draw < 0.1:
            return
        self._last_draw = now
        done = progress.batch / progress.batches_per_epoch
        left = progress.seconds_in_epoch / done * (1 - done)
        filled = int(done * 30)
        self.stream.write(f"\repoch {progress.epoch}/{self.total_epochs} "
                          f"[{'#' * filled}{'.' * (30 - filled)}] {progress.batch}/"
                          f"{progress.batches_per_epoch} loss {progress.loss:.4f} "
                          f"{left:4.0f}s left ")
        self.stream.flush()

    def on_epoch(self, record: EpochRecord) -> None:
        validation = (f"  val_acc {record.val_accuracy:.4f}"
                      if record.val_accuracy is not None else "")
        prefix = "\r" if self.live else ""
        self.stream.write(f"{prefix}epoch {record.epoch}/{self.total_epochs}  loss "
                          f"{record.train_loss:.4f}  acc {record.train_accuracy:.4f}"
                          f"{validation}  {record.seconds:.1f}s{' ' * 20}\n")
        warnings = self.model.history.warnings
        for line in warnings[self._warnings_shown:]:
            self.stream.write(one_line(line) + "\n")
        self._warnings_shown = len(warnings)
        self.stream.flush()


def _stop_on_interrupt(stop: threading.Event, live_bar: bool) -> None:
    """First Ctrl-C: stop after the current batch. Second: the usual KeyboardInterrupt."""
    def handler(signum: int, frame: Any) -> None:
        end_of_bar = "\n" if live_bar else ""
        print(f"{end_of_bar}stopping after this batch (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def command_line() -> str:
    return shlex.join(["python", "-m", "engine", *sys.argv[1:]])


def run_train(args: argparse.Namespace) -> int:
    engine, config, target = train_arguments(args)
    data = load_mnist_saying_what_was_refused()
    train_images, train_labels, val_images, val_labels = split_training_data(
        data.train_images, data.train_labels, config)
    model = build_model(engine, config)
    stop = threading.Event()
    bar = ProgressBar(config.epochs, model)
    _stop_on_interrupt(stop, bar.live)
    validation = (val_images, val_labels) if len(val_labels) else None
    model.fit(train_images, train_labels, validation=validation, on_batch=bar.on_batch,
              on_epoch=bar.on_epoch, stop=stop)
    history = model.history
    if history.message:
        print(one_line(history.message), file=sys.stderr)
    scores = evaluate_on_test(model, data)
    model_path = None
    if target is not None and history.epochs:
        model_path = str(registry.save(model, target, metrics=scores, command=command_line(),
                                       overwrite=args.overwrite))
    _print_json({
        "engine": model.engine_name,
        "status": history.status,
        "test_accuracy": round(scores["test_accuracy"], 6),
        "epochs": round(history.epochs_done, 4),
        "seconds_per_epoch": [round(record.seconds, 3) for record in history.epochs],
        "model_path": model_path,
        "warnings": list(history.warnings),
    })
    return {"completed": 0, "stopped": 130, "diverged": 1}.get(history.status, 1)


def evaluate_on_test(model: Classifier, data: Any) -> dict[str, Any]:
    """The metrics stored with every saved model: MNIST test accuracy, per class, matrix."""
    return metrics.test_report(data.test_labels, model.predict_proba(data.test_images))


# ---- evaluate -------------------------------------------------------------------

def run_evaluate(args: argparse.Namespace) -> int:
    from engine.custom import evaluate_custom

    location = model_argument(args.model)
    model = registry.load(location)
    result = evaluate_on_test(model, load_mnist_saying_what_was_refused())
    if args.custom_dir:
        result["custom"] = evaluate_custom(model, args.custom_dir)
    if args.json:
        _print_json(result)
        return 0
    print(f"MNIST test accuracy: {result['test_accuracy']:.2%}")
    print("per class: " + "  ".join(f"{digit}:{value:.1%}" for digit, value in
                                    enumerate(result["per_class_accuracy"])))
    custom = result.get("custom")
    if custom:
        if custom["count"]:
            print(f"custom digits: {custom['accuracy']:.2%} of {custom['count']}")
        else:
            print(f"custom digits: none readable in {args.custom_dir} (expected pictures "
                  f"in {Path(args.custom_dir) / '<0-9>'}/)")
        for mistake in custom["mistakes"]:
            print(f"  misread {mistake['file']}: {mistake['label']} read as "
                  f"{mistake['predicted']} ({mistake['confidence']:.0%})")
        for skipped in custom["skipped"]:
            print(f"  skipped {skipped['file']}: {skipped['reason']}")
    return 0


# ---- adapt ----------------------------------------------------------------------

def run_adapt(args: argparse.Namespace) -> int:
    from engine.adapt import Adaptation
    from engine.custom import load_custom_digits

    base_location, options, target = adapt_arguments(args)
    base_folder = registry.resolve(base_location)
    base = registry.load(base_folder)
    custom = load_custom_digits(args.custom_dir)
    adaptation = Adaptation(base, custom, load_mnist_saying_what_was_refused(), **options)
    stop = threading.Event()
    bar = ProgressBar(args.epochs, adaptation.model)
    _stop_on_interrupt(stop, bar.live)
    result = adaptation.run(on_batch=bar.on_batch, on_epoch=bar.on_epoch, stop=stop)
    report = {**result.report, "base_model": base_folder.name,
              **_provenance(base_folder, args.custom_dir)}
    for line in [report["message"], *report["notes"]]:
        if line:
            print(line, file=sys.stderr)
    model_path = None
    if target is not None and result.model.history.epochs:
        model_path = str(registry.save(result.model, target,
                                       metrics={**result.test_metrics, "adaptation": report},
                                       command=command_line(), overwrite=args.overwrite))
    _print_json({**report, "model_path": model_path})
    return {"completed": 0, "stopped": 130, "diverged": 1}.get(report["status"], 1)


def _provenance(base_folder: Path, custom_folder: str | None) -> dict[str, Any]:
    """How the base model and the custom digits were made, so an adapted model's meta.json
    says how to make it again: the base's own command, and the `made-by.json` a script that
    generates custom digits leaves in their folder (scripts/make_lettering_digits.py)."""
    from engine.custom import custom_dir

    root = Path(custom_folder) if custom_folder is not None else custom_dir()
    found = {"base_command": json.loads((base_folder / "meta.json").read_text()).get("command"),
             "custom_dir": str(root)}
    made_by = root / "made-by.json"
    if made_by.is_file():
        found["custom_made_by"] = json.loads(made_by.read_text()).get("command")
    return found


# ---- predict --------------------------------------------------------------------

def run_predict(args: argparse.Namespace) -> int:
    location = model_argument(args.model)
    model = registry.load(location)

    def answer(image: np.ndarray) -> dict[str, Any]:
        from engine.novelty import looks_like_digit

        probabilities = model.predict_proba(image[None])[0]
        return {"digit": int(np.argmax(probabilities)),
                "probabilities": [round(float(p), 6) for p in probabilities],
                "looks_like_digit": bool(looks_like_digit(image[None])[0])}

    # A file with no digit found does not look like one either.
    return _answer_files(args.images, {"digit": None, "probabilities": None,
                                       "looks_like_digit": False}, answer)


def run_explain(args: argparse.Namespace) -> int:
    from engine.explain import explain

    location = model_argument(args.model)
    model = registry.load(location)

    def answer(image: np.ndarray) -> dict[str, Any]:
        attribution = explain(model, image, args.method, args.target)
        baseline = attribution.baseline_score
        # Six significant digits keep a faint pixel's value; + 0.0 prints -0.0 as 0.0.
        return {"digit": attribution.predicted, "target": attribution.target,
                "method": args.method,
                "attribution": [[float(f"{value:.6g}") + 0.0 for value in row]
                                for row in attribution.values.tolist()],
                "score": round(attribution.score, 6),
                "baseline_score": None if baseline is None else round(baseline, 6)}

    blank = {"digit": None, "target": args.target, "method": args.method,
             "attribution": None, "score": None, "baseline_score": None}
    return _answer_files(args.images, blank, answer)


def _answer_files(paths: list[str], blank: dict[str, Any],
                  answer: Any) -> int:
    """One JSON line per image file: `blank` filled by `answer(the preprocessed digit)`,
    or the reason the file gave none; exit status 1 if any file failed."""
    from engine.images.preprocess import prepare_file

    failures = 0
    for image_path in paths:
        row: dict[str, Any] = {"file": image_path, **blank, "error": None}
        try:
            prepared = prepare_file(image_path)
        except (ValueError, OSError) as error:
            # UnreadableImage, NoDigitFound or any other bad file: its row says why, and
            # the other files still get their answer.
            row["error"] = one_line(error)
            failures += 1
        else:
            row.update(answer(prepared.image))
        _print_json(row)
    return 1 if failures else 0


def run_bench(args: argparse.Namespace) -> int:
    from engine.bench import run

    bench_arguments(args)
    return run(args)


def run_sweep(args: argparse.Namespace) -> int:
    from engine.sweep_command import run

    return run(args)
