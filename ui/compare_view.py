"""Parts of the Compare page: the two-engine run, the same-weights check, saved models
side by side, past runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from engine.config import TrainConfig, describe
from engine.timing import median_latency
from ui import cache, figures, state, visitors
from ui.jobs import CompareJob
from ui.limits import busy_message
from ui.state import ENGINE_NAMES
from ui.train_view import progress_text

COPY_REPORT = "compare_copy_report"      # (the model copied, its report)
SAVED_COMPARED = "compare_saved_shown"   # the saved models last compared


def start(config: TrainConfig, data: Any) -> str | None:
    job = CompareJob(config, data)
    if not job.start():
        return busy_message()
    st.session_state[state.COMPARE_JOB] = job
    visitors.keep(state.COMPARE_JOB, job)
    return None


@st.fragment(run_every=1.0)
def live() -> None:
    job: CompareJob | None = st.session_state.get(state.COMPARE_JOB)
    if job is None:
        return
    visitors.watch(job)
    if job.finished:
        st.rerun()
    snapshots = {engine: item.snapshot() for engine, item in job.jobs.items()}
    for engine, snapshot in snapshots.items():
        text = progress_text(snapshot) if snapshot.status == "running" else snapshot.status
        st.progress(snapshot.fraction_done, text=f"{ENGINE_NAMES[engine]}: {text}")
    st.plotly_chart(figures.compare_curves(
        {ENGINE_NAMES[engine]: snapshot.history for engine, snapshot in snapshots.items()}),
        key="compare_live", width="stretch")


def results(job: CompareJob, data: Any) -> None:
    rows, histories = [], {}
    sample = data.test_images[:1]
    for engine, item in job.jobs.items():
        snapshot = item.snapshot()
        model = item.model
        histories[ENGINE_NAMES[engine]] = snapshot.history
        seconds = snapshot.history.column("seconds")
        rows.append({
            "engine": ENGINE_NAMES[engine],
            "status": snapshot.status,
            "test accuracy": _percent((snapshot.test_metrics or {}).get("test_accuracy")),
            "final validation accuracy": _percent(snapshot.history.epochs[-1].val_accuracy
                                                  if snapshot.history.epochs else None),
            "seconds per epoch (median)": snapshot.history.seconds_per_epoch(),
            "total seconds": sum(seconds) if seconds else None,
            "parameters": model.parameter_count if model is not None else None,
            "one-image latency (ms)": (median_latency(model, sample) * 1000
                                       if model is not None else None),
        })
        if snapshot.message:
            st.caption(f"{ENGINE_NAMES[engine]}: {snapshot.message}")
    table = pd.DataFrame(rows)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "test accuracy": st.column_config.NumberColumn(format="%.2f%%"),
        "final validation accuracy": st.column_config.NumberColumn(format="%.2f%%"),
        "seconds per epoch (median)": st.column_config.NumberColumn(format="%.2f"),
        "total seconds": st.column_config.NumberColumn(format="%.1f"),
        "one-image latency (ms)": st.column_config.NumberColumn(format="%.2f")})
    ratio = _speed_ratio(rows)
    if ratio:
        st.markdown(ratio)
    left, right = st.columns(2)
    left.plotly_chart(figures.compare_curves(histories, metric="val_accuracy"),
                      key="compare_accuracy", width="stretch")
    right.plotly_chart(figures.compare_curves(histories, metric="train_loss"),
                       key="compare_loss", width="stretch")


def _percent(fraction: float | None) -> float | None:
    """Accuracy in percent points: Streamlit's "percent" format drops trailing zeros, so
    90.80% would stand next to 90.98% as 90.8%."""
    return None if fraction is None else fraction * 100


def _speed_ratio(rows: list[dict[str, Any]]) -> str | None:
    seconds = {row["engine"]: row["seconds per epoch (median)"] for row in rows}
    if not all(seconds.values()):
        return None
    ratio = seconds["NumPy"] / seconds["Keras"]
    return (f"NumPy needed **{ratio:.2f}x** Keras's time per epoch on this machine "
            f"({seconds['NumPy']:.2f} s against {seconds['Keras']:.2f} s).")


def same_weights_section(data: Any) -> None:
    """Copy the active model's weights into the other engine and show both predict the
    same."""
    st.subheader("Same weights, two engines")
    active = state.active_model()
    if active is None:
        st.info("Make a model active (Train or Models) to check that both engines compute "
                "the same function from the same weights.")
        return
    st.caption(f"Copies the weights of **{active.name}** into a network built by the other "
               "engine from the same config, then predicts the 10,000 test digits with both.")
    # Kept in the session for this model: a button's result would vanish at the page's
    # next run (e.g. when "Compare these models" below is pressed).
    kept = st.session_state.get(COPY_REPORT)
    if st.button("Copy the weights across and compare", icon=":material/sync_alt:"):
        with st.spinner("Building the other engine's network..."):
            from engine.cross_engine import compare_engines_on

            kept = (active.model, compare_engines_on(active.model, data.test_images))
        st.session_state[COPY_REPORT] = kept
    if kept is not None and kept[0] is active.model:
        report = kept[1]
        columns = st.columns(4)
        columns[0].metric("Same prediction", f"{report['agreement']:.2%}")
        columns[1].metric("Largest probability gap", f"{report['max_probability_gap']:.1e}")
        columns[2].metric(f"{ENGINE_NAMES[report['engines'][0]]} one image",
                          f"{report['latency_ms'][0]:.2f} ms")
        columns[3].metric(f"{ENGINE_NAMES[report['engines'][1]]} one image",
                          f"{report['latency_ms'][1]:.2f} ms")


def session_runs() -> None:
    runs = st.session_state[state.RUN_HISTORY]
    st.subheader("Your runs in this session")
    if not runs:
        st.caption("Runs you train on the Train page appear here to compare.")
        return
    table = pd.DataFrame([{
        "run": run["name"], "engine": ENGINE_NAMES[run["engine"]],
        "hidden": ",".join(map(str, run["config"].hidden_sizes)),
        "optimizer": run["config"].optimizer, "learning rate": run["config"].learning_rate,
        "epochs": run["history"].epochs_done, "test accuracy": _percent(run["test_accuracy"]),
        "status": run["status"]} for run in runs])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "test accuracy": st.column_config.NumberColumn(format="%.2f%%")})
    chosen = st.multiselect("Overlay", [run["name"] for run in runs],
                            default=[run["name"] for run in runs[-3:]], key="compare_runs")
    histories = {name: run["history"] for run in runs for name in chosen if run["name"] == name}
    if histories:
        st.plotly_chart(figures.compare_curves(histories), key="compare_runs_chart",
                        width="stretch")


def saved_models_section(data: Any) -> None:
    """Saved models of either engine side by side: their recorded training and a live
    one-image latency. Loading a Keras model imports TensorFlow, so only on request."""
    from engine import registry

    st.subheader("Saved models side by side")
    usable = [info for info in registry.list_models() if not info.problem]
    names = [info.name for info in usable]
    shown = [name for name in cache.SHIPPED_MODELS if name in names]
    chosen = st.multiselect("Models", names, default=shown, key="compare_saved",
                            max_selections=4)
    if st.button("Compare these models", icon=":material/table_chart:",
                 disabled=len(chosen) < 2, key="compare_saved_go"):
        st.session_state[SAVED_COMPARED] = list(chosen)
    # The table stays for as long as the same models are chosen (other buttons rerun
    # the page).
    if st.session_state.get(SAVED_COMPARED) != list(chosen) or len(chosen) < 2:
        st.caption("Pick two to four; the shipped NumPy MLP and Keras CNN are a good start.")
        return
    rows, histories = [], {}
    with st.spinner("Loading the models..."):
        for name in chosen:
            loaded, error = cache.saved_model(registry.models_dir() / name)
            if loaded is None:
                st.error(error)
                continue
            model = loaded.model
            histories[name] = model.history
            rows.append({
                "model": name, "engine": ENGINE_NAMES[model.engine_name],
                "network": describe(model.config),
                "test accuracy": _percent(loaded.test_accuracy),
                "epochs": model.history.epochs_done,
                "seconds per epoch (median)": model.history.seconds_per_epoch(),
                "parameters": model.parameter_count,
                "one-image latency (ms)": median_latency(model, data.test_images[:1]) * 1000})
    if not rows:
        return
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", column_config={
        "network": st.column_config.TextColumn(width="medium"),
        "test accuracy": st.column_config.NumberColumn(format="%.2f%%"),
        "seconds per epoch (median)": st.column_config.NumberColumn("s per epoch",
                                                                    format="%.1f"),
        "one-image latency (ms)": st.column_config.NumberColumn(format="%.2f")})
    st.caption("Seconds per epoch are as recorded when each model was trained, on whatever "
               "machine and load that was; the latency is measured here, now.")
    left, right = st.columns(2)
    left.plotly_chart(figures.compare_curves(histories, metric="val_accuracy"),
                      key="compare_saved_accuracy", width="stretch")
    right.plotly_chart(figures.compare_curves(histories, metric="train_loss"),
                       key="compare_saved_loss", width="stretch")
