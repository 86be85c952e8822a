"""The registry on real folders: round trips, safe names, no silent overwrite, broken models
listed with a reason, rename and delete, and saves killed mid-way by a real SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from engine import build_model, metrics, registry
from engine.atomic import LOCK_FILE, PAUSE_ENV, atomic_file, atomic_write_bytes
from engine.config import TrainConfig
from engine.training import split_training_data

REPO = Path(__file__).resolve().parents[2]
CONFIG = TrainConfig(hidden_sizes=(32,), epochs=1, train_size=2000, batch_size=64)


def train(mnist, config: TrainConfig = CONFIG, engine: str = "numpy"):
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, config)
    model = build_model(engine, config)
    model.fit(images, labels, validation=(val_images, val_labels))
    return model


@pytest.fixture(scope="module")
def trained(mnist):
    return train(mnist)


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    monkeypatch.setenv("DIGIT_LAB_MODELS", str(root))
    return root


def probabilities(model, mnist) -> np.ndarray:
    return model.predict_proba(mnist.test_images[:1000])


def rewrite_meta(folder: Path, **changes) -> None:
    """Edit meta.json and record the weights' current hash, so only `changes` are wrong."""
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    weights = folder / meta["weights_file"]
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))


def strict_json(text: str) -> object:
    """json.loads refusing NaN and Infinity, which Python writes but JSON does not allow."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


# ---- round trip, names, overwriting ----------------------------------------------

def test_numpy_round_trip_predicts_identically_and_keeps_history_and_metrics(
        trained, mnist, models_root):
    scores = metrics.test_report(mnist.test_labels, trained.predict_proba(mnist.test_images))
    folder = registry.save(trained, "mlp-32", metrics=scores, command="pytest")

    loaded = registry.load("mlp-32")
    np.testing.assert_array_equal(probabilities(loaded, mnist), probabilities(trained, mnist))
    assert loaded.history.to_dict() == trained.history.to_dict()
    assert loaded.config == trained.config
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["history"] == trained.history.to_dict()
    assert meta["metrics"] == scores
    assert meta["command"] == "pytest" and meta["engine"] == "numpy"
    assert meta["parameter_count"] == trained.parameter_count
    assert stat.S_IMODE((folder / "meta.json").stat().st_mode) == 0o644
    assert sorted(path.name for path in folder.iterdir()) == ["meta.json", meta["weights_file"]]


def test_a_run_stopped_before_its_first_batch_saves_as_strict_json(mnist, models_root):
    model = build_model("numpy", CONFIG)
    stop = threading.Event()
    stop.set()
    model.fit(mnist.train_images[:500], mnist.train_labels[:500], stop=stop)
    assert model.history.status == "stopped" and np.isnan(model.history.epochs[0].train_loss)

    folder = registry.save(model, "stopped-at-once")
    meta = strict_json((folder / "meta.json").read_text())
    assert meta["history"]["epochs"][0]["train_loss"] is None
    loaded = registry.load("stopped-at-once")
    assert np.isnan(loaded.history.epochs[0].train_loss)
    assert loaded.history.status == "stopped" and loaded.history.epochs_done == 0


@pytest.mark.parametrize("name", ["../x", "{tmp}/abs", "", "   ", ".hidden", "..", "con",
                                  "NUL.txt", "a" * 65, "modèle", "ends-with-dot.", "a b",
                                  "x/../../y"])
def test_unsafe_names_are_refused_before_anything_is_written(trained, models_root, tmp_path,
                                                             monkeypatch, name):
    # Relative and absolute escapes aim inside tmp_path, so even a broken check harms nothing.
    (tmp_path / "cwd" / "deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd" / "deep")
    name = name.format(tmp=tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(registry.ModelError, match="name"):
        registry.save(trained, name)
    with pytest.raises(registry.ModelError):
        registry.load(name)
    with pytest.raises(registry.ModelError):
        registry.delete(name)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_path_inside_the_models_folder_and_a_path_object_are_accepted(trained, mnist,
                                                                        models_root, tmp_path):
    registry.save(trained, "a_1.B-2")
    assert registry.load(str(models_root / "a_1.B-2")).config == trained.config
    elsewhere = registry.save(trained, tmp_path / "elsewhere" / "m")    # the CLI's way
    np.testing.assert_array_equal(probabilities(registry.load(elsewhere), mnist),
                                  probabilities(trained, mnist))


def test_the_same_name_is_never_overwritten_silently(trained, mnist, models_root):
    other = build_model("numpy", CONFIG.replace(seed=7))       # different weights
    registry.save(trained, "same")
    with pytest.raises(registry.ModelError, match="already exists"):
        registry.save(other, "same")
    np.testing.assert_array_equal(probabilities(registry.load("same"), mnist),
                                  probabilities(trained, mnist))

    registry.save(other, "same", overwrite=True)
    np.testing.assert_array_equal(probabilities(registry.load("same"), mnist),
                                  probabilities(other, mnist))
    assert [info.name for info in registry.list_models()] == ["same"]
    # No staging or set-aside folder is left behind, hidden or not.
    assert {path.name for path in models_root.iterdir()} - {LOCK_FILE} == {"same"}


def test_concurrent_saves_of_one_name_leave_exactly_one_winner(trained, mnist, models_root):
    outcomes: list[str] = []

    def save_one() -> None:
        try:
            registry.save(trained, "race")
            outcomes.append("saved")
        except registry.ModelError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=save_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 4 and outcomes.count("saved") == 1, outcomes
    assert all("already exists" in outcome for outcome in outcomes if outcome != "saved")
    assert [info.name for info in registry.list_models()] == ["race"]
    assert not [path for path in models_root.iterdir() if path.name.startswith(".tmp-")]


def test_atomic_file_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.json"
    atomic_write_bytes(target, b"old")
    with pytest.raises(ZeroDivisionError):
        with atomic_file(target, "w") as handle:
            handle.write("half of the new cont")
            1 / 0
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["table.json"]
    with atomic_file(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o644


# ---- broken models --------------------------------------------------------------

def _flip_bytes(folder: Path) -> None:
    weights = folder / "model.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2: len(data) // 2 + 8] = bytes(255 - b for b in data[len(data) // 2:
                                                                           len(data) // 2 + 8])
    weights.write_bytes(bytes(data))


def _truncate(folder: Path) -> None:
    weights = folder / "model.npz"
    weights.write_bytes(weights.read_bytes()[:1000])


def _pickled_array(folder: Path) -> None:
    with np.load(folder / "model.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    first = sorted(arrays)[0]
    arrays[first] = np.array([{"payload": "would run on unpickling"}], dtype=object)
    with open(folder / "model.npz", "wb") as handle:
        np.savez(handle, **arrays)          # savez pickles object arrays
    rewrite_meta(folder)


# name -> (how to break it, words the problem must contain); each is listed as broken
BREAKAGES = {
    "flipped": (_flip_bytes, "does not match the hash"),
    "truncated": (_truncate, "does not match the hash"),
    "no-weights": (lambda folder: (folder / "model.npz").unlink(), "is missing"),
    "not-json": (lambda folder: (folder / "meta.json").write_text("{not json"), "unreadable"),
    "wrong-shape": (lambda folder: rewrite_meta(
        folder, config={**CONFIG.to_dict(), "hidden_sizes": [64]}), "shape"),
    "pickled": (_pickled_array, "pickled objects are refused"),
    "alien-engine": (lambda folder: rewrite_meta(folder, engine="torch"), "engine must be"),
    "future-format": (lambda folder: rewrite_meta(folder, format_version=99),
                      "format_version 99"),
    "bad-history": (lambda folder: rewrite_meta(folder, history={"epochs": [5]}),
                    "invalid config or history"),
}


def test_broken_models_are_listed_with_a_reason_and_never_stop_the_others(
        trained, mnist, models_root):
    registry.save(trained, "good-old")
    for name, (damage, _) in BREAKAGES.items():
        damage(registry.save(trained, name))
    registry.save(trained, "good-new")

    infos = {info.name: info for info in registry.list_models()}
    assert set(infos) == {"good-old", "good-new", *BREAKAGES}
    for name, (_, words) in BREAKAGES.items():
        with pytest.raises(registry.ModelError, match=words) as refused:
            registry.load(name)
        assert "\n" not in str(refused.value)
        assert words in infos[name].problem
    for name in ("good-old", "good-new"):
        assert infos[name].problem is None
        np.testing.assert_array_equal(probabilities(registry.load(name), mnist),
                                      probabilities(trained, mnist))

    order = [info.name for info in registry.list_models()]
    assert order.index("good-new") < order.index("flipped") < order.index("good-old")
    assert order.index("not-json") == len(order) - 1      # no date to sort by: last
    for name in order:      # every broken one can still be deleted
        registry.delete(name)
    assert registry.list_models() == []


def test_weights_that_are_not_an_archive_are_named_as_such(trained, models_root):
    folder = registry.save(trained, "noise")
    (folder / "model.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    rewrite_meta(folder)                 # the hash agrees: only the content is wrong
    with pytest.raises(registry.ModelError, match="is not a .npz archive"):
        registry.load("noise")
    assert "not a readable .npz file" in registry.list_models()[0].problem


def test_rename_and_delete(trained, mnist, models_root):
    registry.save(trained, "first")
    registry.save(trained, "taken")
    with pytest.raises(registry.ModelError, match="already exists"):
        registry.rename("first", "taken")
    with pytest.raises(registry.ModelError, match="no model"):
        registry.rename("absent", "whatever")
    with pytest.raises(registry.ModelError, match="not a model name"):
        registry.rename("first", f"{models_root}/../escape")

    folder = registry.rename("first", "second")
    assert folder == models_root / "second" and not (models_root / "first").exists()
    assert json.loads((folder / "meta.json").read_text())["name"] == "second"
    np.testing.assert_array_equal(probabilities(registry.load("second"), mnist),
                                  probabilities(trained, mnist))

    registry.delete("second")
    assert [info.name for info in registry.list_models()] == ["taken"]
    with pytest.raises(registry.ModelError, match="no model called 'second'"):
        registry.delete("second")
    with pytest.raises(registry.ModelError):
        registry.load("second")


# ---- who may change a model -------------------------------------------------------

def test_a_visitor_may_change_only_the_models_they_saved(trained, models_root):
    registry.save(trained, "alices", owner="alice")
    registry.save(trained, "bobs", owner="bob")
    registry.save(trained, "unowned")                      # the command line's way
    registry.save(trained, "default-mlp")                  # as `make models` does
    assert "owner" not in json.loads((models_root / "unowned" / "meta.json").read_text())
    assert registry.recorded_owner(models_root / "alices") == "alice"
    for name, reason in (("bobs", "another visitor saved it"),
                         ("unowned", "records no owner"),
                         ("default-mlp", "ships with the app")):
        assert reason in registry.change_refusal(name, registry.recorded_owner(
            models_root / name), "alice")
        with pytest.raises(registry.ModelError, match=f"cannot rename '{name}': .*{reason}"):
            registry.rename(name, "taken-over", visitor="alice")
        with pytest.raises(registry.ModelError, match=f"cannot delete '{name}': .*{reason}"):
            registry.delete(name, visitor="alice")
        assert (models_root / name).is_dir()
    # Renaming keeps the owner, so the new name stays theirs.
    registry.rename("alices", "alices-best", visitor="alice")
    assert registry.recorded_owner(models_root / "alices-best") == "alice"
    registry.delete("alices-best", visitor="alice")
    # Locally (no visitor) one person manages every model, shipped ones included.
    assert registry.change_refusal("default-mlp", None, None) is None
    registry.rename("bobs", "renamed")
    registry.delete("default-mlp")
    assert sorted(info.name for info in registry.list_models()) == ["renamed", "unowned"]


def test_a_broken_models_owner_can_still_delete_it(trained, models_root):
    registry.save(trained, "mine", owner="alice")
    (models_root / "mine" / registry.read_meta(models_root / "mine")["weights_file"]).unlink()
    assert registry.list_models()[0].problem
    with pytest.raises(registry.ModelError, match="another visitor"):
        registry.delete("mine", visitor="bob")
    registry.delete("mine", visitor="alice")
    assert registry.list_models() == []


@pytest.mark.parametrize("flag, shared", [("1", True), ("true", True), ("0", False),
                                          ("no", False)])
def test_shared_deployment_follows_the_flag(monkeypatch, flag, shared):
    monkeypatch.setenv(registry.SHARED_ENV, flag)
    assert registry.shared_deployment() is shared


def test_without_the_flag_only_community_clouds_checkout_is_shared(monkeypatch):
    monkeypatch.delenv(registry.SHARED_ENV, raising=False)
    assert registry.shared_deployment() is False           # this checkout
    monkeypatch.setattr(registry, "COMMUNITY_CLOUD_CHECKOUT",
                        Path(registry.__file__).resolve().parents[1])
    assert registry.shared_deployment() is True


# ---- Keras files -----------------------------------------------------------------

def test_keras_round_trip_and_a_lambda_layer_is_refused(mnist, models_root):
    keras_model = train(mnist, CONFIG.replace(hidden_sizes=[16]), engine="keras")
    registry.save(keras_model, "keras-mlp", metrics={"test_accuracy": 0.5})
    loaded = registry.load("keras-mlp")
    np.testing.assert_array_equal(probabilities(loaded, mnist),
                                  probabilities(keras_model, mnist))
    assert registry.list_models()[0].meta["metrics"] == {"test_accuracy": 0.5}

    import keras     # only after the engine imported it: the one place tests touch TF
    inputs = keras.Input((28, 28))
    doubled = keras.layers.Lambda(lambda images: images * 2.0)(inputs)
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(doubled))
    folder = models_root / "lambda"
    folder.mkdir()
    keras.Model(inputs, outputs).save(folder / "model.keras")
    meta = json.loads((models_root / "keras-mlp" / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(meta))
    rewrite_meta(folder, name="lambda",
                 config={**CONFIG.to_dict(), "hidden_sizes": []})
    problems = {info.name: info.problem for info in registry.list_models()}
    assert problems["keras-mlp"] is None
    assert "Lambda layer" in problems["lambda"]     # told without importing anything
    with pytest.raises(registry.ModelError, match="Lambda"):
        registry.load("lambda")
    (folder / "model.keras").write_bytes(b"not a zip archive at all")
    rewrite_meta(folder)
    with pytest.raises(registry.ModelError, match="not a readable Keras model"):
        registry.load("lambda")
    assert "not a readable Keras model" in {
        info.name: info.problem for info in registry.list_models()}["lambda"]
    assert registry.load("keras-mlp").config == keras_model.config


# ---- killed in the middle of a save ---------------------------------------------

CHILD = """
import sys, time
from pathlib import Path
from engine import registry
from engine.config import TrainConfig
from engine.numpy_nn.network import NumpyNetwork

class HalfWrittenWeights(NumpyNetwork):
    def save_weights(self, folder):
        name = super().save_weights(folder)
        path = Path(folder) / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        print("paused at weights-half-written", file=sys.stderr, flush=True)
        time.sleep(3600)

name, config_json, point = sys.argv[1:]
kind = HalfWrittenWeights if point == "weights-half-written" else NumpyNetwork
registry.save(kind(TrainConfig.from_json(config_json)), name, overwrite=True)
print("saved", file=sys.stderr, flush=True)
"""


def first_line(stream, timeout: float = 120) -> str:
    """The first line a child writes, or '' if it writes none in `timeout` seconds."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        return ""


@pytest.mark.parametrize("point", ["weights-half-written", "staged", "between-renames"])
def test_a_save_killed_midway_leaves_the_previous_model_intact(trained, mnist, models_root,
                                                               point):
    registry.save(trained, "kept")
    env = {**os.environ, "DIGIT_LAB_MODELS": str(models_root), PAUSE_ENV: point}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "kept", CONFIG.replace(seed=3).to_json(), point],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = first_line(child.stderr)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with child.stderr:
        assert line.strip() == f"paused at {point}", line + child.stderr.read()
    # The kill really happened mid-save: something half-done is on disk, all hidden.
    assert {path.name[:5] for path in models_root.iterdir() if path.name != "kept"} \
        >= ({".repl"} if point == "between-renames" else {".tmp-"})

    # A load alone finds the previous model (putting it back if it was set aside).
    np.testing.assert_array_equal(probabilities(registry.load("kept"), mnist),
                                  probabilities(trained, mnist))
    infos = registry.list_models()
    assert [(info.name, info.problem) for info in infos] == [("kept", None)]
    assert not [path for path in models_root.iterdir() if path.name.startswith(".replaced")]
    registry.save(build_model("numpy", CONFIG.replace(seed=3)), "kept", overwrite=True)
    assert [info.name for info in registry.list_models()] == ["kept"]


def test_only_stale_leftovers_of_our_own_saves_are_cleaned(trained, models_root):
    registry.save(trained, "m")
    two_hours_ago = time.time() - 7200
    for name in (".tmp-m-0123abcd", ".tmp-notes", ".tmp-fresh-89abcdef", "tmp-m-0123abcd"):
        (models_root / name).mkdir()
    for name in (".tmp-m-0123abcd", ".tmp-notes", "tmp-m-0123abcd"):
        os.utime(models_root / name, (two_hours_ago, two_hours_ago))
    registry.list_models()
    assert {path.name for path in models_root.iterdir()} == {
        "m", LOCK_FILE, ".tmp-notes", ".tmp-fresh-89abcdef", "tmp-m-0123abcd"}
