"""Plotly figure builders: pure functions of arrays and histories, testable without a
server and shared by every page that shows the same thing."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.training import History

DIGITS = list(range(10))
TRAIN_COLOUR, VALIDATION_COLOUR = "#4f8bf9", "#f0883e"
ENGINE_COLOURS = {"numpy": "#4f8bf9", "keras": "#e5534b"}
# One colour per digit on every page (Plotly's own qualitative cycle, named once).
CLASS_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3",
                 "#ff6692", "#b6e880", "#ff97ff", "#fecb52")


def layout(figure: go.Figure, *, height: int = 320, **extra) -> go.Figure:
    """The house style every figure shares: height, tight margins, a legend below."""
    figure.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10),
                         legend=dict(orientation="h", y=-0.2), **extra)
    return figure


def training_curves(history: History, *, title: str = "") -> go.Figure:
    """Loss (per batch and per epoch) and accuracy (training, validation) side by side."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    batches = history.batches_per_epoch or 1
    if history.batch_loss:
        stride = history.batch_loss_stride
        x = (np.arange(len(history.batch_loss)) * stride + stride) / batches
        figure.add_scatter(x=x, y=history.batch_loss, name="batch loss", mode="lines",
                           line=dict(color=TRAIN_COLOUR, width=1), opacity=0.35, row=1, col=1)
    epochs = _epoch_axis(history)
    for name, column, colour in (("training", "train", TRAIN_COLOUR),
                                 ("validation", "val", VALIDATION_COLOUR)):
        loss, accuracy = history.column(f"{column}_loss"), history.column(f"{column}_accuracy")
        if any(value is not None for value in loss):
            figure.add_scatter(x=epochs, y=loss, name=f"{name} loss", mode="lines+markers",
                               line=dict(color=colour), row=1, col=1)
            figure.add_scatter(x=epochs, y=accuracy, name=f"{name} accuracy",
                               mode="lines+markers", line=dict(color=colour, dash="dot"),
                               row=1, col=2)
    figure.update_xaxes(title_text="epoch", rangemode="tozero")
    # Ticks of our own: plotly's default log ticks read "2, 1, 5, 2, 0.1", and one per
    # decade leaves a loss between 1.4 and 2.5 with no label at all.
    losses = [value for value in [*history.batch_loss, *history.column("train_loss"),
                                  *history.column("val_loss")]
              if value is not None and np.isfinite(value) and value > 0]
    ticks = log_ticks(min(losses), max(losses)) if losses else None
    figure.update_yaxes(type="log", tickvals=ticks, tickformat=".3g", row=1, col=1)
    figure.update_yaxes(tickformat=".1%", row=1, col=2)
    return layout(figure, title=title)


def log_ticks(low: float, high: float) -> list[float]:
    """Round tick values covering [low, high] on a log axis: decades when that gives three
    or more (every other one past eight), else 1-2-5 per decade, else finer steps."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    fine = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)
    for mantissas, enough in (((1,), 3), ((1, 2, 5), 3), (fine, 2)):
        inside = [mantissa * 10.0 ** exponent for exponent in range(first, last + 1)
                  for mantissa in mantissas if low <= mantissa * 10.0 ** exponent <= high]
        if len(inside) >= enough:
            return inside[::2] if len(inside) > 8 else inside
    # A nearly flat curve: its own ends, to three digits.
    return sorted({*inside, float(f"{low:.3g}"), float(f"{high:.3g}")})


def _epoch_axis(history: History) -> list[float]:
    done, axis = 0.0, []
    for record in history.epochs:
        done += record.fraction
        axis.append(round(done, 3))
    return axis


def per_class_bars(per_class_accuracy: Sequence[float | None], *,
                   title: str = "Accuracy per digit") -> go.Figure:
    values = [np.nan if value is None else value for value in per_class_accuracy]
    figure = go.Figure(go.Bar(x=DIGITS, y=values, marker_color=TRAIN_COLOUR,
                              text=[f"{v:.1%}" if not np.isnan(v) else "" for v in values],
                              textposition="outside",
                              hovertemplate="digit %{x}: %{y:.2%}<extra></extra>"))
    low = np.nanmin(values) if not np.all(np.isnan(values)) else 0.0
    figure.update_yaxes(range=[max(0.0, low - 0.05), 1.005], tickformat=".0%")
    figure.update_xaxes(tickmode="array", tickvals=DIGITS, title_text="true digit")
    return layout(figure, title=title)


def per_class_over_epochs(history: History) -> go.Figure:
    """Validation accuracy of each digit after every epoch: which digits are learnt late."""
    figure = go.Figure()
    epochs = _epoch_axis(history)
    rows = [record.val_per_class_accuracy for record in history.epochs]
    if rows and all(row is not None for row in rows):
        matrix = np.asarray(rows, dtype=float)
        for digit in DIGITS:
            figure.add_scatter(x=epochs, y=matrix[:, digit], name=str(digit),
                               mode="lines+markers", line=dict(color=CLASS_COLOURS[digit]))
    figure.update_yaxes(tickformat=".0%", title_text="validation accuracy")
    figure.update_xaxes(title_text="epoch")
    return layout(figure, title="Per-digit validation accuracy over the epochs",
                   legend_title_text="digit")


def confusion_figure(matrix: np.ndarray) -> go.Figure:
    """The confusion matrix as a grid of square markers, selectable cell by cell.

    A scatter, not a heatmap: selections on a Plotly heatmap return no points (an
    upstream bug), and each marker carries (true, predicted, count) in customdata.
    """
    matrix = np.asarray(matrix)
    true_digit, predicted_digit = np.divmod(np.arange(100), 10)
    counts = matrix.reshape(-1)
    row_totals = np.maximum(matrix.sum(axis=1), 1)
    share = counts / row_totals[true_digit]
    off_diagonal = true_digit != predicted_digit
    # Colour by share of the row, on a log-like scale, so rare mistakes stay visible.
    colour = np.where(off_diagonal, np.sqrt(share), 1.0)
    figure = go.Figure(go.Scatter(
        x=predicted_digit, y=true_digit, mode="markers+text",
        marker=dict(symbol="square", size=34, color=colour, colorscale="Blues", cmin=0,
                    cmax=1, line=dict(width=0)),
        text=[str(count) if count else "" for count in counts],
        textfont=dict(size=11, color=["white" if c > 0.55 else "#333" for c in colour]),
        customdata=np.stack([true_digit, predicted_digit, counts], axis=1),
        hovertemplate="true %{customdata[0]}, predicted %{customdata[1]}: "
                      "%{customdata[2]} images<extra></extra>"))
    # Fixed axes: nothing to zoom or pan, a drag does nothing and a click selects a cell.
    figure.update_xaxes(title_text="predicted digit", tickmode="array", tickvals=DIGITS,
                        range=[-0.6, 9.6], showgrid=False, zeroline=False, side="top",
                        fixedrange=True)
    figure.update_yaxes(title_text="true digit", tickmode="array", tickvals=DIGITS,
                        range=[9.6, -0.6], showgrid=False, zeroline=False, scaleanchor="x",
                        fixedrange=True)
    # Not dragmode="select": with a select (or lasso) drag, Streamlit's frontend forces
    # clickmode="event", whose clicks it ignores on a scatter, so a click selected nothing.
    return layout(figure, height=460, dragmode="pan", clickmode="event+select")


def probability_bars(probabilities: np.ndarray, *, title: str = "") -> go.Figure:
    probabilities = np.asarray(probabilities, dtype=float)
    best = int(np.argmax(probabilities))
    colours = [TRAIN_COLOUR if digit == best else "#8b949e" for digit in DIGITS]
    figure = go.Figure(go.Bar(x=DIGITS, y=probabilities, marker_color=colours,
                              hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    figure.update_yaxes(range=[0, 1], tickformat=".0%")
    figure.update_xaxes(tickmode="array", tickvals=DIGITS)
    return layout(figure, height=220, title=title)


def engines_probability_bars(by_engine: Mapping[str, np.ndarray]) -> go.Figure:
    """Both engines' probabilities for one digit, grouped per class."""
    figure = go.Figure()
    for engine, probabilities in by_engine.items():
        figure.add_bar(x=DIGITS, y=np.asarray(probabilities, float), name=engine,
                       marker_color=ENGINE_COLOURS.get(engine.split()[0].lower()))
    figure.update_yaxes(range=[0, 1], tickformat=".0%")
    figure.update_xaxes(tickmode="array", tickvals=DIGITS)
    return layout(figure, height=240, barmode="group")


def confidence_histogram(probabilities: np.ndarray, labels: np.ndarray) -> go.Figure:
    """How sure the model is, for right and for wrong answers."""
    confidence = np.max(probabilities, axis=1)
    correct = np.argmax(probabilities, axis=1) == labels
    figure = go.Figure()
    for name, mask, colour in (("correct", correct, TRAIN_COLOUR),
                               ("wrong", ~correct, "#e5534b")):
        figure.add_histogram(x=confidence[mask], name=name, marker_color=colour,
                             xbins=dict(start=0.0, end=1.0, size=0.02), opacity=0.8)
    figure.update_yaxes(type="log", dtick=1, tickformat="d", title_text="images")
    figure.update_xaxes(title_text="confidence of the prediction", tickformat=".0%")
    return layout(figure, title="Confidence", barmode="overlay")


def compare_curves(histories: Mapping[str, History], *, metric: str = "val_accuracy"
                   ) -> go.Figure:
    """One metric per epoch for several runs overlaid (e.g. NumPy vs Keras)."""
    figure = go.Figure()
    for name, history in histories.items():
        figure.add_scatter(x=_epoch_axis(history), y=history.column(metric), name=name,
                           mode="lines+markers",
                           line=dict(color=ENGINE_COLOURS.get(name.split()[0].lower())))
    figure.update_xaxes(title_text="epoch")
    if "accuracy" in metric:
        figure.update_yaxes(tickformat=".1%")
    return layout(figure, title=metric.replace("_", " "))


def tile_digits(images: np.ndarray, columns: int, *, gap: int = 2) -> np.ndarray:
    """Lay (n, 28, 28) digits out in a grid image with a thin gap, for st.image."""
    images = np.asarray(images, dtype=np.float32)
    if images.max(initial=0) > 1.0:
        images = images / 255.0
    rows = -(-len(images) // columns)
    size = 28 + gap
    canvas = np.full((rows * size - gap, columns * size - gap), 0.15, np.float32)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        canvas[row * size: row * size + 28, column * size: column * size + 28] = image
    return canvas


def square(image: np.ndarray) -> np.ndarray:
    """`image` padded with black to a square, so a tall crop does not display tall."""
    height, width = image.shape[:2]
    side = max(height, width)
    padded = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    padded[top:top + height, left:left + width] = image
    return padded


def selected_rows(event: Any) -> list[list[Any]]:
    """The customdata row of each point a Plotly selection event holds (key access, so
    AppTest can set it). A browser sends a row as {"0": a, "1": b, ...} (Plotly keeps
    numpy arrays as typed arrays); AppTest and older Plotly send a list."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return []
    rows = []
    for point in points or []:
        custom = point.get("customdata")
        if isinstance(custom, dict):
            custom = [custom.get(str(index), custom.get(index)) for index in range(len(custom))]
        rows.append(list(custom) if custom is not None else [])
    return rows
