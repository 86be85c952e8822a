"""`python -m engine` as people run it: real subprocesses, real models and files in a
temporary folder. Results on stdout as JSON; errors as one line on stderr, never a
traceback; exit 2 for bad usage, 1 for failures, 130 after Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from engine import registry
from engine.novelty import looks_like_digit
from engine.commands import ProgressBar
from engine.config import PRESETS, TrainConfig
from engine.training import EpochRecord, History
from engine.images.preprocess import prepare_file
from tests.engine.cli_run import REPO, one_error_line, run

TRAIN_KEYS = {"engine", "status", "test_accuracy", "epochs", "seconds_per_epoch", "model_path",
              "warnings"}
TINY = ["--engine", "numpy", "--train-size", "2000", "--hidden", "32"]
# TensorFlow's and absl's lines, as they looked before the CLI silenced them.
TF_LOGGING = re.compile(r"tensorflow|absl|oneDNN|cpu_feature_guard|[IWEF]\d{4} ", re.I)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {**os.environ, "DIGIT_LAB_MODELS": str(root / "models"),
            "DIGIT_LAB_CUSTOM_DIR": str(root / "custom")}


@pytest.fixture(scope="module")
def trained(env):
    """(the train command's result, its JSON line) for a tiny two-epoch model."""
    result = run(env, "train", *TINY, "--epochs", "2", "--out", "tiny")
    assert result.returncode == 0, result.stderr
    return result, json.loads(result.stdout)


def write_digit(path: Path, digit: np.ndarray) -> Path:
    """An MNIST digit drawn big, dark on light like paper."""
    big = Image.fromarray(digit).resize((200, 200), Image.Resampling.BICUBIC)
    Image.fromarray(255 - np.asarray(big)).save(path)
    return path


# ---- data, train ------------------------------------------------------------------

def test_data_reports_the_source_and_counts(env, mnist):
    result = run(env, "data", "--json")
    assert result.returncode == 0
    summary = json.loads(result.stdout)
    assert set(summary) == {"source", "origin", "path", "train_count", "test_count"}
    assert (summary["train_count"], summary["test_count"]) == (len(mnist.train_labels),
                                                               len(mnist.test_labels))
    assert Path(summary["path"]).is_file()


def test_data_says_in_one_line_which_altered_copy_it_passed_over(env, mnist, tmp_path):
    altered = tmp_path / "mnist.npz"
    shuffled_labels = np.random.default_rng(0).permutation(mnist.train_labels)
    np.savez(altered, x_train=mnist.train_images, y_train=shuffled_labels,
             x_test=mnist.test_images, y_test=mnist.test_labels)
    result = run({**env, "MNIST_PATH": str(altered)}, "data", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] != str(altered)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"warning: MNIST_PATH: {altered}: y_train does not match")


def test_train_prints_one_json_line_saves_and_shows_a_line_per_epoch(env, trained, mnist):
    result, report = trained
    assert len(result.stdout.splitlines()) == 1 and set(report) == TRAIN_KEYS
    assert (report["engine"], report["status"], report["epochs"]) == ("numpy", "completed", 2)
    assert len(report["seconds_per_epoch"]) == 2
    # stderr is a pipe, not a terminal: one plain line per epoch, no carriage returns.
    progress = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in progress] == ["1/2", "2/2"]
    assert "\r" not in result.stderr

    assert report["model_path"] == str(Path(env["DIGIT_LAB_MODELS"]) / "tiny")
    model = registry.load(Path(report["model_path"]))
    assert model.config.hidden_sizes == (32,) and model.config.train_size == 2000
    accuracy = float(np.mean(model.predict(mnist.test_images) == mnist.test_labels))
    assert report["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    meta = registry.read_meta(report["model_path"])
    assert meta["metrics"]["test_accuracy"] == report["test_accuracy"]
    assert "train" in meta["command"] and "--out tiny" in meta["command"]
    # Only the 1,800 training rows are trained on (15 batches of 128), not the 200
    # validation rows as well (16).
    assert meta["history"]["batches_per_epoch"] == 15


@pytest.mark.parametrize("args, words", [
    (["train", "--learning-rate", "5"], "learning_rate must be in (0, 1], got 5"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--epochs", "many"], "invalid int value: 'many'"),
    (["train", *TINY, "--out", "con"], "is not allowed"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: command"),
    (["train", "--hidden", "256,,128"], "empty item"),
    (["bench", "--epochs", "0", "--only", "data"], "--epochs must be in [1, 200]"),
    (["adapt", "--model", "nosuch", "--seed", "-1"],
     "--seed must be a whole number from 0 to 2147483647, got -1"),
])
def test_bad_usage_exits_2_with_one_line(env, args, words):
    result = run(env, *args)
    assert result.returncode == 2
    assert words in one_error_line(result)
    assert result.stdout == ""


@pytest.mark.parametrize("args, words", [
    (["train", "--seed", "-1"], "seed must be"),
    (["train", "--epochs", "0"], "epochs must be"),
    (["train", "--batch-size", "0"], "batch_size must be"),
    (["train", "--train-size", "50"], "train_size must be"),
    (["train", "--out", "a/b/../con"], "is not allowed"),
    (["adapt", "--model", "base", "--seed", "-1"], "--seed must be"),
    (["adapt", "--model", "base", "--seed", str(2**31)], "--seed must be"),
    (["adapt", "--model", "base", "--epochs", "0"], "epochs must be"),
    (["adapt", "--model", "base", "--learning-rate-factor", "0"], "learning_rate_factor"),
    (["adapt", "--model", "base", "--holdout", "0.9"], "holdout_fraction"),
    (["adapt", "--model", "base", "--mnist-per-custom", "21"], "mnist_per_custom"),
    (["adapt", "--model", "con"], "--model con: model name 'con' is not allowed"),
    (["adapt", "--model", "base", "--out", str(REPO / "README.md" / "x")],
     "README.md is a file, not a folder"),
    (["evaluate", "--model", "con"], "--model con: model name 'con' is not allowed"),
    (["predict", "--model", "con", "a.png"], "--model con: model name 'con' is not allowed"),
    (["bench", "--epochs", "201"], "--epochs must be in [1, 200]"),
])
def test_every_argument_is_checked_before_anything_is_loaded(monkeypatch, capsys, args,
                                                             words):
    from engine import adapt, bench, cli, custom, data

    def too_early(*_args, **_kwargs):
        raise AssertionError("loaded before the arguments were checked")
    for module, name in [(data, "load_mnist"), (registry, "load"), (registry, "save"),
                         (custom, "load_custom_digits"), (bench, "run"),
                         (adapt, "Adaptation")]:
        monkeypatch.setattr(module, name, too_early)
    assert cli.main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines


def test_config_from_a_models_meta_json_and_the_engine_a_cnn_needs(env, trained, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architecture": "cnn", "conv_filters": [4],
                                  "hidden_sizes": [8], "train_size": 500, "epochs": 1}))
    result = run(env, "train", "--config", str(config))     # no --engine: a CNN is Keras's
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"] == "keras"
    # A model's meta.json reproduces its config; flags still override it.
    meta = Path(trained[1]["model_path"]) / "meta.json"
    result = run(env, "train", "--config", str(meta), "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 1
    assert [line.split()[1] for line in result.stderr.splitlines()
            if line.startswith("epoch ")] == ["1/1"]


def test_a_diverged_run_says_so_in_one_line_and_exits_1(env):
    result = run(env, "train", "--engine", "numpy", "--train-size", "3000", "--epochs", "2",
                 "--learning-rate", "1", "--optimizer", "momentum", "--momentum", "0.99")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert (report["status"], report["warnings"]) == ("diverged", [])
    messages = [line for line in result.stderr.splitlines() if not line.startswith("epoch ")]
    assert len(messages) == 1 and messages[0].startswith("diverged at epoch"), result.stderr
    assert "lower the learning rate below" in messages[0]


def test_a_config_that_is_not_text_or_not_there_is_bad_usage_naming_the_file(env, tmp_path):
    weights = tmp_path / "model.npz"         # a model's weights, passed by mistake
    np.savez(weights, kernel=np.linspace(-1, 1, 64, dtype=np.float32))
    latin1 = tmp_path / "config.json"
    latin1.write_bytes('{"epochs": 1, "note": "café"}'.encode("latin-1"))
    for path, words in [(weights, "is not a JSON config (it is not text"),
                        (latin1, "is not a JSON config (it is not text: byte 0xe9"),
                        (tmp_path / "missing.json", "No such file"),
                        (tmp_path, "Is a directory")]:
        result = run(env, "train", *TINY, "--config", str(path))
        assert result.returncode == 2, result.stderr
        line = one_error_line(result)
        assert str(path) in line and words in line
        assert "codec" not in line


def test_a_config_saved_with_a_byte_order_mark_is_read(env, tmp_path):
    config = tmp_path / "config.json"
    config.write_bytes(b"\xef\xbb\xbf" + json.dumps({"epochs": 1}).encode())
    result = run(env, "train", *TINY, "--train-size", "300", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["epochs"] == 1


def epoch_record(epoch: int) -> EpochRecord:
    return EpochRecord(epoch=epoch, fraction=1.0, train_loss=2.4, train_accuracy=0.1,
                       val_loss=None, val_accuracy=None, val_per_class_accuracy=None,
                       learning_rate=0.5, seconds=0.1)


def test_the_progress_shows_each_new_warning_once_after_its_epoch():
    model = SimpleNamespace(history=History(warnings=["advice from an earlier fit"]))
    stream = StringIO()
    bar = ProgressBar(3, model, stream)
    model.history.warnings.append("not learning after epoch 1")
    bar.on_epoch(epoch_record(1))
    bar.on_epoch(epoch_record(2))                    # nothing new
    model.history.warnings += ["not learning after epoch 3", "and a second line"]
    bar.on_epoch(epoch_record(3))
    assert [line.split("  ")[0] for line in stream.getvalue().splitlines()] == [
        "epoch 1/3", "not learning after epoch 1", "epoch 2/3", "epoch 3/3",
        "not learning after epoch 3", "and a second line"]


def test_train_prints_the_runs_warnings_and_puts_them_in_its_json(monkeypatch, capsys):
    from engine import cli, training

    # The engine's own judgement is tested with the engines; here every epoch earns one.
    monkeypatch.setattr(training, "not_learning_warning",
                        lambda record, previous=None: f"advice after epoch {record.epoch}")
    assert cli.main(["train", "--engine", "numpy", "--train-size", "300", "--hidden", "8",
                     "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["warnings"] == ["advice after epoch 1",
                                                    "advice after epoch 2"]
    assert [line.split("  ")[0] for line in captured.err.splitlines()] == [
        "epoch 1/2", "advice after epoch 1", "epoch 2/2", "advice after epoch 2"]


def test_config_exported_by_the_dashboard_keeps_its_engine_and_the_presets_rest(env, tmp_path):
    exported = tmp_path / "digit-lab-config.json"       # what "Download JSON" writes
    exported.write_text(json.dumps({"engine": "keras", "epochs": 1, "train_size": 1000}))
    result = run(env, "train", "--preset", "quick", "--config", str(exported),
                 "--out", "from-export")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"] == "keras"
    config = registry.load(Path(env["DIGIT_LAB_MODELS"]) / "from-export").config
    assert (config.epochs, config.train_size) == (1, 1000)
    assert config.hidden_sizes == (128,)                  # the quick preset's, kept


def test_predict_into_a_closed_pipe_stops_quietly(env, trained, mnist, tmp_path):
    image = write_digit(tmp_path / "seven.png", mnist.test_images[0])
    # More answers than a pipe buffers (64 KB), so the writer meets the closed pipe.
    command = f"{sys.executable} -m engine predict --model {trained[1]['model_path']} " \
              f"{' '.join([str(image)] * 1000)} | head -1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert len(result.stdout.splitlines()) == 1 and json.loads(result.stdout)["digit"] is not None
    assert result.stderr == ""


def test_out_taken_without_overwrite_exits_2_before_training(env, trained):
    meta_before = (Path(env["DIGIT_LAB_MODELS"]) / "tiny" / "meta.json").read_bytes()
    result = run(env, "train", *TINY, "--epochs", "1", "--out", "tiny")
    assert result.returncode == 2
    assert "--overwrite" in one_error_line(result)       # the one line: no epoch was run
    assert (Path(env["DIGIT_LAB_MODELS"]) / "tiny" / "meta.json").read_bytes() == meta_before


def test_out_is_checked_before_training(env, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    photos = tmp_path / "photos"                # a folder that is not a model
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"a cat")
    for args, status, words in [
        (["--out", f"{notes}/x"], 2, f"--out {notes}/x: {notes} is a file, not a folder"),
        (["--out", f"{notes}/deeper/x"], 2, f"{notes} is a file, not a folder"),
        (["--out", str(notes)], 2, "exists and is not a model folder"),
        (["--out", str(photos), "--overwrite"], 2, "exists and is not a model folder"),
        # Root may write almost anywhere, but not in /sys: found by trying, exit 1.
        (["--out", "/sys/digit-lab-test"], 1, "cannot create files in /sys"),
    ]:
        result = run(env, "train", *TINY, "--epochs", "1", *args)
        assert result.returncode == status, result.stderr
        assert words in one_error_line(result)        # the one line: no epoch was run
        assert result.stdout == ""
    assert notes.read_text() == "not a folder"
    assert [path.name for path in photos.iterdir()] == ["cat.jpg"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes in a read-only folder anyway")
def test_out_in_a_folder_without_write_permission_exits_1_before_training(env, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run(env, "train", *TINY, "--epochs", "1", "--out", str(locked / "m"))
    finally:
        locked.chmod(0o700)
    assert result.returncode == 1
    assert f"cannot create files in {locked} (Permission denied)" in one_error_line(result)
    assert list(locked.iterdir()) == []


def test_ctrl_c_stops_after_the_batch_saves_and_exits_130(env, tmp_path):
    out = tmp_path / "elsewhere" / "stopped"        # a path with a slash: taken as given
    child = subprocess.Popen(
        [sys.executable, "-m", "engine", "train", "--engine", "numpy", "--train-size", "12000",
         "--hidden", "16", "--batch-size", "16", "--epochs", "50", "--out", str(out)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in child.stderr],
                              daemon=True)
    reader.start()
    try:
        seen, deadline = [], time.monotonic() + 300
        while not any(line.startswith("epoch 1/50") for line in seen):
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:     # a child that died or hangs fails here, with its stderr
                assert child.poll() is None and time.monotonic() < deadline, "".join(seen)
        child.send_signal(signal.SIGINT)
        returncode = child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    reader.join(timeout=10)
    stderr = "".join(seen) + "".join(lines.queue)
    assert "Traceback" not in stderr, stderr
    assert returncode == 130, stderr
    assert "stopping after this batch" in stderr
    report = json.loads(child.stdout.read())
    child.stdout.close()
    assert report["status"] == "stopped" and 1 <= report["epochs"] < 50
    assert report["model_path"] == str(out)
    model = registry.load(out)
    assert model.history.status == "stopped"
    assert model.history.epochs_done == pytest.approx(report["epochs"], abs=1e-4)


# ---- TensorFlow's own logging ---------------------------------------------------------

@pytest.mark.parametrize("onednn", ["1", "0"])
def test_keras_commands_write_no_tensorflow_logging(env, mnist, tmp_path, onednn):
    # TF_ENABLE_ONEDNN_OPTS=1 made TensorFlow print its oneDNN notice (twice, with absl's
    # banner) whatever TF_CPP_MIN_LOG_LEVEL said; unset, the CPU feature guard spoke too.
    keras_env = {key: value for key, value in env.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    keras_env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    train = run(keras_env, "train", "--engine", "keras", "--train-size", "300",
                "--epochs", "1", "--hidden", "16")
    assert train.returncode == 0, train.stderr
    assert not TF_LOGGING.search(train.stderr), train.stderr
    assert [line.split()[:2] for line in train.stderr.splitlines()] == [["epoch", "1/1"]]

    image = write_digit(tmp_path / "digit.png", mnist.test_images[0])
    predict = run(keras_env, "predict", "--model", str(REPO / "models" / "default-cnn"),
                  str(image))
    assert predict.returncode == 0 and predict.stderr == ""
    assert json.loads(predict.stdout)["digit"] == int(mnist.test_labels[0])


def test_silencing_tensorflow_keeps_every_other_line_written_while_it_loads(tmp_path):
    # A stand-in for Keras that logs as TensorFlow does while loading, and says more.
    (tmp_path / "keras.py").write_text(
        "import os, sys\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796169908.639469    5892 port.cc:153] oneDNN custom "
        "operations are on.\\n')\n"
        "os.write(2, b'F0000 00:00:1796169908.7 5892 gpu.cc:1] a fatal line to keep\\n')\n"
        "print('a warning to keep', file=sys.stderr)\n")
    result = subprocess.run(
        [sys.executable, "-c", "from engine.keras_nn.build import import_keras\n"
                               "print(import_keras().__file__)"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "keras.py")
    assert result.stderr.splitlines() == [
        "F0000 00:00:1796169908.7 5892 gpu.cc:1] a fatal line to keep", "a warning to keep"]


# ---- evaluate, predict --------------------------------------------------------------

def test_evaluate_json_with_custom_digits(env, trained, mnist, tmp_path):
    custom = tmp_path / "custom"
    for index in range(2):
        label = int(mnist.test_labels[index])
        (custom / str(label)).mkdir(parents=True, exist_ok=True)
        write_digit(custom / str(label) / f"{index}.png", mnist.test_images[index])
    (custom / "5").mkdir(exist_ok=True)
    (custom / "5" / "junk.png").write_text("just text")

    result = run(env, "evaluate", "--model", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {"test_accuracy", "per_class_accuracy", "confusion_matrix"} <= set(scores)
    assert scores["test_accuracy"] == trained[1]["test_accuracy"]
    assert len(scores["per_class_accuracy"]) == 10
    assert np.asarray(scores["confusion_matrix"]).sum() == len(mnist.test_labels)

    with_custom = json.loads(run(env, "evaluate", "--model", "tiny", "--json",
                                 "--custom-dir", str(custom)).stdout)
    assert {"accuracy", "count", "per_class_accuracy", "mistakes", "skipped"} <= \
        set(with_custom["custom"])
    assert with_custom["custom"]["count"] == 2
    assert [Path(item["file"]).name for item in with_custom["custom"]["skipped"]] == ["junk.png"]


def test_predict_answers_every_file_and_exits_1_when_any_failed(env, trained, mnist, tmp_path):
    good = write_digit(tmp_path / "a.png", mnist.test_images[0])
    other = write_digit(tmp_path / "c.png", mnist.test_images[1])
    text = tmp_path / "b.txt"
    text.write_text("a shopping list, not a digit")
    missing = tmp_path / "missing.png"

    result = run(env, "predict", "--model", "tiny", str(good), str(text), str(missing))
    assert result.returncode == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == [str(good), str(text), str(missing)]
    assert all(set(row) == {"file", "digit", "probabilities", "looks_like_digit", "error"}
               for row in rows)
    model = registry.load(Path(env["DIGIT_LAB_MODELS"]) / "tiny")
    image = prepare_file(good).image[None]
    expected = model.predict_proba(image)[0]
    assert rows[0]["error"] is None and rows[0]["digit"] == int(np.argmax(expected))
    np.testing.assert_allclose(rows[0]["probabilities"], expected, atol=1e-6)
    assert rows[0]["looks_like_digit"] == bool(looks_like_digit(image)[0])
    assert "text file" in rows[1]["error"] and rows[1]["digit"] is None
    assert rows[1]["looks_like_digit"] is False
    assert "No such file" in rows[2]["error"] and rows[2]["probabilities"] is None

    result = run(env, "predict", "--model", str(Path(env["DIGIT_LAB_MODELS"]) / "tiny"),
                 str(good), str(other))
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2


def test_a_broken_or_missing_model_is_one_line_and_exit_1(env, trained, mnist, tmp_path):
    broken = Path(env["DIGIT_LAB_MODELS"]) / "broken"
    broken.mkdir()
    for path in (Path(env["DIGIT_LAB_MODELS"]) / "tiny").iterdir():
        data = path.read_bytes()
        if path.suffix == ".npz":
            data = data[: len(data) // 2]
        (broken / path.name).write_bytes(data)
    image = write_digit(tmp_path / "a.png", mnist.test_images[0])

    for args in (["evaluate", "--model", "broken"], ["predict", "--model", "broken", str(image)]):
        result = run(env, *args)
        assert result.returncode == 1 and result.stdout == ""
        assert "does not match the hash" in one_error_line(result)
    result = run(env, "evaluate", "--model", "nosuch", "--json")
    assert result.returncode == 1 and "no model" in one_error_line(result)


# ---- explain ----------------------------------------------------------------------

EXPLAIN_KEYS = {"file", "digit", "target", "method", "attribution", "score",
                "baseline_score", "error"}


def test_explain_prints_a_map_per_image_for_each_method_and_exits_like_predict(
        env, trained, mnist, tmp_path):
    from engine.explain import explain

    good = write_digit(tmp_path / "a.png", mnist.test_images[0])
    text = tmp_path / "b.txt"
    text.write_text("not a digit")
    model = registry.load(Path(env["DIGIT_LAB_MODELS"]) / "tiny")
    digit = prepare_file(good).image
    for method in ("saliency", "integrated-gradients", "occlusion"):
        result = run(env, "explain", "--model", "tiny", "--method", method, "--json",
                     str(good), str(text))
        assert result.returncode == 1, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert [row["file"] for row in rows] == [str(good), str(text)]
        assert all(set(row) == EXPLAIN_KEYS for row in rows)
        answer, failed = rows
        expected = explain(model, digit, method)
        assert answer["error"] is None and answer["method"] == method
        assert answer["digit"] == answer["target"] == expected.predicted
        attribution = np.array(answer["attribution"])
        assert attribution.shape == (28, 28)
        np.testing.assert_allclose(attribution, expected.values, rtol=1e-5,
                                   atol=1e-6 * np.abs(expected.values).max())
        assert answer["score"] == pytest.approx(expected.score, abs=1e-5)
        assert (answer["baseline_score"] is None) == (method != "integrated-gradients")
        assert "text file" in failed["error"] and failed["attribution"] is None

    result = run(env, "explain", "--model", "tiny", "--target", "3", str(good))
    assert result.returncode == 0 and result.stderr == ""
    row = json.loads(result.stdout)
    assert row["target"] == 3 and row["method"] == "saliency"
    np.testing.assert_allclose(row["score"], model.logits(digit[None])[0, 3], atol=1e-5)


@pytest.mark.parametrize("args, words", [
    (["explain", "--model", "tiny", "--target", "10", "a.png"], "invalid choice: 10"),
    (["explain", "--model", "tiny", "--method", "lime", "a.png"], "invalid choice: 'lime'"),
    (["explain", "--model", "tiny"], "required: IMAGE"),
    (["explain", "--model", "con", "a.png"], "--model con: model name 'con' is not allowed"),
])
def test_explain_bad_usage_exits_2_before_loading_anything(monkeypatch, capsys, args, words):
    from engine import cli

    def too_early(*_args, **_kwargs):
        raise AssertionError("loaded before the arguments were checked")
    monkeypatch.setattr(registry, "load", too_early)
    assert cli.main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines


def test_explain_with_a_missing_model_is_one_line_and_exit_1(env, mnist, tmp_path):
    image = write_digit(tmp_path / "a.png", mnist.test_images[0])
    result = run(env, "explain", "--model", "nosuch", str(image))
    assert result.returncode == 1 and result.stdout == ""
    assert "no model" in one_error_line(result)


@pytest.mark.parametrize("engine, config", [
    ("numpy", TrainConfig(hidden_sizes=(64, 32), learning_rate=0.003, epochs=2,
                          train_size=2000, optimizer="momentum", momentum=0.8)),
    ("keras", PRESETS["quick"].replace(dropout=0.25, augmentation="light")),
])
def test_train_command_rebuilds_the_same_config(engine, config):
    """The command a dashboard-trained model's card shows parses back to its config."""
    from engine.cli import build_parser, train_command
    from engine.usage import settings_from_args

    command = train_command(engine, config, out="models/again")
    assert command.startswith(f"python -m engine train --engine {engine}")
    args = build_parser().parse_args(shlex.split(command)[3:])
    assert settings_from_args(args) == (engine, config)
    assert args.out == "models/again"
