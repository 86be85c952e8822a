"""Many visitors at once: four AppTest sessions train their own tiny models with runs that
overlap in time, predict with them, and nothing leaks between them; what all sessions
share (MNIST, the shipped model's test predictions) is read-only.

AppTest swaps a process-wide mock runtime in and out on every run, so the sessions' script
runs are interleaved from this thread; their training threads do run at the same time.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import registry
from tests.pages.conftest import Dashboard
from ui import cache, jobs, state

TRAIN = "pages/1_train.py"
HIDDEN = ("12", "16", "20", "24")


def test_four_sessions_train_and_predict_with_their_own_models(dashboard, mnist):
    sessions = [dashboard.open(TRAIN) for _ in HIDDEN]
    for at, hidden in zip(sessions, HIDDEN):
        dashboard.configure(at, train_size=10_000, hidden_sizes=hidden, epochs=2,
                            batch_size=32, seed=int(hidden))
    # Clicked one after another, the four runs (about a second each) train side by side.
    for at in sessions:
        dashboard.click(at, "Train")
    runs = [at.session_state[state.JOB] for at in sessions]
    assert len({id(job) for job in runs}) == 4
    for at in sessions:
        dashboard.finish(at, state.JOB)
    for at, hidden, job in zip(sessions, HIDDEN, runs):
        assert job.snapshot().status == "completed"
        active = at.session_state[state.ACTIVE_MODEL]
        assert active.model is job.model
        assert active.model.config.hidden_sizes == (int(hidden),)
        assert at.session_state[state.SETTINGS]["hidden_sizes"] == hidden
        assert [run["name"] for run in at.session_state[state.RUN_HISTORY]] == ["run 1"]

    # Each session's Evaluate and Draw pages use that session's model.
    for at, hidden, job in zip(sessions, HIDDEN, runs):
        dashboard.go(at, "pages/2_evaluate.py")
        assert dashboard.texts(at.caption)[0].startswith(
            f"run 1 (trained here): NumPy MLP 784-{hidden}-10")
        accuracy = job.snapshot().test_metrics["test_accuracy"]
        shown = {metric.label: metric.value for metric in at.metric}
        assert shown["Test accuracy"] == f"{accuracy:.2%}"
    for at, hidden in zip(sessions, HIDDEN):
        dashboard.go(at, "pages/3_draw.py")
        assert f"784-{hidden}-10" in dashboard.texts(at.caption)[0]
    probabilities = [job.model.predict_proba(mnist.test_images[:100]) for job in runs]
    assert all(not np.allclose(probabilities[0], other) for other in probabilities[1:])


def test_a_second_train_click_while_training_starts_nothing(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, train_size=60_000, hidden_sizes="64", epochs=20, batch_size=32)
    stale_train = Dashboard.button(at, "Train")      # what a quick second click still sees
    dashboard.click(at, "Train")
    job = at.session_state[state.JOB]
    assert not job.snapshot().finished and jobs.running_count() >= 1
    before = jobs.running_count()
    stale_train.click().run()
    dashboard.assert_ok(at)
    assert at.session_state[state.JOB] is job and not job.snapshot().finished
    assert jobs.running_count() == before
    dashboard.click(at, "Stop")
    dashboard.finish(at, state.JOB)
    assert job.snapshot().status == "stopped"


def test_settings_and_models_stay_in_their_session(dashboard):
    first, second = dashboard.open(TRAIN), dashboard.open(TRAIN)
    dashboard.configure(first, epochs=3, optimizer="sgd")
    second.run()
    assert second.slider(key="w_epochs").value == state.default_settings()["epochs"]
    assert second.selectbox(key="w_optimizer").value == "adam"
    dashboard.go(second, "pages/2_evaluate.py")       # a page that needs the model loads it
    third = dashboard.open(TRAIN)                        # describes the default, loads nothing
    assert third.session_state[state.ACTIVE_MODEL] is None
    # The host removes the shipped default (the dashboard itself does not let anyone).
    registry.delete("default-mlp")
    first.run()
    # The other visitor keeps the model it already holds, though the folder is gone.
    assert second.session_state[state.ACTIVE_MODEL].name == "default-mlp"
    second.run()
    assert dashboard.texts(second.title) == ["Evaluate"]
    assert "default-mlp (shipped)" in dashboard.texts(second.sidebar.caption)[0]
    # The third never held it: its sidebar no longer offers a model that is gone.
    third.run()
    assert "none yet" in dashboard.texts(third.sidebar.caption)[0]


def test_what_sessions_share_is_read_only(dashboard, mnist):
    sessions = [dashboard.open("pages/2_evaluate.py") for _ in range(2)]
    shared = [at.session_state[state.ACTIVE_MODEL] for at in sessions]
    assert shared[0] is shared[1]                      # one copy for every visitor...
    probabilities = shared[0].test_probabilities(mnist.test_images)
    with pytest.raises(ValueError):
        probabilities[0, 0] = 1.0                      # ...that nobody can edit
    data, error = cache.mnist()
    assert error is None   # (the process-wide memo may be a fresh load: identity is not the point)
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        assert not array.flags.writeable
        with pytest.raises(ValueError):
            array[0] = 0
