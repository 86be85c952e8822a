"""The Train page's learning-rate finder: sweep a fresh copy of the sidebar's network in
the background, show the loss against the rate, and put the suggested rate in the
sidebar with one click."""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine.config import describe
from engine.lr_finder import BATCHES, END_RATE, START_RATE
from ui import state, training_figures, visitors
from ui.jobs import JobSnapshot, LearningRateJob
from ui.limits import busy_message
from ui.train_view import live_snapshot

EXPLANATION = (
    f"Trains a fresh copy of the sidebar's network for {BATCHES} batches while the "
    f"learning rate grows from {START_RATE:.6f} to {END_RATE:g}. Too small a rate and the "
    "loss hardly moves; too large and it blows up. The suggestion is where the smoothed "
    "loss falls fastest. Your settings and the active model are not touched.")


def lr_finder_panel(engine: str, config: Any, data: Any, *, training: bool) -> None:
    """The finder in an expander: its button, then the sweep live or its result."""
    job: LearningRateJob | None = st.session_state.get(state.LR_FINDER_JOB)
    sweeping = job is not None and not job.snapshot().finished
    # Open while it has something new to show; folded away while a run trains, so the
    # run's curves stay near the top.
    with st.expander("Find a learning rate", expanded=sweeping or (
            job is not None and not training), icon=":material/search_insights:"):
        st.caption(EXPLANATION)
        reason = ("Fix the settings marked in the sidebar first" if config is None else
                  "Wait for the training run to end" if training else None)
        if st.button("Find a learning rate", key="lr_finder_start",
                     icon=":material/play_arrow:", disabled=sweeping or reason is not None,
                     help=reason):
            _start(engine, config, data)
        if sweeping:
            _live_sweep()
        elif job is not None:
            _sweep_result(job)


def _start(engine: str, config: Any, data: Any) -> None:
    job = LearningRateJob(engine, config, data)
    if not job.start():
        st.warning(busy_message(), icon=":material/hourglass_top:")
        return
    st.session_state[state.LR_FINDER_JOB] = job
    visitors.keep(state.LR_FINDER_JOB, job)
    st.rerun()


def _sweep_text(snapshot: JobSnapshot) -> str:
    progress = snapshot.progress
    if progress is None:
        return "Building a fresh network..."
    return f"Batch {progress.batch} of {progress.batches_per_epoch} · loss {progress.loss:.3f}"


@st.fragment(run_every=0.5)
def _live_sweep() -> None:
    live_snapshot(state.LR_FINDER_JOB, _sweep_text)


def _sweep_result(job: LearningRateJob) -> None:
    snapshot = job.snapshot()
    if snapshot.status == "failed":
        st.error(f"The sweep failed: {snapshot.message}", icon=":material/error:")
        return
    result = job.result
    figure = training_figures.lr_finder_figure(result)
    if figure is None:
        st.info("The sweep was stopped before its first batch.", icon=":material/info:")
        return
    st.plotly_chart(figure, key="lr_finder_chart", width="stretch")
    engine_name = state.ENGINE_NAMES[job.engine]
    found_for = f"{engine_name}: {describe(job.swept_config)}, batch {job.config.batch_size}"
    if snapshot.message:
        st.caption(f"The sweep {snapshot.message}.")
    if result.suggested is None:
        st.warning(f"The loss never fell below where it started ({found_for}); check the "
                   "network and the optimizer before training.", icon=":material/warning:")
        return
    rate = float(f"{result.suggested:.2g}")
    st.caption(f"Found for {found_for}; rule: {result.rule}.")
    if state.settings()["learning_rate"] == rate:
        st.success(f"The sidebar's learning rate is {rate:g}.", icon=":material/check:")
    else:
        st.button(f"Use {rate:g} as the learning rate", key="lr_finder_use",
                  icon=":material/input:", on_click=use_learning_rate, args=(rate,))


def use_learning_rate(rate: float) -> None:
    """Button callback: runs before the next run, so the sidebar draws the new rate."""
    state.settings()["learning_rate"] = rate
