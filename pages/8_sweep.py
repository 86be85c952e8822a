"""Sweep: many configurations at once on an Optuna study, scored on validation images."""

import streamlit as st

from ui import page, sweep_view
from ui.sweep_view import SWEEP_JOB

settings = page.setup("Sweep", icon="🎛️")
data = page.require_mnist()

st.title("Sweep")
st.caption("Train many configurations and see which settings matter. Each trial is scored "
           "on validation images held out of the training set, never on the test set. "
           "The same sweep runs from the command line, on many workers and machines "
           "(`python -m engine sweep`; see the README).")

job = st.session_state.get(SWEEP_JOB)
running = job is not None and job.running
spec = sweep_view.form(settings.engine)
start_column, stop_column = st.columns([1, 4])
if start_column.button("Run sweep", type="primary", icon=":material/play_arrow:",
                       disabled=running or spec is None):
    reason = sweep_view.start(spec, data)
    if reason:
        st.warning(reason, icon=":material/hourglass_top:")
    else:
        st.rerun()
if stop_column.button("Stop", icon=":material/stop:", disabled=not running,
                      help="Ends the running trial after its current batch"):
    job.stop()

sweep_view.live_results()
job = st.session_state.get(SWEEP_JOB)
if job is None:
    st.info("Pick the parameters to vary and press **Run sweep**.", icon=":material/tune:")
elif not job.running:
    sweep_view.finished_results(job, data)
