"""Plotly figures of what happened inside a network while it trained (weights, gradients,
dead units per epoch; engine.training_stats) and of the learning-rate finder's sweep.

Each takes plain data and returns a figure, or None when the history holds no statistics
(a model saved before they were recorded): the caller then shows NO_STATISTICS.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.lr_finder import LearningRateSweep
from engine.training import History
from engine.training_stats import SAMPLE_EVERY, TrainingStats
from ui.figures import TRAIN_COLOUR, VALIDATION_COLOUR, layout, log_ticks

NO_STATISTICS = ("This model was saved before training statistics were recorded: "
                 "retrain it to see them.")


def _statistics(history: History | None) -> TrainingStats | None:
    stats = history.training_stats if history is not None else None
    return stats if stats is not None and stats.epochs else None


def _epoch_step(epochs: list[int]) -> int:
    """Whole epochs only, about ten ticks at most."""
    return max(1, math.ceil(len(epochs) / 10))


def weight_histograms_figure(history: History | None) -> go.Figure | None:
    """Per layer, how its kernel's weights spread, epoch by epoch: one row of a heatmap
    per epoch on the run's fixed bins, so a widening or shifting spread shows."""
    stats = _statistics(history)
    if stats is None:
        return None
    names = [layer["name"] for layer in stats.layers]
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=names,
                           horizontal_spacing=0.04, shared_yaxes=True)
    epochs = [epoch.epoch for epoch in stats.epochs]
    for index in range(len(names)):
        edges = stats.bin_edges(index)
        counts = np.array([epoch.weight_counts[index] for epoch in stats.epochs])
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        outside = [epoch.weights_below[index] + epoch.weights_above[index]
                   for epoch in stats.epochs]
        figure.add_heatmap(
            x=(edges[:-1] + edges[1:]) / 2, y=epochs, z=share, coloraxis="coloraxis",
            customdata=np.stack([counts, np.repeat(np.array(outside)[:, None],
                                                   counts.shape[1], axis=1)], axis=-1),
            hovertemplate="epoch %{y}, weight %{x:.3g}: %{customdata[0]} weights"
                          "<br>%{customdata[1]} outside the range<extra></extra>",
            row=1, col=index + 1)
    figure.update_xaxes(title_text="weight", tickformat=".2g")
    figure.update_yaxes(title_text="epoch", dtick=_epoch_step(epochs), row=1, col=1)
    # A scale that darkens early: the tails, where the weights move, stay visible
    # beside the peak near zero.
    figure.update_layout(coloraxis=dict(
        cmin=0, colorscale=[[0.0, "#f7fbff"], [0.05, "#c6dbef"], [0.3, "#4292c6"],
                            [1.0, "#08306b"]],
        colorbar=dict(title="share", tickformat=".0%", thickness=12)))
    layout(figure, height=320, title="Weights of each layer, epoch by epoch")
    # Room between the figure's title and the layers' names above each panel.
    return figure.update_layout(margin=dict(t=80))


def gradient_norms_figure(history: History | None) -> go.Figure | None:
    """Each layer's gradient norm (the mean over every SAMPLE_EVERY-th batch of an epoch)
    by epoch, on a log axis: vanishing or exploding gradients show as lines falling or
    climbing apart."""
    stats = _statistics(history)
    if stats is None:
        return None
    figure = go.Figure()
    epochs = [epoch.epoch for epoch in stats.epochs]
    values = []
    for index, layer in enumerate(stats.layers):
        norms = [np.nan if epoch.gradient_norm[index] is None else epoch.gradient_norm[index]
                 for epoch in stats.epochs]
        values += norms
        figure.add_scatter(x=epochs, y=norms, name=layer["name"], mode="lines+markers",
                           hovertemplate=f"{layer['name']}, epoch %{{x}}: %{{y:.3g}}"
                                         "<extra></extra>")
    shown = [value for value in values if np.isfinite(value) and value > 0]
    ticks = log_ticks(min(shown), max(shown)) if shown else None
    figure.update_yaxes(type="log", tickvals=ticks, tickformat=".3g",
                        title_text=f"gradient norm (mean of every {SAMPLE_EVERY}th batch)")
    figure.update_xaxes(title_text="epoch", dtick=_epoch_step(epochs))
    return layout(figure, title="Gradient norm of each layer")


def dead_units_figure(history: History | None) -> go.Figure | None:
    """Share of each ReLU layer's units (channels for convolutions) that fired on no
    image of an epoch's sampled batches. None without statistics or without a ReLU layer."""
    stats = _statistics(history)
    relu = [index for index, layer in enumerate(stats.layers) if layer["relu"]] \
        if stats is not None else []
    if not relu:
        return None
    figure = go.Figure()
    epochs = [epoch.epoch for epoch in stats.epochs]
    for index in relu:
        layer = stats.layers[index]
        dead = [epoch.dead_units[index] for epoch in stats.epochs]
        figure.add_scatter(
            x=epochs, y=[count / layer["units"] for count in dead], name=layer["name"],
            mode="lines+markers", customdata=dead,
            hovertemplate=f"{layer['name']}, epoch %{{x}}: %{{customdata}} of "
                          f"{layer['units']} dead<extra></extra>")
    figure.update_yaxes(tickformat=".0%", rangemode="tozero", title_text="dead units")
    figure.update_xaxes(title_text="epoch", dtick=_epoch_step(epochs))
    return layout(figure, title="Units that never fired in an epoch")


def lr_finder_figure(result: LearningRateSweep | None) -> go.Figure | None:
    """The sweep's loss against the rate (log axis), smoothed, with the suggested rate
    marked. The top is cut a little above the starting loss, so the blow-up that ends
    the sweep does not flatten the part that matters."""
    if result is None or not result.losses:
        return None
    figure = go.Figure()
    figure.add_scatter(x=result.rates, y=result.losses, name="batch loss", mode="lines",
                       line=dict(color=TRAIN_COLOUR, width=1), opacity=0.35)
    figure.add_scatter(x=result.rates, y=result.smoothed, name="smoothed loss",
                       mode="lines", line=dict(color=TRAIN_COLOUR, width=2.5))
    if result.suggested is not None:
        figure.add_vline(x=result.suggested, line=dict(color=VALIDATION_COLOUR, dash="dash"))
        # Placed by hand: on a log axis an annotation's x is log10 of the value, which
        # add_vline's own annotation gets wrong.
        figure.add_annotation(x=math.log10(result.suggested), y=1, yref="paper",
                              text=f"suggested {result.suggested:.2g}", showarrow=False,
                              xanchor="left", yanchor="top", font=dict(
                                  color=VALIDATION_COLOUR))
    finite = [value for value in result.smoothed if np.isfinite(value)]
    if finite:
        top = 1.25 * max(finite[: len(finite) // 2 + 1])
        figure.update_yaxes(range=[0, top])
    figure.update_xaxes(type="log", title_text="learning rate", exponentformat="power")
    figure.update_yaxes(title_text="training loss")
    return layout(figure, height=340, title="Loss as the learning rate grows")
