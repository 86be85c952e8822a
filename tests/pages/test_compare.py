"""The Compare page through AppTest: "Train both" on a tiny MLP or CNN trains NumPy then
Keras and tabulates them; the same weights give the same predictions in both engines, for
the shipped MLP and CNN alike; this session's runs are listed."""

from __future__ import annotations

import pytest

from engine import registry
from tests.pages.conftest import BUSY
from ui import state

COMPARE = "pages/6_compare.py"
TINY = {"train_size": 1000, "hidden_sizes": "32", "epochs": 2, "batch_size": 64}


def train_both(dashboard, at):
    """Press Train both and wait: (the job, each engine's snapshot, the results table)."""
    dashboard.click(at, "Train both")
    job = dashboard.finish(at, state.COMPARE_JOB)
    snapshots = {engine: run.snapshot() for engine, run in job.jobs.items()}
    assert {engine: snapshot.status for engine, snapshot in snapshots.items()} == {
        "numpy": "completed", "keras": "completed"}
    return job, snapshots, at.dataframe[0].value


def test_train_both_trains_each_engine_and_shows_the_table(dashboard):
    at = dashboard.open(COMPARE)
    assert dashboard.texts(at.title) == ["Compare"]
    dashboard.configure(at, **TINY)
    assert dashboard.texts(at.caption)[0] == (
        "MLP 784-32-10, relu, adam 0.001, 2 epochs on 1,000 images (from the sidebar).")
    _, snapshots, table = train_both(dashboard, at)
    assert list(table["engine"]) == ["NumPy", "Keras"]
    assert list(table["status"]) == ["completed", "completed"]
    assert list(table["test accuracy"]) == pytest.approx([      # shown in percent points
        100 * snapshots[engine].test_metrics["test_accuracy"] for engine in ("numpy", "keras")])
    assert list(table["parameters"]) == [784 * 32 + 32 + 32 * 10 + 10] * 2
    assert (table["one-image latency (ms)"] > 0).all()
    assert any("Keras's time per epoch" in text for text in dashboard.texts(at.markdown))
    assert len(at.get("plotly_chart")) == 2      # validation accuracy and training loss
    assert not dashboard.button(at, "Train both").disabled


def test_the_same_weights_give_the_same_predictions_in_both_engines(dashboard):
    at = dashboard.open(COMPARE)
    dashboard.click(at, "Copy the weights across and compare")
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["Same prediction"] == "100.00%"
    assert float(shown["Largest probability gap"]) < 1e-4
    assert shown["NumPy one image"].endswith(" ms") and shown["Keras one image"].endswith(" ms")


def test_compare_lists_this_sessions_runs(dashboard):
    at = dashboard.open("pages/1_train.py")
    dashboard.train(at)
    dashboard.go(at, COMPARE)
    runs = at.dataframe[0].value
    assert list(runs["run"]) == ["run 1"] and list(runs["hidden"]) == ["32"]
    assert at.multiselect(key="compare_runs").value == ["run 1"]


def test_train_both_trains_one_cnn_on_each_engine(dashboard):
    at = dashboard.open(COMPARE)
    dashboard.configure(at, **TINY, architecture="cnn")
    dashboard.configure(at, conv_filters="4")     # shown once the architecture is cnn
    assert dashboard.texts(at.caption)[0].startswith("CNN conv 4 + dense 32-10")
    assert not dashboard.button(at, "Train both").disabled
    job, snapshots, table = train_both(dashboard, at)
    # conv 3x3x1x4 + batch norm (4 x 4: gamma, beta, moving mean and variance), then
    # 14*14*4 features -> 32 -> 10, the same count in both engines.
    expected = 9 * 4 + 16 + 784 * 32 + 32 + 32 * 10 + 10
    assert list(table["parameters"]) == [expected, expected]
    # One seed, one batch order: after two epochs on 900 images both read MNIST alike
    # (about 68% here), far above chance.
    accuracies = [snapshots[engine].test_metrics["test_accuracy"] for engine in job.jobs]
    assert min(accuracies) > 0.5 and abs(accuracies[0] - accuracies[1]) < 0.05


def test_the_shipped_cnn_predicts_the_same_in_both_engines(dashboard):
    at = dashboard.open("pages/7_models.py")
    at.selectbox(key="models_chosen").select("default-cnn").run()
    dashboard.click(at, "Make active")
    dashboard.go(at, COMPARE)
    dashboard.click(at, "Copy the weights across and compare")
    shown = {metric.label: metric.value for metric in at.metric}
    assert shown["Same prediction"] == "100.00%"
    assert float(shown["Largest probability gap"]) < 1e-4
    assert shown["Keras one image"].endswith(" ms") and shown["NumPy one image"].endswith(" ms")
    # The result stays when another button on the page reruns it.
    at.button(key="compare_saved_go").click().run()
    assert {metric.label: metric.value for metric in at.metric}["Same prediction"] == "100.00%"
    assert any("model" in frame.value.columns for frame in at.dataframe)


def test_a_busy_server_says_so_and_the_reason_stays_on_the_page(dashboard, busy_server):
    at = dashboard.open(COMPARE)
    dashboard.click(at, "Train both")
    assert at.session_state[state.COMPARE_JOB] is None
    assert any(BUSY in text for text in dashboard.texts(at.warning)), dashboard.texts(at.warning)


def test_saved_models_side_by_side(dashboard, mnist):
    at = dashboard.open(COMPARE)
    chosen = at.multiselect(key="compare_saved")
    assert chosen.value == ["default-mlp", "default-cnn"]          # the shipped pair
    at.button(key="compare_saved_go").click().run()
    dashboard.assert_ok(at)
    table = next(frame.value for frame in at.dataframe if "model" in frame.value.columns)
    assert table["model"].tolist() == ["default-mlp", "default-cnn"]
    assert table["engine"].tolist() == ["NumPy", "Keras"]
    recorded = [100 * registry.read_meta(dashboard.models_dir / name)["metrics"]["test_accuracy"]
                for name in ("default-mlp", "default-cnn")]
    assert table["test accuracy"].tolist() == pytest.approx(recorded)
    assert (table["one-image latency (ms)"] > 0).all() and (table["parameters"] > 0).all()
    chosen.set_value(["default-mlp"]).run()                          # one is not a comparison
    assert at.button(key="compare_saved_go").disabled
