"""Evaluate: the active model on MNIST's test set and on the custom digits, and adapting
it to them."""

import numpy as np
import streamlit as st

from engine import metrics
from ui import adapt_view, evaluate_view, figures, page, state, visitors

page.setup("Evaluate", icon="📊")
data = page.require_mnist()
active = page.require_model()

st.title("Evaluate")
st.caption(active.describe())

probabilities = active.test_probabilities(data.test_images)
labels = data.test_labels
predictions = np.argmax(probabilities, axis=1)
matrix = metrics.confusion_matrix(labels, predictions)
scores = metrics.class_scores(matrix)

columns = st.columns(4)
columns[0].metric("Test accuracy", f"{metrics.accuracy(matrix):.2%}")
columns[1].metric("Test images misread", f"{int(matrix.sum() - np.trace(matrix)):,}")
columns[2].metric("Macro F1", f"{scores.macro_f1:.4f}")
columns[3].metric("Parameters", f"{active.model.parameter_count:,}")

# Only the open tab is computed: the custom digits (preprocessing every file, and the
# adaptation form) made a first visit take 8-9 s when the tab was never opened.
matrix_tab, class_tab, table_tab, curves_tab, confidence_tab, custom_tab = st.tabs(
    ["Confusion matrix", "Per digit", "Scores table", "Training curves", "Confidence",
     "Custom digits"], key="e_tab", on_change="rerun")

if matrix_tab.open:
    with matrix_tab:
        st.caption("Rows are the true digit, columns the prediction. **Click a cell** to "
                   "open those test images on Mistakes.")
        event = st.plotly_chart(figures.confusion_figure(matrix), key="confusion",
                                on_select="rerun", selection_mode="points",
                                width="stretch")
        chosen = evaluate_view.selected_cell(event)
        if chosen is not None:
            st.session_state[state.MISTAKE_FILTER] = chosen
            visitors.switch_page("pages/5_mistakes.py", true=str(chosen[0]),
                                 predicted=str(chosen[1]))

if class_tab.open:
    with class_tab:
        st.plotly_chart(figures.per_class_bars(scores.recall), key="per_class",
                        width="stretch")
        if active.model.history.epochs:
            st.plotly_chart(figures.per_class_over_epochs(active.model.history),
                            key="per_class_epochs", width="stretch")

if table_tab.open:
    with table_tab:
        import pandas as pd     # here: 0.3 s to import, which the other tabs do not need

        table = pd.DataFrame({"digit": range(10), "precision": scores.precision,
                              "recall": scores.recall, "f1": scores.f1,
                              "support": scores.support})
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={name: st.column_config.NumberColumn(format="%.4f")
                                    for name in ("precision", "recall", "f1")})

if curves_tab.open:
    with curves_tab:
        if active.model.history.epochs:
            st.plotly_chart(figures.training_curves(active.model.history), key="curves",
                            width="stretch")
        else:
            st.info("This model carries no training history.")

if confidence_tab.open:
    with confidence_tab:
        st.plotly_chart(figures.confidence_histogram(probabilities, labels),
                        key="confidence", width="stretch")

if custom_tab.open:
    with custom_tab:
        evaluate_view.custom_digits_section(active)
        adapt_view.adapt_section(active, data)
