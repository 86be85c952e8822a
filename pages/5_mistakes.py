"""Mistakes: a gallery of the test digits the active model misreads (and reads right)."""

import numpy as np
import streamlit as st

from engine import metrics
from ui import page
from ui.mistakes_view import (ANY, PER_PAGE, RIGHT_TAB, WRONG_TAB, gallery, read_filter,
                               store_filter)

page.setup("Mistakes", icon="❌")
data = page.require_mnist()
active = page.require_model()

st.title("Mistakes")
st.caption(active.describe())

probabilities = active.test_probabilities(data.test_images)
read_filter()

filter_columns = st.columns([1, 1, 2])
choices = [ANY, *range(10)]
true_digit = filter_columns[0].selectbox("True digit", choices, key="m_true",
                                         on_change=store_filter)
predicted_digit = filter_columns[1].selectbox("Predicted digit", choices, key="m_predicted",
                                              on_change=store_filter)
order = filter_columns[2].radio("Order", ["most confident first", "least confident first"],
                                horizontal=True, key="m_order")
query = {"true": true_digit, "predicted": predicted_digit}
st.query_params.update({key: str(value) for key, value in query.items() if value != ANY})
for key in [key for key, value in query.items() if value == ANY]:
    st.query_params.pop(key, None)

tabs = st.tabs([WRONG_TAB, RIGHT_TAB], key="m_tab", on_change="rerun")
for tab, correct in zip(tabs, (False, True)):
    if not tab.open:
        continue
    with tab:
        indices = metrics.mistakes(
            data.test_labels, probabilities,
            true_digit=None if true_digit == ANY else true_digit,
            predicted_digit=None if predicted_digit == ANY else predicted_digit,
            correct=correct, most_confident_first=order.startswith("most"))
        if not len(indices):
            st.info("No test digits match this filter.")
            continue
        pages = max(1, -(-len(indices) // PER_PAGE))
        number = st.number_input(f"Page (of {pages})", 1, pages, 1,
                                 key=f"m_page_{'right' if correct else 'wrong'}")
        shown = indices[(number - 1) * PER_PAGE: number * PER_PAGE]
        st.caption(f"{len(indices):,} test digits; showing {len(shown)}.")
        gallery(data.test_images[shown], data.test_labels[shown],
                np.asarray(probabilities[shown]), shown)
