"""The figures of ui.training_figures: they carry the recorded statistics and the sweep,
and say None for a model saved before statistics were recorded."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from engine import build_model, registry
from engine.config import TrainConfig
from engine.lr_finder import LearningRateSweep
from engine.training import History
from ui import training_figures

TINY = TrainConfig(hidden_sizes=(16, 8), epochs=3, batch_size=100, train_size=600,
                   validation_fraction=0.0)
FIGURES = (training_figures.weight_histograms_figure, training_figures.gradient_norms_figure,
           training_figures.dead_units_figure)


@pytest.fixture(scope="module")
def history(mnist) -> History:
    model = build_model("numpy", TINY)
    model.fit(mnist.train_images[:600], mnist.train_labels[:600])
    return model.history


def test_a_history_without_statistics_gives_no_figures():
    # As a model saved before the statistics were recorded: no such key in its meta.json.
    saved = registry.load(registry.models_dir() / "default-mlp").history.to_dict()
    saved.pop("training_stats", None)
    shipped = History.from_dict(saved)
    assert shipped.epochs and shipped.training_stats is None
    for figure in FIGURES:
        assert figure(shipped) is None and figure(None) is None
    assert "retrain it" in training_figures.NO_STATISTICS


def test_the_weight_heatmaps_hold_each_epochs_share_per_bin(history):
    figure = training_figures.weight_histograms_figure(history)
    stats = history.training_stats
    assert isinstance(figure, go.Figure) and len(figure.data) == 3
    for index, heatmap in enumerate(figure.data):
        counts = np.array([epoch.weight_counts[index] for epoch in stats.epochs])
        assert list(heatmap.y) == [1, 2, 3]
        np.testing.assert_allclose(heatmap.z, counts / counts.sum(axis=1, keepdims=True))
        np.testing.assert_allclose(heatmap.x, np.convolve(stats.bin_edges(index),
                                                          [0.5, 0.5], "valid"))


def test_gradient_norms_and_dead_units_have_a_line_per_layer(history):
    stats = history.training_stats
    norms = training_figures.gradient_norms_figure(history)
    assert [trace.name for trace in norms.data] == ["dense 1", "dense 2", "logits"]
    assert list(norms.data[2].y) == [epoch.gradient_norm[2] for epoch in stats.epochs]
    dead = training_figures.dead_units_figure(history)
    assert [trace.name for trace in dead.data] == ["dense 1", "dense 2"]    # ReLU only
    assert list(dead.data[1].customdata) == [epoch.dead_units[1] for epoch in stats.epochs]
    np.testing.assert_allclose(dead.data[1].y, np.array(dead.data[1].customdata) / 8)


def test_no_dead_units_figure_without_relu(mnist):
    model = build_model("numpy", TINY.replace(activation="tanh", epochs=1))
    model.fit(mnist.train_images[:600], mnist.train_labels[:600])
    assert training_figures.gradient_norms_figure(model.history) is not None
    assert training_figures.dead_units_figure(model.history) is None


def test_the_sweep_figure_marks_the_suggested_rate():
    rates = list(np.geomspace(1e-6, 1, 20))
    sweep = LearningRateSweep(rates=rates, losses=list(np.linspace(2.3, 0.5, 20)),
                              smoothed=list(np.linspace(2.3, 0.6, 20)), suggested=rates[7],
                              minimum_rate=rates[-1], rule="steepest descent",
                              batches_planned=20)
    figure = training_figures.lr_finder_figure(sweep)
    assert [trace.name for trace in figure.data] == ["batch loss", "smoothed loss"]
    (line,) = figure.layout.shapes
    assert line.x0 == line.x1 == rates[7]
    (note,) = figure.layout.annotations
    assert note.x == pytest.approx(np.log10(rates[7]))      # log axis: log10 of the rate
    assert note.text == f"suggested {rates[7]:.2g}"
    assert training_figures.lr_finder_figure(None) is None
