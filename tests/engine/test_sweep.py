"""Sweeps in one process: --vary parsed against the ranges engine/config.py declares, the
grid, pruning, the validation objective, and a stop then a resume. Real MNIST, real
Optuna, tiny trials (1,200 images, 1-2 epochs)."""

from __future__ import annotations

import dataclasses
import itertools
import threading

import numpy as np
import pytest

from engine import build_model
from engine.config import TrainConfig, field_spec
from engine.sweep import (SweepSpec, best_config, open_study, parse_vary, run_trials,
                          summarise)
from engine.sweep_spec import FIXED_FIELDS, SWEEPABLE
from engine.training import split_training_data

TINY = TrainConfig(hidden_sizes=(32,), epochs=1, train_size=1200)


def spec_of(*vary: str, trials: int = 2, base: TrainConfig = TINY, **options) -> SweepSpec:
    return SweepSpec("numpy", tuple(parse_vary(text) for text in vary), trials, base, **options)


# ---- parsing and checking ---------------------------------------------------------

def test_a_range_takes_the_scale_its_field_declares_unless_told():
    rate = parse_vary("learning_rate=1e-4:1e-1")
    assert (rate.kind, rate.low, rate.high, rate.log) == ("float", 1e-4, 1e-1, True)
    assert parse_vary("learning_rate=1e-4:1e-1:linear").log is False
    batch = parse_vary("batch_size=32:512")
    assert (batch.kind, batch.low, batch.high, batch.log) == ("int", 32, 512, True)
    dropout = parse_vary("dropout=0:0.5")
    assert (dropout.kind, dropout.log) == ("float", False)


def test_choices_hold_values_as_a_config_does_and_round_trip_as_text():
    sizes = parse_vary("hidden_sizes=64,128|256,128|512,256")
    assert sizes.choices == ((64, 128), (256, 128), (512, 256))
    assert parse_vary("batch_size=64|128").choices == (64, 128)
    for text in ("hidden_sizes=64,128|256", "learning_rate=0.0001:0.1:log",
                 "batch_size=32:512:linear", "optimizer=adam|sgd", "dropout=0:0.5"):
        assert parse_vary(parse_vary(text).text) == parse_vary(text)


@pytest.mark.parametrize("text, message", [
    ("lr=1e-4:1e-1", "unknown parameter 'lr'; a sweep can vary architecture"),
    ("learning_rate=1e-4:5", "learning_rate must be in (0, 1], got 5"),
    ("learning_rate=0:0.1", "learning_rate must be in (0, 1], got 0"),
    ("momentum=0.5:1", "momentum must be in [0, 1), got 1"),
    ("batch_size=64|8192", "batch_size must be in [1, 4096], got 8192"),
    ("hidden_sizes=64|4096", "hidden_sizes must hold sizes in [1, 2048], got 4096"),
    ("optimizer=adam|adamw", "optimizer must be one of adam, sgd, momentum, nesterov"),
    ("learning_rate", "write NAME=LOW:HIGH (add :log for a log scale) or NAME=A|B|C"),
    ("=1:2", "write NAME=LOW:HIGH"),
    ("learning_rate=", "write NAME=LOW:HIGH"),
    ("learning_rate=1e-4:1e-1:loog", "a range of learning_rate is LOW:HIGH, LOW:HIGH:log"),
    ("learning_rate=1e-4:1e-2:1e-1", "a range of learning_rate is LOW:HIGH"),
    ("learning_rate=1e-1:1e-4", "a range of learning_rate needs LOW below HIGH"),
    ("learning_rate=a:b", "learning_rate takes numbers, got 'a'"),
    ("l2=0:0.1:log", "a log range of l2 needs LOW above 0"),
    ("batch_size=64|12.5", "batch_size must be a whole number, got 12.5"),
    ("optimizer=adam", "optimizer takes a list of values, not a range"),
    ("hidden_sizes=64:128", "hidden_sizes takes a list of values, not a range"),
    ("hidden_sizes=64||128", "hidden_sizes has an empty value"),
    ("hidden_sizes=64,,128|32", "hidden_sizes has an empty item"),
    ("hidden_sizes=64|64", "hidden_sizes lists 64 twice"),
    ("epochs=1:5", "epochs is set once for the whole sweep"),
    ("seed=1|2", "seed decides which images every trial is scored on"),
])
def test_bad_vary_is_refused_in_one_line_naming_what_is_wrong(text, message):
    with pytest.raises(ValueError) as error:
        parse_vary(text)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_every_sweepable_range_is_the_configs_own():
    """The limits come from the field metadata: one step outside any declared range is
    refused, the declared ends themselves (where closed) are not."""
    for name in SWEEPABLE:
        meta = field_spec(name).metadata
        if "range" not in meta or "max_layers" in meta:
            continue
        low, high = meta["range"]
        step = 1 if field_spec(name).type == "int" else 1e-6
        inner_low = low + step if meta.get("low_open") else low
        inner_high = high - step if meta.get("high_open") else high
        parse_vary(f"{name}={inner_low}:{inner_high}:linear")
        below = low if meta.get("low_open") else low - step
        with pytest.raises(ValueError, match=f"{name} must be in"):
            parse_vary(f"{name}={below}:{inner_high}:linear")
    assert set(SWEEPABLE) | set(FIXED_FIELDS) == {spec.name for spec in
                                                  dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("spec, about, message", [
    (spec_of("learning_rate=1e-4:1e-1", trials=0), "trials", "trials must be a whole number"),
    (spec_of("optimizer=adam|sgd", trials=3), "trials", "the grid has 2 points, fewer than"),
    (spec_of("learning_rate=1e-4:1e-1", "learning_rate=1e-3:1e-2"), "learning_rate",
     "learning_rate is varied twice"),
    (spec_of(), "params", "vary at least one parameter"),
    (spec_of("batch_size=64|4096"), "params",
     "with batch_size=4096: batch_size must be at most the 1080 training images"),
    (spec_of("dropout=0|0.5", base=TINY.replace(hidden_sizes=[])), "params",
     "with dropout=0.5: dropout needs at least one hidden layer"),
    (spec_of("optimizer=adam|sgd", base=TINY.replace(validation_fraction=0.0)), "base",
     "a sweep scores each trial on validation images"),
    (spec_of("optimizer=adam|sgd", sampler="random"), "sampler", "sampler must be one of"),
])
def test_a_sweep_that_cannot_run_says_why_and_about_what(spec, about, message):
    problems = spec.problems()
    assert problems, "expected a problem"
    assert problems[0].about == about
    assert message in problems[0].message


def test_more_trials_than_the_host_allows_is_a_problem(monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_TRIALS", "5")
    assert spec_of("learning_rate=1e-4:1e-1", "dropout=0:0.5", "l2=0:0.01",
                   trials=5).problems() == []
    problems = spec_of("learning_rate=1e-4:1e-1", "dropout=0:0.5", "l2=0:0.01",
                       trials=6).problems()
    assert [problem.about for problem in problems] == ["trials"]
    assert "from 1 to 5 (this host's limit)" in problems[0].message


def test_the_sampler_is_a_grid_for_up_to_two_parameters_and_tpe_beyond():
    assert spec_of("learning_rate=1e-4:1e-1", "optimizer=adam|sgd").resolved_sampler == "grid"
    assert spec_of("learning_rate=1e-4:1e-1", "optimizer=adam|sgd",
                   "dropout=0:0.5").resolved_sampler == "tpe"


# ---- running ----------------------------------------------------------------------

def test_the_grid_of_two_parameters_is_covered_exactly_once(mnist):
    spec = spec_of("learning_rate=1e-3:1e-2", "hidden_sizes=16|32,16", trials=6)
    assert spec.grid() == {"learning_rate": [0.001, 0.003162, 0.01],
                           "hidden_sizes": ["16", "32,16"]}
    study = open_study(None, "grid", spec)
    outcome = run_trials(study, spec, mnist.train_images, mnist.train_labels)
    assert (outcome.finished, outcome.grid_complete) == (6, True)
    tried = [(trial["params"]["learning_rate"], tuple(trial["params"]["hidden_sizes"]))
             for trial in summarise(study)["trials"]]
    assert sorted(tried) == sorted(itertools.product([0.001, 0.003162, 0.01],
                                                     [(16,), (32, 16)]))
    # A grid already complete runs nothing more rather than repeating a point.
    assert run_trials(study, spec, mnist.train_images, mnist.train_labels).finished == 0


@pytest.mark.parametrize("pruning", [True, False])
def test_pruning_stops_a_trial_below_the_median_after_its_first_epoch(mnist, pruning):
    """Five good trials first, then learning rates far too small to learn in two epochs:
    with pruning each of those ends after epoch 1; without it (the control) none does."""
    spec = spec_of("learning_rate=1e-6:1e-1", trials=7, base=TINY.replace(epochs=2),
                   sampler="tpe", pruning=pruning)
    study = open_study(None, "pruning", spec)
    for rate in [3e-3] * 5 + [1e-6, 2e-6]:
        study.enqueue_trial({"learning_rate": rate})
    run_trials(study, spec, mnist.train_images, mnist.train_labels)
    trials = summarise(study)["trials"]
    slow = [trial for trial in trials if trial["params"]["learning_rate"] < 1e-5]
    if pruning:
        assert [trial["state"] for trial in slow] == ["pruned", "pruned"]
        assert all(len(trial["curve"]) == 1 and "pruned after epoch 1 of 2" in trial["note"]
                   for trial in slow)
    else:
        assert [trial["state"] for trial in slow] == ["complete", "complete"]
    assert all(trial["state"] == "complete" for trial in trials[:5])


def test_the_objective_is_accuracy_on_the_validation_rows(mnist):
    """run_trials never sees the test set. Its value equals the best config's accuracy on
    the validation rows, retrained; and mislabelling only those rows (the training rows
    untouched) drops the value to near zero, so it is measured on exactly them."""
    spec = spec_of("learning_rate=1e-3:1e-2", trials=2, base=TINY.replace(epochs=2))
    study = open_study(None, "objective", spec)
    run_trials(study, spec, mnist.train_images, mnist.train_labels)
    summary = summarise(study)
    images, labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, spec.base)
    model = build_model("numpy", best_config(study, spec))
    model.fit(images, labels)
    assert abs(model.score(val_images, val_labels) - summary["best_value"]) <= 1 / len(val_labels)
    assert summary["best_value"] > 0.7

    _, _, val_rows, _ = split_training_data(np.arange(len(mnist.train_labels)),
                                            mnist.train_labels, spec.base)
    mislabelled = mnist.train_labels.copy()
    mislabelled[val_rows] = (mislabelled[val_rows] + 1) % 10
    study = open_study(None, "mislabelled", spec)
    run_trials(study, spec, mnist.train_images, mislabelled)
    assert summarise(study)["best_value"] < 0.1


def test_a_stop_fails_the_running_trial_and_a_resume_retries_it_first(mnist, tmp_path):
    """Stopped during its second trial, a grid study on a journal file keeps the first,
    marks the second failed and queues its parameters; reopened, it runs them first and
    completes every grid point exactly once."""
    spec = spec_of("learning_rate=1e-3:1e-2", "optimizer=adam|sgd", trials=4,
                   base=TINY.replace(epochs=2))
    storage = f"journal:{tmp_path / 'study.log'}"
    stop = threading.Event()

    def stop_in_trial_1(trial_number, record):
        if trial_number == 1:
            stop.set()

    seen = []
    outcome = run_trials(open_study(storage, "resume", spec), spec, mnist.train_images,
                         mnist.train_labels, stop=stop, on_trial=seen.append,
                         on_epoch=stop_in_trial_1)
    assert (outcome.finished, outcome.stopped) == (2, True)
    assert [(trial["number"], trial["state"]) for trial in seen] == [(0, "complete"),
                                                                     (1, "fail")]
    assert "stopped at epoch 2" in seen[1]["note"]
    study = open_study(storage, "resume", spec)
    waiting = [trial for trial in summarise(study)["trials"] if trial["state"] == "waiting"]
    assert [trial["params"] for trial in waiting] == [seen[1]["params"]]

    outcome = run_trials(study, spec, mnist.train_images, mnist.train_labels, n_trials=3)
    trials = summarise(study)["trials"]
    assert trials[2]["params"] == seen[1]["params"]
    assert trials[2]["note"] == "a retry of trial 1"
    done = [(trial["params"]["learning_rate"], trial["params"]["optimizer"])
            for trial in trials if trial["state"] == "complete"]
    assert sorted(done) == sorted(itertools.product([0.001, 0.01], ["adam", "sgd"]))
    assert outcome.grid_complete


def test_best_config_is_the_base_with_the_best_trials_values(mnist):
    spec = spec_of("hidden_sizes=16|32,16", "optimizer=adam|sgd", trials=4)
    study = open_study(None, "best", spec)
    with pytest.raises(ValueError, match="no complete trial"):
        best_config(study, spec)
    run_trials(study, spec, mnist.train_images, mnist.train_labels)
    summary = summarise(study)
    config = best_config(study, spec)
    assert config == TINY.replace(**summary["best_params"])
    assert max(trial["value"] for trial in summary["trials"]) == summary["best_value"]
