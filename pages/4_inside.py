"""Inside: why the active model answers what it answers, for one digit at a time."""

import numpy as np
import streamlit as st

from ui import inside_view, lessons, page
from ui.inside_view import VIEWS

page.setup("Inside", icon="🧠")
data = page.require_mnist()
active = page.require_model()

st.title("Inside the network")
st.caption(active.describe())

picker, chosen = st.columns([2, 3], gap="large")
with picker:
    digit = inside_view.choose_digit(data, active)
if digit is None:
    st.stop()
probabilities = active.model.predict_proba(digit.image[None])[0]
predicted = int(np.argmax(probabilities))
with chosen:
    inside_view.digit_card(digit, probabilities)

view_from_url = st.query_params.get("view")
if "i_view" not in st.session_state:
    st.session_state["i_view"] = view_from_url if view_from_url in VIEWS else "layers"
# A segmented control can be clicked off; the page then keeps the first view.
view = st.segmented_control("View", list(VIEWS), format_func=lambda key: VIEWS[key][0],
                            key="i_view", label_visibility="collapsed") or "layers"
st.query_params["view"] = view
lessons.note_inside_view(view, digit.source)
_, draw_view = VIEWS[view]
draw_view(inside_view.Subject(active, data, digit, predicted))
