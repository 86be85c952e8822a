"""Compare: one config trained in NumPy and in Keras, side by side; the same weights
in both engines; saved models side by side; and this session's runs overlaid."""

import streamlit as st

from engine.config import describe
from ui import compare_view, lessons, page, state

settings = page.setup("Compare", icon="⚖️", settings_expanded=True)
st.session_state[lessons.COMPARE_SEEN] = True
data = page.require_mnist()

st.title("Compare")
st.markdown("The low-level and the high-level approach on **one config, one seed, the same "
            "data and batch order**: the from-scratch NumPy network against Keras.")

job = st.session_state[state.COMPARE_JOB]
running = job is not None and not job.finished

if settings.config is not None:
    st.caption(f"{describe(settings.config)}, {settings.config.epochs} epochs on "
               f"{settings.config.train_size:,} images (from the sidebar).")

start, stop, _ = st.columns([1, 1, 3])
can_start = settings.config is not None and not running
if start.button("Train both", type="primary", icon=":material/play_arrow:",
                disabled=not can_start, width="stretch"):
    message = compare_view.start(settings.config, data)
    if message:     # refused: no rerun, which would wipe the reason off the page
        st.warning(message, icon=":material/hourglass_top:")
    else:
        st.rerun()
if stop.button("Stop", icon=":material/stop:", disabled=not running,
               width="stretch"):
    job.stop()

if job is not None:
    if running:
        compare_view.live()
    else:
        compare_view.results(job, data)

st.divider()
compare_view.same_weights_section(data)
st.divider()
compare_view.saved_models_section(data)
st.divider()
compare_view.session_runs()
