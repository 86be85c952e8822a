"""Parts of the Mistakes page: the filter it opens with, and the gallery."""

from __future__ import annotations

import numpy as np
import streamlit as st

from ui import state

ANY = "any"
PER_PAGE = 48
TILE_WIDTH = 104      # pixels: an 84-pixel digit and its caption
URL_READ = "mistakes_url_read"   # the link's ?true=&predicted= was applied once
WRONG_TAB, RIGHT_TAB = "Misclassified", "Correctly classified"


def read_filter() -> None:
    """Seed the filter boxes: a confusion-matrix click, else the URL, else none."""
    true_digit, predicted_digit = st.session_state.get(state.MISTAKE_FILTER, (None, None))
    # The URL counts once, when the visitor arrives with a link: later it only mirrors
    # the boxes, and reading it again would undo a box set back to "any".
    if true_digit is None and predicted_digit is None and not st.session_state.get(URL_READ):
        true_digit = _digit(st.query_params.get("true"))
        predicted_digit = _digit(st.query_params.get("predicted"))
        st.session_state[state.MISTAKE_FILTER] = (true_digit, predicted_digit)
    st.session_state[URL_READ] = True
    if true_digit is not None and true_digit == predicted_digit:
        # A diagonal cell (3 read as 3) has nothing misread: show the digits read right.
        st.session_state["m_tab"] = RIGHT_TAB
    # The select boxes own their keys; a new filter from elsewhere must replace them.
    for key, value in (("m_true", true_digit), ("m_predicted", predicted_digit)):
        st.session_state[key] = ANY if value is None else value


def store_filter() -> None:
    """A filter box changed: remember the pair (the boxes are re-seeded from it)."""
    values = [st.session_state.get(key, ANY) for key in ("m_true", "m_predicted")]
    st.session_state[state.MISTAKE_FILTER] = tuple(None if v == ANY else v for v in values)


def _digit(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and int(text) < 10 else None


def gallery(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
            indices: np.ndarray) -> None:
    """Digit tiles with 'true -> predicted (confidence)' under each, wrapping to the
    screen's width: eight to a row on a laptop, three on a phone (columns would stack
    into one tile per row there)."""
    predictions = np.argmax(probabilities, axis=1)
    confidence = np.max(probabilities, axis=1)
    with st.container(horizontal=True, gap="small"):
        for item in range(len(images)):
            with st.container(width=TILE_WIDTH):
                st.image(images[item], width=84, clamp=True,
                         caption=f"#{indices[item]}: {labels[item]} → {predictions[item]} "
                                 f"({confidence[item]:.0%})")
                st.page_link("pages/4_inside.py", label="Inside",
                             icon=":material/neurology:",
                             query_params={"index": str(indices[item])},
                             help="Why the network reads it so")
