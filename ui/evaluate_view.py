"""Parts of the Evaluate page: reading a confusion-matrix click, and the custom digits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from engine.custom import custom_dir, evaluate_custom
from ui import cache, figures
from ui.active import ActiveModel


def selected_cell(event: Any) -> tuple[int, int] | None:
    """(true, predicted) of the clicked cell, or None."""
    rows = figures.selected_rows(event)
    if rows and len(rows[0]) >= 2 and None not in rows[0][:2]:
        return int(rows[0][0]), int(rows[0][1])
    try:
        point = event["selection"]["points"][0]
        return int(point["y"]), int(point["x"])
    except (KeyError, TypeError, IndexError):
        return None


def custom_digits_section(active: ActiveModel) -> None:
    folder = custom_dir()
    st.caption(f"Your own digits in `{folder.name}/<label>/`: how well the model reads "
               "handwriting that is not MNIST's. Add more on **Draw & test**.")
    try:
        result = evaluate_custom(active.model, digits=cache.custom_digits(folder))
    except FileNotFoundError as error:
        st.info(str(error))
        return
    if not result["count"]:
        st.info("No custom digits yet: draw some on **Draw & test** and save them.")
        _skipped(result["skipped"], folder)     # files there that could not be used
        return
    columns = st.columns(3)
    columns[0].metric("Custom-digit accuracy", f"{result['accuracy']:.1%}")
    columns[1].metric("Digits", result["count"])
    columns[2].metric("Misread", len(result["mistakes"]))
    st.plotly_chart(figures.per_class_bars(result["per_class_accuracy"],
                                           title="Accuracy per digit (custom)"),
                    key="custom_per_class", width="stretch")
    if result["mistakes"]:
        st.markdown("**Misread files**")
        _mistake_gallery(result["mistakes"], folder)
    _skipped(result["skipped"], folder)


def _skipped(skipped_files: list[dict[str, str]], folder: Path) -> None:
    import pandas as pd     # here: 0.3 s to import, only for this tab's tables

    if not skipped_files:
        return
    st.warning(f"{len(skipped_files)} file(s) in `{folder.name}/` could not be used: "
               "they are left out of the scores.", icon=":material/warning:")
    st.dataframe(pd.DataFrame({"file": [_shown(item["file"], folder) for item in skipped_files],
                               "why": [item["reason"] for item in skipped_files]}),
                 hide_index=True, width="stretch")


def _shown(path: str, folder: Path) -> str:
    """A path as the visitor knows it (label/file.png), not the server's full path."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return Path(path).name


def _mistake_gallery(mistakes: list[dict[str, Any]], folder: Path,
                     per_row: int = 8) -> None:
    import pandas as pd
    from PIL import Image

    for start in range(0, len(mistakes), per_row):
        columns = st.columns(per_row)
        for column, mistake in zip(columns, mistakes[start:start + per_row]):
            try:
                with Image.open(mistake["file"]) as picture:
                    thumbnail = np.asarray(picture.convert("RGBA").resize((84, 84)))
            except OSError:
                continue
            column.image(thumbnail, caption=f"{mistake['label']} read as "
                                            f"{mistake['predicted']} "
                                            f"({mistake['confidence']:.0%})")
    with st.expander("Which files"):
        st.dataframe(pd.DataFrame({
            "file": [_shown(mistake["file"], folder) for mistake in mistakes],
            "digit": [mistake["label"] for mistake in mistakes],
            "read as": [mistake["predicted"] for mistake in mistakes],
            "confidence": [mistake["confidence"] for mistake in mistakes]}),
            hide_index=True, width="stretch",
            column_config={"confidence": st.column_config.NumberColumn(format="percent")})
