"""The Evaluate page's "Adapt to your digits" part: start fine-tuning a copy of the active
model on the custom digits, watch it, then compare before and after, use the copy or save
it. The fine-tuning is engine.adapt's; the worker thread is ui.jobs.AdaptJob's."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

import streamlit as st

from engine.adapt import adapt_problem
from engine.custom import custom_dir
from ui import cache, state, visitors
from ui.active import ActiveModel
from ui.jobs import AdaptJob
from ui.limits import busy_message
from ui.train_view import live_snapshot, save_form

if TYPE_CHECKING:
    import pandas as pd

ADAPT_JOB = state.ADAPT_JOB
ORIGIN = "adapted here"


def adapt_section(active: ActiveModel, data: Any) -> None:
    st.subheader("Adapt to your digits")
    st.caption("Fine-tunes a copy of the active model on your digits mixed with three times "
               "as many MNIST training images, so it learns your handwriting without "
               "forgetting MNIST. A quarter of each digit's drawings is kept back to check "
               "the copy honestly. The active model itself is not changed.")
    if active.origin == ORIGIN:
        st.caption("The active model was adapted on most of these digits, so the scores "
                   "above flatter it; its held-out row below is the honest number.")
    digits, problem = _digits()
    job: AdaptJob | None = st.session_state.get(ADAPT_JOB)
    running = job is not None and not job.snapshot().finished
    if st.button("Adapt to your digits", key="adapt_start", icon=":material/tune:",
                 disabled=bool(problem) or running, help=problem):
        job = AdaptJob(active.model, digits, data, base_name=active.name)
        if job.start():
            st.session_state[ADAPT_JOB] = job
            visitors.keep(ADAPT_JOB, job)
            st.rerun()
        st.warning(busy_message(), icon=":material/hourglass_top:")
    if problem:
        st.caption(f"Not yet: {problem}.")
    if running:
        adapt_progress()
    elif job is not None:
        _finished(job, active)


def _digits() -> tuple[Any, str | None]:
    """The custom digits and why they are too few to adapt to (None when they will do)."""
    try:
        digits = cache.custom_digits(custom_dir())
    except FileNotFoundError:
        return None, "there is no custom digits folder yet; draw and save digits on Draw & test"
    return digits, adapt_problem(digits.labels)


@st.fragment(run_every=1.0)
def adapt_progress() -> None:
    """Redrawn every second while the copy trains."""
    if live_snapshot(ADAPT_JOB) is None:
        return
    if st.button("Stop adapting", key="adapt_stop", icon=":material/stop:"):
        st.session_state[ADAPT_JOB].stop()


def _finished(job: AdaptJob, active: ActiveModel) -> None:
    snapshot, result = job.snapshot(), job.result
    if result is None:
        st.error(f"Adapting did not finish. {snapshot.message}".strip(),
                 icon=":material/error:")
        return
    report = result.report
    if report["status"] != "completed":
        st.warning(report["message"], icon=":material/warning:")
    st.markdown(f"**{job.base_name}, before and after adapting** "
                f"({report['epochs']:g} epochs, {report['seconds']:.0f} s)")
    st.dataframe(before_after_table(report), hide_index=True, width="stretch",
                 column_config={"before": st.column_config.NumberColumn(format="%.1f%%"),
                                "after": st.column_config.NumberColumn(format="%.1f%%"),
                                "change (points)": st.column_config.NumberColumn(
                                    format="%.1f")})
    for note in report["notes"]:
        st.info(note, icon=":material/info:")
    with st.expander("Per digit, on your held-out digits"):
        st.dataframe(per_digit_table(report), hide_index=True, width="stretch")
    if active.model is result.model:
        st.success("The adapted model is the active model.", icon=":material/check:")
    elif st.button("Use the adapted model", key="adapt_use",
                   icon=":material/published_with_changes:"):
        state.set_active(ActiveModel(
            model=result.model, name=f"{job.base_name}-adapted", origin=ORIGIN,
            test_accuracy=report["mnist_after"]))
        st.rerun()
    _save_form(job, report)


def before_after_table(report: dict[str, Any]) -> pd.DataFrame:
    """Percentages: the held-out custom digits and MNIST's test set, before and after."""
    import pandas as pd     # here: 0.3 s to import, and only this tab's tables need it

    rows = [(f"Your held-out digits ({report['holdout_count']})", "custom"),
            ("MNIST test set", "mnist")]
    before = [100 * report[f"{part}_before"] for _, part in rows]
    after = [100 * report[f"{part}_after"] for _, part in rows]
    return pd.DataFrame({"scored on": [label for label, _ in rows], "before": before,
                         "after": after,
                         # Rounded here (+ 0.0 turns -0.0 into 0.0): the table shows one
                         # decimal, and "-0.0" reads as a loss where there is none.
                         "change (points)": [round(new - old, 1) + 0.0
                                             for old, new in zip(before, after)]})


def per_digit_table(report: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    per_class = report["per_class"]
    return pd.DataFrame({
        "digit": range(10),
        "before": [_percent(value) for value in per_class["custom_before"]],
        "after": [_percent(value) for value in per_class["custom_after"]]})


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def default_name(base_name: str) -> str:
    """A registry-safe name for the adapted copy of `base_name` (which may be "run 2")."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base_name).strip("-.") or "model"
    return f"{base[:40]}-adapted-{dt.datetime.now():%Y%m%d-%H%M}"


def _save_form(job: AdaptJob, report: dict[str, Any]) -> None:
    save_form("save_adapted", "**Save the adapted model** to the registry (see Models)",
              job.model, default_name=default_name(job.base_name),
              metrics={**job.result.test_metrics, "adaptation": report},
              command=f"dashboard Evaluate page: adapted {job.base_name} to "
                      f"{report['custom_count']} custom digits")
