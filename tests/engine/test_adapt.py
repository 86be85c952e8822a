"""Adapting a model to custom digits (engine.adapt and `python -m engine adapt`): real
MNIST, a custom folder written here from scripted handwriting that MNIST-trained models
misread, real training. The given model must never change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from engine import build_model, registry
from engine.adapt import (MIN_DIGITS, AdaptResult, adapt, adapt_problem, finetune_config,
                          split_custom)
from engine.config import TrainConfig
from engine.custom import CustomDigits, load_custom_digits
from engine.training import split_training_data
from tests.engine.cli_run import one_error_line
from tests.engine.cli_run import run as run_engine
from tests.support.slanted_writer import PER_LABEL, write_slanted_digits

REPORT_KEYS = {"status", "message", "custom_before", "custom_after", "mnist_before",
               "mnist_after", "custom_count", "finetune_count", "holdout_count",
               "custom_copies", "mnist_count", "per_class", "epochs", "learning_rate",
               "augmentation", "seed", "seconds", "notes"}


@pytest.fixture(scope="module")
def custom_folder(tmp_path_factory) -> Path:
    return write_slanted_digits(tmp_path_factory.mktemp("adapt") / "custom_digits")


@pytest.fixture(scope="module")
def custom(custom_folder) -> CustomDigits:
    return load_custom_digits(custom_folder)


@pytest.fixture(scope="module")
def base_model(mnist):
    """A small NumPy MLP trained on MNIST only."""
    config = TrainConfig(hidden_sizes=(64,), train_size=10_000, epochs=3,
                         validation_fraction=0.0)
    model = build_model("numpy", config)
    images, labels, _, _ = split_training_data(mnist.train_images, mnist.train_labels, config)
    model.fit(images, labels)
    return model


@pytest.fixture(scope="module")
def adapted(base_model, custom, mnist) -> tuple[AdaptResult, list[np.ndarray]]:
    """(the adaptation's result, the base weights copied before it ran)."""
    weights_before = base_model.get_weights()
    return adapt(base_model, custom, mnist), weights_before


def subset(custom: CustomDigits, rows: np.ndarray) -> CustomDigits:
    return CustomDigits(custom.images[rows], custom.labels[rows])


# ---- the adaptation ---------------------------------------------------------------

def test_adapting_learns_the_custom_digits_and_keeps_mnist(adapted, mnist):
    report = adapted[0].report
    assert set(report) == REPORT_KEYS
    assert report["status"] == "completed" and report["epochs"] == 3
    # The premise: these drawings are hard for an MNIST-only model.
    assert report["custom_before"] <= 0.8, report
    assert report["custom_after"] >= report["custom_before"] + 0.2, report
    assert report["mnist_after"] >= report["mnist_before"] - 0.01, report
    print(f"\nheld-out custom {report['custom_before']:.1%} -> {report['custom_after']:.1%}, "
          f"MNIST test {report['mnist_before']:.2%} -> {report['mnist_after']:.2%}")


def test_the_report_scores_only_held_out_digits(adapted, base_model, custom, mnist):
    result, _ = adapted
    report = result.report
    finetune_rows, holdout_rows = split_custom(custom.labels, 0.25, seed=0)
    assert report["custom_count"] == len(custom) == 10 * PER_LABEL
    assert (report["finetune_count"], report["holdout_count"]) == (
        len(finetune_rows), len(holdout_rows))
    held_out = subset(custom, holdout_rows)
    assert report["custom_before"] == pytest.approx(base_model.score(held_out.images,
                                                                     held_out.labels))
    assert report["custom_after"] == pytest.approx(result.model.score(held_out.images,
                                                                      held_out.labels))
    assert report["mnist_after"] == pytest.approx(
        result.model.score(mnist.test_images, mnist.test_labels))
    assert result.test_metrics["test_accuracy"] == pytest.approx(report["mnist_after"])
    after = np.asarray(report["per_class"]["custom_after"], dtype=float)
    assert np.nanmean(after) == pytest.approx(report["custom_after"])   # 5 per digit
    json.dumps(report, allow_nan=False)


def test_the_given_model_is_never_changed(adapted, base_model):
    result, weights_before = adapted
    assert result.model is not base_model
    for before, now in zip(weights_before, base_model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, now)
    assert len(base_model.history.epochs) == 3
    changed = [not np.array_equal(a, b)
               for a, b in zip(weights_before, result.model.get_weights())]
    assert all(changed)
    assert result.model.config == finetune_config(base_model.config, epochs=3,
                                                  learning_rate_factor=0.3, seed=0)
    assert result.model.config.learning_rate == pytest.approx(0.3 * 1e-3)


def test_mnist_outnumbers_the_custom_digits(adapted):
    report = adapted[0].report
    custom_seen = report["custom_copies"] * report["finetune_count"]
    assert report["custom_copies"] > 1           # a few digits are repeated to matter
    assert report["mnist_count"] == round(3 * custom_seen)


def test_without_mnist_mixed_in_the_model_forgets_more(adapted, base_model, custom, mnist):
    mixed = adapted[0].report
    alone = adapt(base_model, custom, mnist, mnist_per_custom=0).report
    assert alone["mnist_count"] == 0
    assert alone["mnist_after"] < mixed["mnist_after"] - 0.005, (alone, mixed)


def test_the_split_is_per_digit_disjoint_and_seeded(custom):
    finetune, holdout = split_custom(custom.labels, 0.25, seed=0)
    assert not set(finetune) & set(holdout)
    assert sorted([*finetune, *holdout]) == list(range(len(custom)))
    for digit in range(10):
        assert np.sum(custom.labels[holdout] == digit) == PER_LABEL // 4
    again = split_custom(custom.labels, 0.25, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((finetune, holdout), again))
    assert not np.array_equal(holdout, split_custom(custom.labels, 0.25, seed=1)[1])
    # Two drawings of a digit: one to learn from, one to check with.
    two_each = np.repeat(np.arange(10), 2)
    finetune, holdout = split_custom(two_each, 0.25, seed=0)
    assert sorted(two_each[finetune]) == sorted(two_each[holdout]) == list(range(10))


def test_a_stop_keeps_what_was_learnt_and_says_so(base_model, custom, mnist):
    stop = threading.Event()
    batches = []

    def on_batch(progress):
        batches.append(progress)
        if len(batches) == 3:
            stop.set()

    result = adapt(base_model, custom, mnist, epochs=2, on_batch=on_batch, stop=stop)
    assert result.report["status"] == "stopped"
    assert "stopped at epoch 1, batch 3" in result.report["message"]
    assert len(batches) == 3 and result.report["epochs"] < 1


def test_too_few_digits_are_refused_with_the_reason(base_model, custom, mnist):
    few = subset(custom, np.arange(MIN_DIGITS - 1))
    with pytest.raises(ValueError, match="at least 20 custom digits, and there are 19"):
        adapt(base_model, few, mnist)
    lonely_seven = np.r_[np.flatnonzero(custom.labels != 7),
                         np.flatnonzero(custom.labels == 7)[:1]]
    with pytest.raises(ValueError, match="add another 7"):
        adapt(base_model, subset(custom, lonely_seven), mnist)
    assert adapt_problem(custom.labels) is None
    assert adapt_problem(np.repeat(np.arange(10), 2)) is None
    assert "there are 0" in adapt_problem(np.zeros(0, np.uint8))


@pytest.mark.parametrize("option, value, message", [
    ("epochs", 0, "epochs must be"), ("learning_rate_factor", 0.0, "learning_rate_factor"),
    ("holdout_fraction", 0.0, "kept back"), ("augmentation", "wild", "augmentation"),
    ("custom_copies", 0, "custom_copies"), ("mnist_per_custom", -1, "mnist_per_custom"),
])
def test_options_out_of_range_are_refused(base_model, custom, mnist, option, value, message):
    with pytest.raises(ValueError, match=message):
        adapt(base_model, custom, mnist, **{option: value})


def test_the_keras_engine_adapts_a_copy_too(custom, mnist):
    config = TrainConfig(hidden_sizes=(16,), train_size=2000, epochs=1, validation_fraction=0)
    base = build_model("keras", config)
    base.fit(mnist.train_images[:2000], mnist.train_labels[:2000])
    weights_before = base.get_weights()
    result = adapt(base, custom, mnist, epochs=1, custom_copies=1, mnist_per_custom=1)
    assert result.model.engine_name == "keras" and result.model is not base
    assert result.report["status"] == "completed"
    assert result.report["mnist_count"] == result.report["finetune_count"]
    for before, now in zip(weights_before, base.get_weights(), strict=True):
        np.testing.assert_array_equal(before, now)
    assert not np.array_equal(weights_before[0], result.model.get_weights()[0])


# ---- the command line -------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, base_model) -> dict[str, str]:
    models = tmp_path_factory.mktemp("adapt-cli") / "models"
    registry.save(base_model, models / "base")
    return {**os.environ, "DIGIT_LAB_MODELS": str(models)}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run_engine(env, "adapt", *args)


def test_the_command_line_adapts_and_saves(cli_env, custom_folder):
    result = run(cli_env, "--model", "base", "--custom-dir", str(custom_folder),
                 "--epochs", "1", "--out", "adapted")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    report = json.loads(line)
    assert set(report) == REPORT_KEYS | {"base_model", "base_command", "custom_dir",
                                         "model_path"}
    assert report["base_model"] == "base" and report["epochs"] == 1
    assert report["custom_dir"] == str(custom_folder)
    assert report["base_command"] == registry.read_meta(
        Path(cli_env["DIGIT_LAB_MODELS"]) / "base")["command"]
    meta = registry.read_meta(report["model_path"])
    assert meta["metrics"]["adaptation"] == {key: value for key, value in report.items()
                                             if key != "model_path"}
    assert meta["metrics"]["test_accuracy"] == pytest.approx(report["mnist_after"])
    assert meta["command"].startswith("python -m engine adapt --model base")
    saved = registry.load(Path(report["model_path"]))
    assert saved.config.learning_rate == pytest.approx(report["learning_rate"])
    # Saving again needs --overwrite: bad usage, said in one line.
    again = run(cli_env, "--model", "base", "--custom-dir", str(custom_folder), "--out",
                "adapted")
    assert again.returncode == 2 and "--overwrite" in one_error_line(again)


def test_an_adapted_model_records_how_its_generated_digits_were_made(cli_env, custom_folder,
                                                                    tmp_path):
    """A folder written by a script (scripts/make_lettering_digits.py) carries made-by.json;
    the adapted model's meta.json keeps its command, so the model can be made again."""
    generated = tmp_path / "generated"
    shutil.copytree(custom_folder, generated)
    (generated / "made-by.json").write_text(json.dumps({"command": "python make.py --seed 3"}))
    result = run(cli_env, "--model", "base", "--custom-dir", str(generated), "--epochs", "1",
                 "--out", "adapted-generated")
    assert result.returncode == 0, result.stderr
    meta = registry.read_meta(json.loads(result.stdout)["model_path"])
    assert meta["metrics"]["adaptation"]["custom_made_by"] == "python make.py --seed 3"
    assert meta["metrics"]["adaptation"]["custom_count"] == len(list(custom_folder.glob("*/*")))


@pytest.mark.parametrize("args, status, message", [
    (["--epochs", "0"], 2, "epochs must be"),
    (["--holdout", "0.9"], 2, "holdout_fraction"),
    (["--model", "missing"], 1, "no model at"),
    (["--custom-dir", "{tmp}/nowhere"], 1, "no custom digits folder"),
    (["--custom-dir", "{tmp}/few"], 1, "at least 20 custom digits"),
])
def test_command_line_errors_are_one_line(cli_env, custom_folder, tmp_path, args, status,
                                          message):
    few = tmp_path / "few"
    for path in sorted(custom_folder.glob("*/*.png"))[:5]:
        (few / path.parent.name).mkdir(parents=True, exist_ok=True)
        (few / path.parent.name / path.name).write_bytes(path.read_bytes())
    given = {"--model": "base", "--custom-dir": str(custom_folder)}
    for flag, value in zip(args[::2], args[1::2]):
        given[flag] = value.replace("{tmp}", str(tmp_path))
    result = run(cli_env, *[item for pair in given.items() for item in pair])
    assert result.returncode == status
    assert message in one_error_line(result)
    assert result.stdout == ""


def test_the_fine_tune_material_cannot_be_written_in_held_out_or_validation_fonts(tmp_path):
    """Held-out fonts are only ever measured, validation fonts only choose: the script that
    writes what the shipped models learn from refuses both, before writing anything."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "make_lettering_digits.py"
    for group in ("held-out", "validation"):
        out = tmp_path / group
        result = subprocess.run([sys.executable, str(script), "--out", str(out), "--fonts",
                                 "tuning", group], capture_output=True, text=True)
        assert result.returncode == 2 and "--fonts" in result.stderr, result.stderr
        assert not out.exists()
