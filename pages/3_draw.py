"""Draw & test: draw or upload digits, see each preprocessing step and the prediction,
and keep labelled digits in custom_digits/."""

import streamlit as st

from ui import draw_view, page

page.setup("Draw & test", icon="✏️")
active = page.require_model()

st.title("Draw & test")
st.caption(f"Predictions by {active.describe()}")

draw_tab, upload_tab = st.tabs(["Draw", "Upload pictures"])
with draw_tab:
    draw_view.canvas_panel()
with upload_tab:
    draw_view.upload_panel()
