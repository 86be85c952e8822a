"""The Train page through AppTest: tiny configs train end to end on both engines, Stop
keeps what was learnt, a saved model appears on Models and loads back, and a run that
ends while the visitor is elsewhere still becomes the active model."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine import registry, training
from tests.pages.conftest import BUSY, TINY
from ui import state

TRAIN = "pages/1_train.py"
# Long enough (dozens of seconds) that Stop always lands in the middle of the run.
LONG = {"train_size": 60_000, "hidden_sizes": "64", "epochs": 20, "batch_size": 32}
STATISTICS_CHARTS = 3       # weights, gradients, dead units, under the training curves


def wait_for_batches(job, count: int = 5, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = job.snapshot().progress
        if progress is not None and progress.batch >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run made no {count} batches in {timeout} s")


def test_train_page_shows_the_config_and_waits_for_a_click(dashboard):
    at = dashboard.open(TRAIN)
    assert dashboard.texts(at.title) == ["Train"]
    assert dashboard.texts(at.caption)[0].startswith("NumPy: MLP 784-256-128-10")
    assert not dashboard.button(at, "Train").disabled
    assert dashboard.button(at, "Stop").disabled
    assert any("Press **Train**" in text for text in dashboard.texts(at.info))
    assert at.session_state[state.JOB] is None


def test_a_tiny_numpy_config_trains_end_to_end(dashboard, mnist):
    at = dashboard.open(TRAIN)
    assert dashboard.texts(at.caption)[0].startswith("NumPy: MLP 784-256-128-10")
    dashboard.configure(at, train_size=1000, hidden_sizes="32", epochs=2, batch_size=64)
    assert dashboard.texts(at.caption)[0] == (
        "NumPy: MLP 784-32-10, relu, adam 0.001, 2 epochs on 1,000 images. "
        "Change it in the sidebar.")
    dashboard.click(at, "Train")
    job = at.session_state[state.JOB]
    assert job is not None and job.engine == "numpy"
    dashboard.finish(at, state.JOB)
    snapshot = job.snapshot()
    assert snapshot.status == "completed"
    assert dashboard.texts(at.success) == ["Training finished."]
    metrics = {metric.label: metric.value for metric in at.metric}
    accuracy = snapshot.test_metrics["test_accuracy"]
    assert metrics["MNIST test accuracy"] == f"{accuracy:.2%}"
    assert metrics["Epochs done"] == "2"
    assert len(at.get("plotly_chart")) == 1 + STATISTICS_CHARTS    # and the curves
    assert not dashboard.button(at, "Train").disabled
    active = at.session_state[state.ACTIVE_MODEL]
    assert active.origin == "trained here" and active.name == "run 1"
    assert active.model is job.model and active.model.config.hidden_sizes == (32,)
    assert at.session_state[state.RUN_HISTORY][0]["test_accuracy"] == accuracy
    # The sidebar names the new model too.
    assert any("run 1 (trained here)" in text for text in dashboard.texts(at.sidebar.caption))


@pytest.mark.parametrize("engine, name", [("keras", "Keras"), ("numpy", "NumPy")])
def test_a_tiny_cnn_trains_end_to_end_on_either_engine(dashboard, engine, name):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, engine=engine, architecture="cnn")
    job = dashboard.train(at, conv_filters="4", hidden_sizes="16", epochs=1)
    snapshot = job.snapshot()
    assert snapshot.status == "completed", snapshot.message
    assert dashboard.texts(at.success) == ["Training finished."]
    model = at.session_state[state.ACTIVE_MODEL].model
    assert model.engine_name == engine and model.config.conv_filters == (4,)
    dashboard.go(at, "pages/2_evaluate.py")
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Test accuracy"] == f"{snapshot.test_metrics['test_accuracy']:.2%}"
    assert dashboard.texts(at.caption)[0].startswith(f"run 1 (trained here): {name} CNN conv 4")


def test_stop_keeps_the_model_and_evaluate_uses_it(dashboard, mnist):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, **LONG)
    dashboard.click(at, "Train")
    job = at.session_state[state.JOB]
    assert not dashboard.button(at, "Stop").disabled
    assert dashboard.button(at, "Train").disabled
    assert len(at.get("progress")) == 1            # the live view is on the page
    wait_for_batches(job)
    dashboard.click(at, "Stop")
    dashboard.finish(at, state.JOB)
    snapshot = job.snapshot()
    assert snapshot.status == "stopped"
    assert snapshot.history.epochs and snapshot.history.epochs_done < LONG["epochs"]
    (warning,) = at.warning
    assert warning.value.startswith("Training stopped; the model keeps what it learnt.")
    active = at.session_state[state.ACTIVE_MODEL]
    assert active.model is job.model and active.name == "run 1"
    dashboard.go(at, "pages/2_evaluate.py")
    predictions = np.argmax(job.model.predict_proba(mnist.test_images), axis=1)
    accuracy = np.mean(predictions == mnist.test_labels)
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Test accuracy"] == f"{accuracy:.2%}"
    assert dashboard.texts(at.caption)[0].startswith("run 1 (trained here): NumPy MLP 784-64-10")


def test_a_saved_model_appears_on_models_and_loads_back(dashboard, mnist):
    at = dashboard.open(TRAIN)
    job = dashboard.train(at)
    (name_box,) = [box for box in at.text_input if box.label == "Name"]
    assert name_box.value.startswith("numpy-mlp-")
    name_box.input("tiny-saved")
    dashboard.click(at, "Save")
    assert "Saved as **tiny-saved**." in dashboard.texts(at.success)
    assert (dashboard.models_dir / "tiny-saved" / "meta.json").is_file()
    # Saving under a name that exists is refused with a message, not a traceback.
    [box for box in at.text_input if box.label == "Name"][0].input("default-mlp")
    dashboard.click(at, "Save")
    assert any("already exists" in text for text in dashboard.texts(at.error))

    dashboard.go(at, "pages/7_models.py")
    table = at.dataframe[0].value
    assert "tiny-saved" in list(table["name"])
    at.selectbox(key="models_chosen").select("tiny-saved").run()
    dashboard.click(at, "Make active")
    active = at.session_state[state.ACTIVE_MODEL]
    assert active.name == "tiny-saved" and active.origin == "saved"
    assert active.model is not job.model           # read back from disk
    assert any("tiny-saved (saved)" in text for text in dashboard.texts(at.sidebar.caption))
    dashboard.go(at, "pages/2_evaluate.py")
    assert dashboard.texts(at.caption)[0].startswith("tiny-saved (saved): NumPy MLP 784-32-10")
    loaded = registry.load(dashboard.models_dir / "tiny-saved")
    assert np.allclose(loaded.predict_proba(mnist.test_images[:200]),
                       job.model.predict_proba(mnist.test_images[:200]), atol=1e-6)
    accuracy = job.snapshot().test_metrics["test_accuracy"]
    metrics = {metric.label: metric.value for metric in at.metric}
    assert metrics["Test accuracy"] == f"{accuracy:.2%}"


def test_a_run_that_ends_while_the_visitor_is_elsewhere_becomes_active(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, train_size=1000, hidden_sizes="24", epochs=2, batch_size=64)
    dashboard.click(at, "Train")
    dashboard.go(at, "pages/2_evaluate.py")
    at.session_state[state.JOB].join(180)
    at.run()
    assert dashboard.texts(at.caption)[0].startswith("run 1 (trained here): NumPy MLP 784-24-10")
    assert len(at.session_state[state.RUN_HISTORY]) == 1
    dashboard.go(at, TRAIN)                        # and it is not added a second time
    assert len(at.session_state[state.RUN_HISTORY]) == 1
    assert dashboard.texts(at.success) == ["Training finished."]


def test_the_live_view_shows_progress_while_training(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, **LONG)
    dashboard.click(at, "Train")
    job = at.session_state[state.JOB]
    wait_for_batches(job, 3)
    at.run()                                       # as the fragment's timer would
    (bar,) = at.get("progress")
    assert "Epoch 1 of 20 · batch" in bar.proto.text
    assert any("Training:" in text for text in dashboard.texts(at.sidebar.caption))
    job.stop()
    job.join(60)


@pytest.mark.parametrize("button, job_key", [("Train", state.JOB),
                                             ("Find a learning rate", state.LR_FINDER_JOB)])
def test_a_busy_server_refuses_and_the_reason_stays_on_the_page(dashboard, busy_server,
                                                                button, job_key):
    at = dashboard.open(TRAIN)
    dashboard.click(at, button)
    assert at.session_state[job_key] is None
    assert any(BUSY in text for text in dashboard.texts(at.warning)), dashboard.texts(at.warning)



def test_a_cnn_preset_trains_on_the_engine_chosen(dashboard):
    at = dashboard.open(TRAIN)
    at.selectbox(key="w_preset").select("cnn").run()      # applies when picked
    assert at.session_state[state.SETTINGS]["engine"] == "numpy"
    assert not dashboard.button(at, "Train").disabled
    assert dashboard.texts(at.caption)[0].startswith("NumPy: CNN")


def test_the_engines_advice_shows_while_training_and_after(dashboard, monkeypatch):
    # Every epoch gets advice, as a run that learns nothing would.
    monkeypatch.setattr(training, "not_learning_warning",
                        lambda record, previous=None:
                        f"not learning after epoch {record.epoch}: try less")
    at = dashboard.open(TRAIN)
    dashboard.configure(at, **LONG)
    dashboard.click(at, "Train")
    job = at.session_state[state.JOB]
    deadline = time.monotonic() + 120
    while not job.snapshot().history.warnings:
        assert time.monotonic() < deadline, "no epoch finished in 120 s"
        time.sleep(0.05)
    at.run()                                       # as the fragment's timer would
    assert len(at.get("progress")) == 1
    assert any(text.startswith("Not learning after epoch ") and "try less" in text
               for text in dashboard.texts(at.warning)), dashboard.texts(at.warning)
    dashboard.click(at, "Stop")
    dashboard.finish(at, state.JOB)
    shown = dashboard.texts(at.warning)
    assert shown[0].startswith("Training stopped")
    # The latest line, and how many epochs said so before it.
    warnings = job.snapshot().history.warnings
    assert len(shown) == 2 and shown[1].startswith(warnings[-1][:1].upper() + warnings[-1][1:])
    if len(warnings) > 1:
        assert shown[1].endswith(f"({len(warnings) - 1} earlier epoch"
                                 f"{'s' if len(warnings) > 2 else ''} said so too.)")


def test_no_advice_no_warning_and_a_diverged_run_says_what_to_do(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.train(at)
    assert dashboard.texts(at.warning) == []
    dashboard.train(at, optimizer="adam", learning_rate=1.0)
    (error,) = dashboard.texts(at.error)
    assert error.startswith("Training diverged. Diverged at epoch 1")
    assert "lower the learning rate below 1" in error
    assert any(box.label == "Name" for box in at.text_input)     # what it kept can be saved


def test_the_training_statistics_show_under_the_curves_after_a_run(dashboard):
    at = dashboard.open(TRAIN)
    job = dashboard.train(at)
    stats = job.snapshot().history.training_stats
    assert [epoch.epoch for epoch in stats.epochs] == [1, 2]
    (expander,) = [box for box in at.expander if box.label.startswith("Inside the network")]
    assert [tab.label for tab in expander.tabs] == ["Weights", "Gradients", "Dead units"]
    assert all(len(tab.get("plotly_chart")) == 1 for tab in expander.tabs)
    assert len(at.get("plotly_chart")) == 1 + STATISTICS_CHARTS


def test_the_training_statistics_grow_live_epoch_by_epoch(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, **LONG)
    dashboard.click(at, "Train")
    job = at.session_state[state.JOB]
    # Just started: 1,875 batches before the first epoch's statistics, so the curves
    # alone.
    assert len(at.get("plotly_chart")) == 1
    assert [box for box in at.expander if box.label.startswith("Inside the network")]
    deadline = time.monotonic() + 120
    while job.snapshot().history.training_stats is None:
        assert time.monotonic() < deadline, "no epoch finished in 120 s"
        time.sleep(0.05)
    at.run()
    assert len(at.get("progress")) == 1            # still the live view
    assert len(at.get("plotly_chart")) == 1 + STATISTICS_CHARTS
    job.stop()
    job.join(60)


def finder_result(dashboard, at):
    """Press the finder's button, wait for its sweep, rerun as its fragment would."""
    dashboard.click(at, "Find a learning rate")
    job = at.session_state[state.LR_FINDER_JOB]
    assert job is not None, dashboard.texts(at.warning)
    job.join(120)
    assert job.snapshot().finished, "the sweep did not end in 120 s"
    at.run()
    dashboard.assert_ok(at)
    return job


def test_the_learning_rate_finder_suggests_a_rate_and_one_click_uses_it(dashboard):
    at = dashboard.open(TRAIN)
    job = finder_result(dashboard, at)
    result = job.result
    assert job.snapshot().status == "completed" and result.suggested is not None
    rate = float(f"{result.suggested:.2g}")
    assert len(at.get("plotly_chart")) == 1        # the sweep; no run yet
    assert at.session_state[state.SETTINGS]["learning_rate"] == 0.001 != rate
    dashboard.click(at, f"Use {rate:g} as the learning rate")
    assert at.session_state[state.SETTINGS]["learning_rate"] == rate
    assert at.select_slider(key="w_learning_rate").value == rate
    assert f"adam {rate:g}," in dashboard.texts(at.caption)[0]     # what Train trains
    assert f"The sidebar's learning rate is {rate:g}." in dashboard.texts(at.success)
    assert not [button for button in at.button if button.label.startswith("Use ")]


def test_the_learning_rate_finder_sweeps_the_keras_engine_too(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, engine="keras", hidden_sizes="32")
    job = finder_result(dashboard, at)
    assert job.engine == "keras" and job.swept_config.hidden_sizes == (32,)
    assert job.result.suggested is not None
    assert any(text.startswith("Found for Keras: MLP 784-32-10")
               for text in dashboard.texts(at.caption))


def test_before_a_run_the_page_estimates_it_and_after_it_says_what_the_curves_show(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, **TINY)
    estimate = [text for text in dashboard.texts(at.caption) if "per epoch) and" in text]
    assert len(estimate) == 1 and "from batches timed on this machine" in estimate[0]
    dashboard.click(at, "Train")
    dashboard.finish(at, state.JOB)
    assert any(text == "**What the curves say**" for text in dashboard.texts(at.markdown))
    said = dashboard.texts(at.info) + dashboard.texts(at.warning)
    assert any(text.startswith(("No problem found", "Training accuracy", "The loss",
                                "Accuracy is", "Validation")) for text in said), said


def test_invalid_settings_say_on_the_page_why_train_is_off(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, hidden_sizes="abc")
    assert dashboard.button(at, "Train").disabled
    (shown,) = [text for text in dashboard.texts(at.main.warning) if "Train is off" in text]
    assert "hidden_sizes must be a list of integers" in shown


def test_a_saved_runs_card_holds_the_command_that_trains_it_again(dashboard):
    from engine import registry
    from engine.cli import train_command

    at = dashboard.open(TRAIN)
    job = dashboard.train(at)
    [box for box in at.text_input if box.label == "Name"][0].input("card-check")
    dashboard.click(at, "Save")
    meta = registry.read_meta(dashboard.models_dir / "card-check")
    assert meta["command"] == train_command(job.engine, job.config)
