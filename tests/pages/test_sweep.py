"""The Sweep page through AppTest: its form refuses bad input under the widget concerned,
a tiny real sweep runs in the background and fills the table, and the best trial goes
into the sidebar or is trained on every image and saved with the sweep in its meta.json."""

from __future__ import annotations

from engine import registry
from ui import state
from ui.sweep_view import SWEEP_JOB

SWEEP = "pages/8_sweep.py"


def tiny(at, **values):
    """Two learning rates, one epoch on 1,000 images: a sweep of seconds."""
    at.multiselect(key="s_names").set_value(["learning_rate"]).run()
    at.text_input(key="s_vary_learning_rate").input(
        values.get("vary", "learning_rate=3e-3|1e-2")).run()
    at.number_input(key="s_trials").set_value(values.get("trials", 2)).run()
    at.number_input(key="s_train_size").set_value(1000).run()
    at.number_input(key="s_epochs").set_value(1).run()
    return at


def run_sweep(dashboard, at):
    dashboard.click(at, "Run sweep")
    job = at.session_state[SWEEP_JOB]
    job.join(180)
    assert not job.running, "the sweep did not finish in 180 s"
    at.run()
    dashboard.assert_ok(at)
    return job


def test_the_page_opens_with_a_first_sweep_ready(dashboard):
    at = dashboard.open(SWEEP)
    assert dashboard.texts(at.title) == ["Sweep"]
    assert at.multiselect(key="s_names").value == ["learning_rate", "hidden_sizes"]
    assert not dashboard.button(at, "Run sweep").disabled
    assert not at.error


def test_bad_input_is_explained_under_its_widget_and_nothing_starts(dashboard):
    at = tiny(dashboard.open(SWEEP), vary="learning_rate=1e-4:7")
    assert any("learning_rate" in text for text in dashboard.texts(at.error)), \
        dashboard.texts(at.error)
    assert dashboard.button(at, "Run sweep").disabled
    at = tiny(dashboard.open(SWEEP), vary="learning_rate=3e-3|1e-2", trials=5)
    assert any("the grid has 2 points" in text for text in dashboard.texts(at.error)), \
        dashboard.texts(at.error)
    assert dashboard.button(at, "Run sweep").disabled
    at.text_input(key="s_vary_learning_rate").input("learning_rate=fast").run()
    assert any("learning_rate" in text for text in dashboard.texts(at.error))
    assert dashboard.button(at, "Run sweep").disabled


def test_a_tiny_sweep_runs_and_its_best_goes_to_the_sidebar_and_the_registry(dashboard):
    at = tiny(dashboard.open(SWEEP))
    job = run_sweep(dashboard, at)
    snapshot = job.snapshot()
    assert snapshot["status"] == "completed"
    assert sorted(trial["params"]["learning_rate"] for trial in snapshot["trials"]) == \
        [3e-3, 1e-2]
    table = at.dataframe[0].value
    assert table["trial"].tolist() and table["validation accuracy"].is_monotonic_decreasing
    best = max(snapshot["trials"], key=lambda trial: trial["value"])
    dashboard.click(at, "Use best settings")
    assert at.session_state[state.SETTINGS]["learning_rate"] == best["params"]["learning_rate"]
    assert at.session_state[state.SETTINGS]["train_size"] == 1000

    dashboard.click(at, "Train and save best")
    best_job = at.session_state[state.SWEEP_BEST_JOB]
    best_job.join(240)
    at.run()
    dashboard.assert_ok(at)
    assert best_job.saved_path is not None, best_job.snapshot().message
    meta = registry.read_meta(best_job.saved_path)
    assert meta["config"]["train_size"] == 60_000
    assert meta["config"]["learning_rate"] == best["params"]["learning_rate"]
    assert meta["sweep"]["best_trial"] == best["number"]
    assert meta["sweep"]["best_validation_accuracy"] == best["value"]
    assert any("Saved as" in text for text in dashboard.texts(at.success))
