"""The "Why did it fail?" panel of Draw & test: one prepared digit's measures against MNIST's
(percentiles for the predicted and the intended digit), the intended digit's probability under
shift, rotation and stroke width, and the fix in one click. The numbers come from
engine.diagnose; the save button is the caller's."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from engine import diagnose

AXIS_TITLES = {"shift x": "shift right (px)", "shift y": "shift down (px)",
               "rotation": "turned clockwise (degrees)", "stroke": "stroke width (x)"}


def sensitivity_figure(curves: dict[str, list[tuple[float, float]]], target: int) -> go.Figure:
    """One small line per change: the probability of `target` against the change's amount."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(curves), shared_yaxes=True,
                           subplot_titles=list(curves))
    for column, (name, pairs) in enumerate(curves.items(), start=1):
        amounts, probabilities = zip(*pairs)
        figure.add_trace(go.Scatter(x=amounts, y=probabilities, mode="lines+markers",
                                    name=name, showlegend=False), row=1, col=column)
        figure.update_xaxes(title_text=AXIS_TITLES[name], row=1, col=column)
    figure.update_yaxes(range=[0, 1.02], title_text=f"P({target})", row=1, col=1)
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10))
    return figure


def advice(fix: tuple[str, float, float] | None, odd: list[str], target: int) -> str:
    """What to change when redrawing, in words."""
    if fix is None:
        change = ("No single shift, turn or stroke change helps: the shape itself reads as "
                  "another digit. Redraw it the way most people write it, or add it to your "
                  "custom digits and adapt the model.")
    else:
        name, amount, probability = fix
        how = {"shift x": f"moved {abs(amount):.0f} px {'right' if amount > 0 else 'left'}",
               "shift y": f"moved {abs(amount):.0f} px {'down' if amount > 0 else 'up'}",
               "rotation": f"turned {abs(amount):.0f} degrees "
                           f"{'clockwise' if amount > 0 else 'anticlockwise'}",
               "stroke": f"drawn with a stroke {amount:g} times as wide"}[name]
        change = f"{how.capitalize()}, it reads as {target} at {probability:.0%}."
    unusual = (f" Unlike nearly all of MNIST's {target}s: {', '.join(odd)}." if odd else "")
    return change + unusual


def why_panel(model: Any, image: np.ndarray, predicted: int, intended: int, *, key: str,
              save: Callable[[], None]) -> None:
    """The panel for one (28, 28) digit the model read as `predicted`; `intended` is what
    the visitor says it is. `save` adds it to the custom digits."""
    with st.expander("Why did it fail?", expanded=predicted != intended):
        if predicted == intended:
            st.caption("Set 'The digit really is' below when the reading is wrong: this "
                       "panel then compares the drawing with MNIST's digits of both kinds.")
        rows = diagnose.percentiles(image, tuple(dict.fromkeys((predicted, intended))))
        st.dataframe(rows, hide_index=True, key=f"{key}_why_table")
        curves = diagnose.sensitivity(model, image, intended)
        st.plotly_chart(sensitivity_figure(curves, intended), key=f"{key}_why_curves",
                        width="stretch")
        tip = advice(diagnose.best_fix(curves), diagnose.unusual(rows, intended), intended)
        st.markdown(f"**Try:** {tip}")
        # Not "Add to custom digits": that is the save form's button, and a name of its own.
        if st.button(f"Keep it as a custom {intended}", key=f"{key}_why_save",
                     icon=":material/add_photo_alternate:",
                     help="Then adapt the model to your digits on the Evaluate page."):
            save()
