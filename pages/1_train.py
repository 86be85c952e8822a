"""Train: the sidebar's config on the chosen engine, live curves, stop, save."""

import streamlit as st

from engine.config import describe
from ui import lr_finder_view, page, state, train_view
from ui.jobs import TrainingJob

settings = page.setup("Train", icon="🏋️", settings_expanded=True)
data = page.require_mnist()
job: TrainingJob | None = st.session_state[state.JOB]
running = job is not None and not job.snapshot().finished

st.title("Train")
if settings.config is not None:
    st.caption(f"{state.ENGINE_NAMES[settings.engine]}: {describe(settings.config)}, "
               f"{settings.config.epochs} epochs on {settings.config.train_size:,} images. "
               "Change it in the sidebar.")
    if not running:
        train_view.estimate_line(settings.engine, settings.config, data)
else:
    # Said here too: on a phone the sidebar, where the widget's message is, is folded.
    st.warning(f"**Train is off:** {settings.error}. Fix it in the sidebar's "
               "Hyperparameters.", icon=":material/block:")

start_column, stop_column, _ = st.columns([1, 1, 4])
train_clicked = start_column.button(
    "Train", type="primary", icon=":material/play_arrow:", width="stretch",
    disabled=running or settings.config is None,
    help="Fix the settings marked in the sidebar first" if settings.config is None else None)
stop_clicked = stop_column.button("Stop", icon=":material/stop:", width="stretch",
                                  disabled=not running,
                                  help="Stop after the current batch and keep what was learnt")

if stop_clicked and job is not None:
    job.stop()
if train_clicked and not running and settings.config is not None:
    message = train_view.start_run(settings.engine, settings.config, data)
    if message:     # refused: no rerun, which would wipe the reason off the page
        st.warning(message, icon=":material/hourglass_top:")
    else:           # started: redraw the buttons (Stop on, Train off) and the progress
        st.rerun()

lr_finder_view.lr_finder_panel(settings.engine, settings.config, data, training=running)

if job is None:
    st.info("Press **Train** to train the sidebar's settings. Training goes on while you "
            "look at other pages.", icon=":material/info:")
elif running:
    train_view.live_progress()
else:
    train_view.finished_run(job)
