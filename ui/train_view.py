"""The Train page's moving parts: starting a run, the live view redrawn every second by a
fragment, and the finished run with its save form."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import streamlit as st

from engine import registry
from engine.config import TrainConfig, describe
from engine.run_diagnosis import diagnose
from engine.training_stats import SAMPLE_EVERY
from ui import figures, state, training_figures, visitors
from ui.jobs import JobSnapshot, TrainingJob
from ui.limits import busy_message

STATUS_TEXT = {
    "completed": ("success", "Training finished."),
    "stopped": ("warning", "Training stopped; the model keeps what it learnt."),
    "diverged": ("error", "Training diverged."),
    "failed": ("error", "Training failed."),
}


def start_run(engine: str, config: TrainConfig, data: Any) -> str | None:
    """Start the visitor's run; a message for people if the server is busy."""
    job = TrainingJob(engine, config, data)
    if not job.start():
        return busy_message()
    st.session_state[state.JOB] = job
    visitors.keep(state.JOB, job)
    return None


def progress_text(snapshot: JobSnapshot) -> str:
    progress = snapshot.progress
    if progress is None:
        return "Preparing the data and building the network..."
    left = f" · about {_duration(snapshot.seconds_left)} left" \
        if snapshot.seconds_left is not None else ""
    return (f"Epoch {progress.epoch} of {snapshot.config.epochs} · batch {progress.batch} of "
            f"{progress.batches_per_epoch} · loss {progress.loss:.4f}{left}")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def live_snapshot(job_key: str, text_of: Callable[[JobSnapshot], str] = progress_text
                  ) -> JobSnapshot | None:
    """For a live fragment: the job's snapshot under a progress bar (its text from
    `text_of`), after rerunning the whole page once the job has ended (so buttons and
    results catch up)."""
    job = st.session_state.get(job_key)
    if job is None:
        return None
    visitors.watch(job)
    snapshot = job.snapshot()
    if snapshot.finished:
        st.rerun()
    st.progress(snapshot.fraction_done, text=text_of(snapshot))
    return snapshot


@st.fragment(run_every=1.0)
def live_progress() -> None:
    """Redrawn every second while the run trains."""
    snapshot = live_snapshot(state.JOB)
    if snapshot is None:
        return
    _epoch_metrics(snapshot)
    st.plotly_chart(figures.training_curves(snapshot.history), key="train_curves",
                    width="stretch")
    training_advice(snapshot.history)
    training_statistics(snapshot.history)


def training_advice(history: Any) -> None:
    """The engines' latest advice on the run (e.g. "not learning"), while it trains and
    after; earlier epochs' lines mostly repeat it, so they are counted, not shown."""
    if not history.warnings:
        return
    line = history.warnings[-1]
    earlier = len(history.warnings) - 1
    more = f" ({earlier} earlier epoch{'s' if earlier > 1 else ''} said so too.)" \
        if earlier else ""
    st.warning(line[:1].upper() + line[1:] + more, icon=":material/lightbulb:")


STATISTICS_TABS = ("Weights", "Gradients", "Dead units")


def training_statistics(history: Any) -> None:
    """What each layer's weights, gradients and ReLU units did epoch by epoch, folded
    under the curves; updated with each epoch while the run goes on."""
    with st.expander("Inside the network: weights, gradients and dead units per epoch",
                     icon=":material/stacked_line_chart:"):
        statistics_tabs(history, key="train")


def statistics_tabs(history: Any, *, key: str) -> None:
    """The per-epoch statistics in three tabs (Train under its curves, Inside for any
    model), or what to do when the model has none."""
    if history.training_stats is None or not history.training_stats.epochs:
        st.caption("They appear here when the first epoch ends."
                   if history.status in ("new", "running") or not history.epochs
                   else training_figures.NO_STATISTICS)
        return
    weights, gradients, dead = st.tabs(list(STATISTICS_TABS))
    weights.caption("How the weights of each layer spread, on the same bins every "
                    "epoch: a spread that widens means the layer is learning.")
    weights.plotly_chart(training_figures.weight_histograms_figure(history),
                         key=f"{key}_weights", width="stretch")
    gradients.caption("The size of each layer's gradient (the mean over every eighth "
                      "batch of an epoch). Lines that sink towards zero for the first "
                      "layers would be vanishing gradients.")
    gradients.plotly_chart(training_figures.gradient_norms_figure(history),
                           key=f"{key}_gradients", width="stretch")
    figure = training_figures.dead_units_figure(history)
    if figure is None:
        dead.caption("Dead units are counted after ReLU; this network's hidden layers "
                     "use another activation.")
    else:
        dead.caption(f"Units (channels for convolutions) whose ReLU output was zero "
                     f"for every image of the epoch's sampled batches (every "
                     f"{SAMPLE_EVERY}th): they no longer learn.")
        dead.plotly_chart(figure, key=f"{key}_dead_units", width="stretch")


def _epoch_metrics(snapshot: JobSnapshot) -> None:
    history = snapshot.history
    if not history.epochs:
        return
    last = history.epochs[-1]
    seconds = history.seconds_per_epoch()
    if seconds is None:         # stopped in its first epoch: that part is all there is
        seconds = last.seconds
    columns = st.columns(4)
    columns[0].metric("Epochs done", f"{history.epochs_done:.2f}".rstrip("0").rstrip("."))
    columns[1].metric("Training loss", f"{last.train_loss:.4f}")
    if last.val_accuracy is not None:
        columns[2].metric("Validation accuracy", f"{last.val_accuracy:.2%}")
    columns[3].metric("Seconds per epoch", f"{seconds:.1f}")


def finished_run(job: TrainingJob) -> None:
    snapshot = job.snapshot()
    kind, headline = STATUS_TEXT.get(snapshot.status, ("info", snapshot.status))
    message = snapshot.message[:1].upper() + snapshot.message[1:]
    getattr(st, kind)(f"{headline} {message}".strip())
    # The sidebar may hold other settings by now (a lesson, a preset): say which run this is.
    st.caption(f"The last run: {state.ENGINE_NAMES[snapshot.engine]} "
               f"{describe(snapshot.config)}, {snapshot.config.epochs} epochs on "
               f"{snapshot.config.train_size:,} images.")
    model = job.model
    if model is None:
        return
    activate_finished(job)
    if snapshot.status == "diverged":
        st.info("A diverged run does not become the active model: the pages keep using "
                "the one before.", icon=":material/info:")
    if snapshot.test_metrics:
        st.metric("MNIST test accuracy", f"{snapshot.test_metrics['test_accuracy']:.2%}")
    _epoch_metrics(snapshot)
    st.plotly_chart(figures.training_curves(snapshot.history), key="train_curves",
                    width="stretch")
    training_advice(snapshot.history)
    diagnosis(snapshot.history, snapshot.config)
    training_statistics(snapshot.history)
    _save_form(job, snapshot)


def diagnosis(history: Any, config: TrainConfig) -> None:
    """The run in plain words under its curves: what went wrong and what to try."""
    findings = diagnose(history, config)
    if not findings:
        return
    st.markdown("**What the curves say**")
    for finding in findings:
        icon = ":material/report:" if finding.severity == "problem" else ":material/check:"
        (st.warning if finding.severity == "problem" else st.info)(finding.text, icon=icon)


def activate_finished(job: TrainingJob) -> None:
    """Make a finished run that kept a model the active model, once per session (a run
    found again after a reload counts for the new session), and remember it for Compare."""
    if st.session_state.get(state.ACTIVATED_JOB) is job or job.model is None:
        return
    st.session_state[state.ACTIVATED_JOB] = job
    snapshot = job.snapshot()
    number = len(st.session_state[state.RUN_HISTORY]) + 1
    name = f"run {number}"
    accuracy = (snapshot.test_metrics or {}).get("test_accuracy")
    if snapshot.status != "diverged":     # its kept weights may only guess
        state.set_active(state.ActiveModel(model=job.model, name=name, origin="trained here",
                                           test_accuracy=accuracy))
    st.session_state[state.RUN_HISTORY].append({
        "name": name, "engine": snapshot.engine, "config": snapshot.config,
        "history": snapshot.history, "test_accuracy": accuracy,
        "status": snapshot.status, "seconds": snapshot.elapsed_seconds})


def _save_form(job: TrainingJob, snapshot: JobSnapshot) -> None:
    default_name = f"{snapshot.engine}-{snapshot.config.architecture}-" \
                   f"{dt.datetime.now():%Y%m%d-%H%M}"
    save_form("save_model", "**Save this model** to the registry (see Models)", job.model,
              default_name=default_name, metrics=snapshot.test_metrics,
              command=_train_command(snapshot))


def _train_command(snapshot: JobSnapshot) -> str:
    # Imported here: engine.cli pulls in the explainer and the NumPy engine, about 35 ms
    # on every page's first run for a line only a finished run's card needs.
    from engine.cli import train_command

    return train_command(snapshot.engine, snapshot.config)


def save_form(form_key: str, title: str, model: Any, *, default_name: str,
              metrics: dict[str, Any] | None, command: str) -> None:
    """A name box and a Save button writing `model` to the registry, with the outcome."""
    with st.form(form_key, border=True):
        st.markdown(title)
        # Keyed by the model, not by the default name: that name holds the minute, and a
        # box whose default changed between runs would drop what the visitor typed.
        name = st.text_input("Name", value=default_name, max_chars=64,
                             key=f"{form_key}_name_{id(model):x}")
        saved = st.form_submit_button("Save", icon=":material/save:")
    if not saved:
        return
    try:
        path = registry.save(model, name, metrics=metrics, command=command,
                             owner=visitors.owner_id(visitors.token()))
    except registry.ModelError as error:
        st.error(str(error), icon=":material/error:")
    except OSError as error:
        st.error(f"Could not write the model ({error.strerror}). Nothing was changed.",
                 icon=":material/error:")
    else:
        st.success(f"Saved as **{path.name}**.", icon=":material/check:")


# ---- before a run: how long, how much memory ------------------------------------

ESTIMATES = "run_estimates"     # session: {(engine, config without epochs): Estimate}


def estimate_line(engine: str, config: TrainConfig, data: Any) -> None:
    """The run's time and memory, from a few batches timed on this machine now. A Keras
    estimate loads TensorFlow (seconds), so it waits for a click until Keras is loaded."""
    import sys

    from engine.estimate import estimate

    kept = st.session_state.setdefault(ESTIMATES, {})
    key = (engine, config.replace(epochs=1, seed=0).to_json())
    if key not in kept:
        if engine == "keras" and "keras" not in sys.modules and not st.button(
                "Estimate time and memory", key="estimate_keras", icon=":material/timer:",
                help="Times a few batches; the first Keras use loads TensorFlow (seconds)"):
            return
        with st.spinner("Timing a few batches..."):
            kept[key] = estimate(engine, config, data.train_images, data.train_labels)
    guess = kept[key]
    seconds = guess.seconds_per_epoch * config.epochs
    st.caption(f":material/timer: About **{_duration(seconds)}** "
               f"({guess.seconds_per_epoch:.1f} s per epoch) and "
               f"**{max(guess.network_mb, 1):.0f} MB** more memory, from "
               "batches timed on this machine just now; augmentation and other visitors' "
               "runs add to it.")
