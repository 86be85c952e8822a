"""The Evaluate page through AppTest: the active model's scores on MNIST's test set, a
confusion-matrix cell that opens Mistakes filtered to it, and the custom digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import metrics, registry
from ui import evaluate_view, state

EVALUATE = "pages/2_evaluate.py"


def cell_click(true_digit: int, predicted_digit: int, count: int) -> dict:
    """The selection Plotly reports for one clicked marker of the confusion figure."""
    return {"selection": {"points": [{"customdata": [true_digit, predicted_digit, count],
                                      "x": predicted_digit, "y": true_digit}],
                          "point_indices": [true_digit * 10 + predicted_digit],
                          "box": [], "lasso": []}}


@pytest.fixture
def shipped_scores(dashboard, mnist):
    """The confusion matrix of the shipped default-mlp, computed outside the app."""
    model = registry.load(dashboard.models_dir / "default-mlp")
    predictions = np.argmax(model.predict_proba(mnist.test_images), axis=1)
    return metrics.confusion_matrix(mnist.test_labels, predictions)


def test_evaluate_shows_the_active_models_scores(dashboard, shipped_scores):
    at = dashboard.open(EVALUATE)
    assert dashboard.texts(at.title) == ["Evaluate"]
    assert dashboard.texts(at.caption)[0].startswith("default-mlp (shipped)")
    shown = {metric.label: metric.value for metric in at.metric}
    matrix = shipped_scores
    assert shown["Test accuracy"] == f"{metrics.accuracy(matrix):.2%}"
    assert shown["Test images misread"] == f"{int(matrix.sum() - np.trace(matrix)):,}"
    assert shown["Macro F1"] == f"{metrics.class_scores(matrix).macro_f1:.4f}"
    assert [tab.label for tab in at.tabs] == [
        "Confusion matrix", "Per digit", "Scores table", "Training curves", "Confidence",
        "Custom digits"]
    # Only the open tab is drawn: the matrix first, then each tab once opened.
    assert len(at.get("plotly_chart")) == 1 and not at.dataframe
    dashboard.open_tab(at, "e_tab", "Scores table")
    table = at.dataframe[0].value
    assert list(table["digit"]) == list(range(10))
    assert list(table["support"]) == list(matrix.sum(axis=1))
    assert np.allclose(table["recall"], np.diag(matrix) / matrix.sum(axis=1))
    for tab, charts in (("Per digit", 2), ("Training curves", 1), ("Confidence", 1)):
        dashboard.open_tab(at, "e_tab", tab)
        assert len(at.get("plotly_chart")) == charts, tab


def test_a_confusion_cell_opens_mistakes_filtered_to_it(dashboard, shipped_scores):
    at = dashboard.open(EVALUATE)
    count = int(shipped_scores[4, 9])
    at.session_state["confusion"] = cell_click(4, 9, count)
    at.run()
    dashboard.assert_ok(at)
    assert dashboard.texts(at.title) == ["Mistakes"]
    assert at.session_state[state.MISTAKE_FILTER] == (4, 9)
    assert at.selectbox(key="m_true").value == 4
    assert at.selectbox(key="m_predicted").value == 9
    assert dashboard.page_params(at) == {"true": "4", "predicted": "9"}
    assert f"{count:,} test digits; showing {min(count, 48)}." in dashboard.texts(at.caption)
    # Back on Evaluate, the old click does not send the visitor away again.
    dashboard.go(at, EVALUATE)
    assert dashboard.texts(at.title) == ["Evaluate"]


@pytest.mark.parametrize("event, expected", [
    (cell_click(4, 9, 3), (4, 9)),
    ({"selection": {"points": [{"x": 2, "y": 7}]}}, (7, 2)),      # no customdata
    ({"selection": {"points": []}}, None),
    ({"selection": {}}, None),
    (None, None),
])
def test_selected_cell_reads_customdata_or_x_and_y(event, expected):
    assert evaluate_view.selected_cell(event) == expected


def test_custom_digits_are_scored(dashboard):
    at = dashboard.open_tab(dashboard.open(EVALUATE), "e_tab", "Custom digits")
    shown = {metric.label: metric.value for metric in at.metric}
    files = sorted(dashboard.custom_dir.glob("*/*.png"))
    assert shown["Digits"] == str(len(files))
    misread = int(shown["Misread"])
    assert shown["Custom-digit accuracy"] == f"{1 - misread / len(files):.1%}"
    if misread:     # each misread file is named, as label/file
        names = at.dataframe[-1].value["file"].tolist()
        assert len(names) == misread and all(
            (dashboard.custom_dir / name).is_file() for name in names)


def test_custom_digits_that_cannot_be_read_are_named(dashboard):
    for path in dashboard.custom_dir.glob("*/*.png"):
        path.unlink()
    (dashboard.custom_dir / "3" / "scan.png").write_bytes(b"not a picture")
    at = dashboard.open_tab(dashboard.open(EVALUATE), "e_tab", "Custom digits")
    assert any("No custom digits yet" in text for text in dashboard.texts(at.info))
    (warning,) = at.warning
    assert warning.value.startswith("1 file(s) in ")
    table = at.dataframe[-1].value
    assert table["file"].tolist() == [str(Path("3") / "scan.png")]    # not the server path
    assert "empty" in table["why"][0] or "not" in table["why"][0]


def test_no_active_model_points_to_train_and_models(dashboard):
    registry.delete("default-mlp")      # the host removed the shipped default
    at = dashboard.open(EVALUATE)
    assert not at.title
    assert any("No model is active yet" in text for text in dashboard.texts(at.info))
    assert [link.value for link in at.main.get("page_link")] == [
        "Train a model", "Pick a saved model"]


def test_the_first_view_waits_for_no_import_it_does_not_show():
    # pandas (tables) and SciPy's ndimage (custom digits) take 0.3 s each to import;
    # the confusion matrix, the tab a first visit shows, needs neither. A fresh
    # interpreter: in this one, other tests have imported both.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
              f"app = AppTest.from_file({str(root / 'dashboard.py')!r}, default_timeout=120)\n"
              "app.run()\napp.switch_page('pages/2_evaluate.py')\napp.run()\n"
              "assert not app.exception, app.exception\n"
              "assert app.get('plotly_chart'), 'no confusion matrix drawn'\n"
              "print(sorted(name for name in ('pandas', 'scipy.ndimage') "
              "if name in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
