"""Figures of the Inside page: maps over a digit, unit grids, the hidden-space map and the
layer-by-layer path. Pure functions of arrays, like ui.figures, whose look they share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.figures import CLASS_COLOURS, DIGITS, layout

# Signed maps: blue below zero, red above, and see-through at zero, so the faint digit
# drawn under every overlay shows wherever the map has nothing to say.
DIVERGING = [[0.0, "rgba(33,102,172,1)"], [0.25, "rgba(103,169,207,0.85)"],
             [0.5, "rgba(255,255,255,0)"], [0.75, "rgba(239,138,98,0.85)"],
             [1.0, "rgba(178,24,43,1)"]]
# The digit under an overlay: white paper, ink in light grey.
FAINT_INK = [[0.0, "#ffffff"], [1.0, "#b8b8b8"]]
GAP = 2        # pixels between tiles of a unit grid
# A signed map's colour bar on white paper: its see-through zero then reads as white, as on
# the map, and not as the dark theme's black.
SIGNED_COLORBAR = dict(thickness=12, bgcolor="#ffffff", tickfont=dict(color="#333333"),
                       title_font=dict(color="#333333"), outlinewidth=0)


def _symmetric_range(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _image_axes(figure: go.Figure, column: int = 1, **where) -> None:
    """Square pixels, image orientation; in subplot `column`, anchored to its own x axis
    (anchoring every panel to the first stretched the others)."""
    figure.update_xaxes(visible=False, constrain="domain", **where)
    figure.update_yaxes(visible=False, autorange="reversed",
                        scaleanchor="x" if column == 1 else f"x{column}",
                        constrain="domain", **where)


def overlay(image: np.ndarray, values: np.ndarray, *, title: str = "",
            colorbar_title: str = "") -> go.Figure:
    """A signed 28 x 28 map over the digit drawn faintly, centred on zero."""
    limit = _symmetric_range(np.asarray(values, float))
    figure = go.Figure()
    figure.add_heatmap(z=np.asarray(image, float), colorscale=FAINT_INK, zmin=0, zmax=1,
                       showscale=False, hoverinfo="skip")
    figure.add_heatmap(z=np.asarray(values, float), colorscale=DIVERGING, zmin=-limit,
                       zmax=limit, zmid=0,
                       colorbar=dict(title=colorbar_title, **SIGNED_COLORBAR),
                       hovertemplate="row %{y}, column %{x}: %{z:.4g}<extra></extra>")
    _image_axes(figure)
    return layout(figure, height=340, title=title)


def overlays_side_by_side(image: np.ndarray, maps: Sequence[tuple[str, np.ndarray]]
                          ) -> go.Figure:
    """Several signed maps of one digit on one shared scale (e.g. both engines)."""
    figure = make_subplots(rows=1, cols=len(maps), subplot_titles=[name for name, _ in maps],
                           horizontal_spacing=0.04)
    limit = max(_symmetric_range(np.asarray(values, float)) for _, values in maps)
    for column, (_, values) in enumerate(maps, start=1):
        figure.add_heatmap(z=np.asarray(image, float), colorscale=FAINT_INK, zmin=0, zmax=1,
                           showscale=False, hoverinfo="skip", row=1, col=column)
        figure.add_heatmap(z=np.asarray(values, float), colorscale=DIVERGING, zmin=-limit,
                           zmax=limit, zmid=0, showscale=column == len(maps),
                           colorbar=SIGNED_COLORBAR,
                           hovertemplate="%{z:.4g}<extra></extra>", row=1, col=column)
    for column in range(1, len(maps) + 1):
        _image_axes(figure, column, row=1, col=column)
    return layout(figure, height=320)


def tiles(stack: np.ndarray, columns: int) -> np.ndarray:
    """(k, h, w) maps laid out in a grid, NaN between tiles so gaps stay blank."""
    count, height, width = stack.shape
    rows = -(-count // columns)
    grid = np.full((rows * (height + GAP) - GAP, columns * (width + GAP) - GAP), np.nan)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + GAP), column * (width + GAP)
        grid[top:top + height, left:left + width] = stack[index]
    return grid


def unit_grid(stack: np.ndarray, labels: Sequence[str], *, columns: int = 8,
              signed: bool = True, title: str = "") -> go.Figure:
    """Many small maps (first-layer weights, filters, feature maps) as one heatmap; hover
    names the unit under the pointer."""
    stack = np.asarray(stack, float)
    count, height, width = stack.shape
    columns = min(columns, count)
    grid = tiles(stack, columns)
    names = np.full(grid.shape, "", dtype=object)
    for index, label in enumerate(labels):
        row, column = divmod(index, columns)
        names[row * (height + GAP):row * (height + GAP) + height,
              column * (width + GAP):column * (width + GAP) + width] = label
    if signed:
        limit = _symmetric_range(stack)
        scale = dict(colorscale="RdBu_r", zmin=-limit, zmax=limit, zmid=0)
    else:
        scale = dict(colorscale="Viridis", zmin=0, zmax=max(float(np.nanmax(stack)), 1e-9))
    figure = go.Figure(go.Heatmap(z=grid, customdata=names, **scale,
                                  colorbar=dict(thickness=12),
                                  hovertemplate="%{customdata}: %{z:.3g}<extra></extra>"))
    _image_axes(figure)
    rows = -(-count // columns)
    return layout(figure, height=min(120 + rows * 90, 760), title=title)


def unit_bars(values: np.ndarray, *, top: int, title: str) -> go.Figure:
    """The `top` most active units of a dense layer, strongest first."""
    values = np.asarray(values, float)
    order = np.argsort(values)[::-1][:top]
    figure = go.Figure(go.Bar(x=[f"#{unit}" for unit in order], y=values[order],
                              marker_color="#4f8bf9",
                              hovertemplate="unit %{x}: %{y:.3g}<extra></extra>"))
    figure.update_xaxes(type="category")
    return layout(figure, height=220, title=title)


def path_figure(columns: Sequence[tuple[str, np.ndarray, Sequence[str]]],
                edges: Sequence[np.ndarray]) -> go.Figure:
    """The digit's path through a dense network: each column a layer's most active units
    (brighter = stronger), each line a contribution (activation x weight) between them,
    red for excitation and blue for inhibition, thicker for larger."""
    figure = go.Figure()
    positions = []
    for x, (_, values, _) in enumerate(columns):
        count = len(values)
        positions.append(np.linspace(1, 0, count) if count > 1 else np.array([0.5]))
    largest = max((np.abs(edge).max() for edge in edges if edge.size), default=1.0) or 1.0
    for x, edge in enumerate(edges):
        source_y, target_y = positions[x], positions[x + 1]
        for i, j in zip(*np.nonzero(np.abs(edge) >= 0.15 * largest)):
            strength = edge[i, j] / largest
            figure.add_scatter(x=[x, x + 1], y=[source_y[i], target_y[j]], mode="lines",
                               line=dict(width=0.5 + 4 * abs(strength),
                                         color="#b2182b" if strength > 0 else "#2166ac"),
                               opacity=0.25 + 0.6 * abs(strength), hoverinfo="skip",
                               showlegend=False)
    for x, (name, values, labels) in enumerate(columns):
        values = np.asarray(values, float)
        brightness = values / (values.max() if values.max() > 0 else 1.0)
        figure.add_scatter(
            x=np.full(len(values), x), y=positions[x], mode="markers+text",
            marker=dict(size=16, color=brightness, colorscale="Viridis", cmin=0, cmax=1,
                        line=dict(width=1, color="#444")),
            text=list(labels), textposition="middle right", textfont=dict(size=10),
            customdata=values, name=name, showlegend=False,
            hovertemplate=f"{name}: %{{text}} = %{{customdata:.3g}}<extra></extra>")
    figure.update_xaxes(tickmode="array", tickvals=list(range(len(columns))),
                        ticktext=[name for name, _, _ in columns], showgrid=False,
                        zeroline=False, range=[-0.3, len(columns) - 0.4])
    figure.update_yaxes(visible=False, range=[-0.08, 1.08])
    return layout(figure, height=460)


def hidden_space_figure(coords: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                        explained: np.ndarray, *, indices: np.ndarray,
                        current: np.ndarray | None = None) -> go.Figure:
    """The last hidden layer's two principal components, one colour per true class; a
    misread digit is drawn as an x, and the current digit as a star."""
    figure = go.Figure()
    misread = labels != predictions
    for digit in DIGITS:
        for wrong in (False, True):
            mask = (labels == digit) & (misread == wrong)
            if not mask.any():
                continue
            figure.add_scattergl(
                x=coords[mask, 0], y=coords[mask, 1], mode="markers",
                name=f"{digit}" + (" misread" if wrong else ""),
                legendgroup=str(digit), showlegend=not wrong,
                marker=dict(color=CLASS_COLOURS[digit], size=9 if wrong else 4,
                            symbol="x" if wrong else "circle",
                            opacity=1.0 if wrong else 0.45,
                            line=dict(width=1, color="#222") if wrong else None),
                customdata=np.stack([indices[mask], labels[mask], predictions[mask]], 1),
                hovertemplate="test #%{customdata[0]}: %{customdata[1]} read as "
                              "%{customdata[2]}<extra></extra>")
    if current is not None:
        figure.add_scatter(x=current[:, 0], y=current[:, 1], mode="markers", name="this digit",
                           marker=dict(symbol="star", size=22, color="#ffd33d",
                                       line=dict(width=2, color="#000")))
    figure.update_xaxes(title_text=f"component 1 ({explained[0]:.0%} of the variance)")
    figure.update_yaxes(title_text=f"component 2 ({explained[1]:.0%} of the variance)")
    layout(figure, height=520, legend_title_text="true digit")
    return figure.update_layout(legend=dict(orientation="v", y=1))


def score_steps(scores: Sequence[float], *, title: str) -> go.Figure:
    """A score after each step of an optimisation (activation maximisation)."""
    figure = go.Figure(go.Scatter(x=list(range(len(scores))), y=list(scores),
                                  mode="lines+markers", line=dict(color="#4f8bf9")))
    figure.update_xaxes(title_text="step")
    figure.update_yaxes(title_text="score")
    return layout(figure, height=240, title=title)


def dead_unit_bars(names: Sequence[str], dead: Sequence[int], totals: Sequence[int]
                   ) -> go.Figure:
    """Per layer: units that never fire on the test set, against those that do."""
    alive = [total - count for count, total in zip(dead, totals)]
    figure = go.Figure()
    figure.add_bar(x=list(names), y=alive, name="fire on some digit", marker_color="#4f8bf9")
    figure.add_bar(x=list(names), y=list(dead), name="never fire (dead)",
                   marker_color="#e5534b")
    figure.update_yaxes(title_text="units")
    return layout(figure, height=280, barmode="stack")
