"""The Plotly builders in ui.figures: each returns a go.Figure whose traces carry the
arrays it was given, checked without a server."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from engine import build_model, metrics
from engine.config import TrainConfig
from ui import figures

TINY = TrainConfig(hidden_sizes=(16,), epochs=2, batch_size=64, train_size=1000,
                   validation_fraction=0.2)


@pytest.fixture(scope="module")
def trained(mnist):
    """A tiny NumPy MLP trained for two epochs on real MNIST, and its test probabilities."""
    from engine.training import split_training_data

    train_images, train_labels, val_images, val_labels = split_training_data(
        mnist.train_images, mnist.train_labels, TINY)
    model = build_model("numpy", TINY)
    model.fit(train_images, train_labels, validation=(val_images, val_labels))
    return model, model.predict_proba(mnist.test_images)


def _trace_names(figure: go.Figure) -> list[str]:
    return [trace.name for trace in figure.data]


def test_training_curves_plots_every_epoch_and_the_batch_losses(trained):
    model, _ = trained
    history = model.history
    figure = figures.training_curves(history, title="run")
    assert isinstance(figure, go.Figure)
    assert _trace_names(figure) == ["batch loss", "training loss", "training accuracy",
                                    "validation loss", "validation accuracy"]
    by_name = {trace.name: trace for trace in figure.data}
    assert list(by_name["training loss"].y) == history.column("train_loss")
    assert list(by_name["validation accuracy"].y) == history.column("val_accuracy")
    assert list(by_name["training loss"].x) == [1.0, 2.0]
    assert len(by_name["batch loss"].y) == len(history.batch_loss)
    # The batch-loss x axis is in epochs: its last point sits at the end of epoch 2.
    assert by_name["batch loss"].x[-1] == pytest.approx(
        len(history.batch_loss) * history.batch_loss_stride / history.batches_per_epoch)
    assert figure.layout.title.text == "run"


@pytest.mark.parametrize("low, high", [(1.45, 2.5), (0.02, 2.4), (2.47, 2.49), (1e-3, 1e9)])
def test_the_loss_axis_labels_any_range_with_round_ticks_inside_it(low, high):
    from engine.training import History

    history = History(batch_loss=list(np.geomspace(high, low, 50)), batches_per_epoch=50)
    figure = figures.training_curves(history)
    ticks = list(figure.layout.yaxis.tickvals)
    assert 2 <= len(ticks) <= 8, ticks
    assert all(low * 0.999 <= tick <= high * 1.001 for tick in ticks), ticks
    assert figures.log_ticks(1.45, 2.5) == [1.5, 2.0, 2.5]
    assert figures.log_ticks(0.05, 0.3) == [0.05, 0.1, 0.2]


def test_training_curves_of_an_empty_history_has_no_traces():
    from engine.training import History

    figure = figures.training_curves(History())
    assert isinstance(figure, go.Figure) and len(figure.data) == 0


def test_training_curves_x_axis_counts_a_stopped_epoch_as_a_fraction(trained):
    from engine.training import History

    data = trained[0].history.to_dict()
    data["epochs"][-1]["fraction"] = 0.25
    figure = figures.training_curves(History.from_dict(data))
    assert list(figure.data[1].x) == [1.0, 1.25]


def test_confusion_figure_customdata_is_true_predicted_count_for_all_100_cells(mnist, trained):
    _, probabilities = trained
    matrix = metrics.confusion_matrix(mnist.test_labels, np.argmax(probabilities, axis=1))
    figure = figures.confusion_figure(matrix)
    assert isinstance(figure, go.Figure) and len(figure.data) == 1
    scatter = figure.data[0]
    custom = np.asarray(scatter.customdata)
    assert custom.shape == (100, 3)
    for true_digit, predicted_digit, count in custom:
        assert matrix[true_digit, predicted_digit] == count
    assert sorted(map(tuple, custom[:, :2].tolist())) == [
        (true_digit, predicted_digit) for true_digit in range(10)
        for predicted_digit in range(10)]
    # Markers sit at x = predicted, y = true, so a click's x/y also names the cell.
    assert list(scatter.x) == list(custom[:, 1]) and list(scatter.y) == list(custom[:, 0])
    assert list(scatter.text) == [str(count) if count else "" for count in custom[:, 2]]
    assert custom[:, 2].sum() == len(mnist.test_labels)


def test_confusion_figure_colours_off_diagonal_cells_by_their_share_of_the_row():
    matrix = np.zeros((10, 10), dtype=int)
    matrix[3, 3], matrix[3, 5] = 75, 25
    colour = np.asarray(figures.confusion_figure(matrix).data[0].marker.color)
    assert colour[3 * 10 + 3] == 1.0                     # the diagonal is always full
    assert colour[3 * 10 + 5] == pytest.approx(np.sqrt(0.25))
    assert colour[4 * 10 + 5] == 0.0                     # an empty row divides by 1, not 0


def test_probability_bars_highlight_the_argmax(trained):
    _, probabilities = trained
    for row in probabilities[:5]:
        figure = figures.probability_bars(row)
        bars = figure.data[0]
        assert list(bars.y) == pytest.approx(list(row))
        colours = list(bars.marker.color)
        best = int(np.argmax(row))
        assert colours[best] == figures.TRAIN_COLOUR
        assert colours.count(figures.TRAIN_COLOUR) == 1


def test_engines_probability_bars_has_one_group_per_engine(trained):
    _, probabilities = trained
    by_engine = {"NumPy (a)": probabilities[0], "Keras (b)": probabilities[1]}
    figure = figures.engines_probability_bars(by_engine)
    assert _trace_names(figure) == list(by_engine)
    assert figure.layout.barmode == "group"
    assert list(figure.data[1].y) == pytest.approx(list(probabilities[1]))
    assert figure.data[0].marker.color == figures.ENGINE_COLOURS["numpy"]
    assert figure.data[1].marker.color == figures.ENGINE_COLOURS["keras"]


def test_per_class_bars_show_values_and_leave_missing_classes_blank():
    values = [0.9, None, *np.linspace(0.5, 1.0, 8)]
    figure = figures.per_class_bars(values, title="custom")
    bars = figure.data[0]
    assert list(bars.x) == list(range(10))
    assert np.isnan(bars.y[1]) and bars.text[1] == ""
    assert bars.y[0] == 0.9 and bars.text[0] == "90.0%"
    assert figure.layout.yaxis.range[0] == pytest.approx(0.45)   # lowest value minus 5 points
    assert figure.layout.title.text == "custom"


def test_per_class_over_epochs_draws_one_line_per_digit(trained):
    history = trained[0].history
    figure = figures.per_class_over_epochs(history)
    assert _trace_names(figure) == [str(digit) for digit in range(10)]
    rows = np.asarray([record.val_per_class_accuracy for record in history.epochs])
    assert list(figure.data[7].y) == pytest.approx(list(rows[:, 7]))


def test_confidence_histogram_splits_right_from_wrong(mnist, trained):
    _, probabilities = trained
    figure = figures.confidence_histogram(probabilities, mnist.test_labels)
    assert _trace_names(figure) == ["correct", "wrong"]
    correct = np.argmax(probabilities, axis=1) == mnist.test_labels
    assert len(figure.data[0].x) == correct.sum()
    assert len(figure.data[1].x) == (~correct).sum()
    assert np.asarray(figure.data[1].x) == pytest.approx(
        np.max(probabilities[~correct], axis=1))


def test_compare_curves_overlays_one_metric_of_each_run(trained):
    history = trained[0].history
    figure = figures.compare_curves({"NumPy": history, "Keras": history},
                                    metric="train_loss")
    assert _trace_names(figure) == ["NumPy", "Keras"]
    assert list(figure.data[0].y) == history.column("train_loss")
    assert figure.layout.title.text == "train loss"


def test_tile_digits_lays_out_a_grid_with_gaps(mnist):
    images = mnist.test_images[:23]
    grid = figures.tile_digits(images, columns=10, gap=2)
    assert grid.shape == (3 * 30 - 2, 10 * 30 - 2)
    assert grid.dtype == np.float32 and grid.max() <= 1.0
    # uint8 pixels are scaled to [0, 1]; digit 12 sits in row 1, column 2.
    assert np.array_equal(grid[30:58, 60:88], images[12] / np.float32(255))
    assert np.all(grid[28:30, :] == np.float32(0.15))         # the gap between rows
    assert np.all(grid[60:, 90:] == np.float32(0.15))         # the empty cells after digit 22
