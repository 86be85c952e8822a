"""Session-state keys, their defaults, and the active model every page works with.

Widget values live under keys of their own that no widget owns (`settings`), so they
survive page switches: Streamlit forgets a widget's state when a run does not draw it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from engine import registry
from engine.config import PRESETS
from ui.active import ENGINE_NAMES, ActiveModel  # noqa: F401 - ENGINE_NAMES re-exported
from ui.cache import saved_model, saved_model_summary

SETTINGS = "settings"              # dict: engine, preset and every TrainConfig field
ACTIVE_MODEL = "active_model"      # ActiveModel | None
ACTIVE_CHOSEN = "active_chosen"    # True once the visitor picked a model themselves
JOB = "training_job"               # ui.jobs.TrainingJob | None
COMPARE_JOB = "compare_job"        # ui.jobs.CompareJob | None
ADAPT_JOB = "adapt_job"            # ui.jobs.AdaptJob | None: Evaluate's adaptation
SWEEP_JOB = "sweep_job"            # ui.jobs.SweepJob | None: the Sweep page's study
SWEEP_BEST_JOB = "sweep_best_job"  # ui.sweep_view.BestRunJob | None: its best, trained
LR_FINDER_JOB = "lr_finder_job"    # ui.jobs.LearningRateJob | None: Train's finder
ACTIVATED_JOB = "activated_job"    # the TrainingJob this session last made active
MISTAKE_FILTER = "mistake_filter"  # (true digit | None, predicted digit | None)
RUN_HISTORY = "run_history"        # list of finished runs: dicts for the Compare page
LAST_DIGIT = "last_digit"          # ui.inside_view.Digit: the last drawn or uploaded digit
DEFAULT_MODEL_NAME = "default-mlp"


def default_settings() -> dict[str, Any]:
    return {"engine": "numpy", "preset": "default", **PRESETS["default"].to_dict()}


def init_session() -> None:
    """Give every key its default once per session."""
    defaults = {SETTINGS: default_settings, ACTIVE_MODEL: lambda: None,
                ACTIVE_CHOSEN: lambda: False, JOB: lambda: None, COMPARE_JOB: lambda: None,
                LR_FINDER_JOB: lambda: None,
                MISTAKE_FILTER: lambda: (None, None), RUN_HISTORY: list}
    for key, make in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = make()


def settings() -> dict[str, Any]:
    return st.session_state[SETTINGS]


def set_active(active: ActiveModel | None, *, chosen: bool = True) -> None:
    st.session_state[ACTIVE_MODEL] = active
    st.session_state[ACTIVE_CHOSEN] = chosen
    if chosen:
        # Imported here: ui.visitors imports this module.
        from ui import visitors

        visitors.keep_active(active)


def active_summary() -> str | None:
    """The active model in one line, or None. Until a page needs the model itself, the
    shipped default is described from its meta.json: a cold server's first Home visit
    then loads no weights."""
    active = st.session_state.get(ACTIVE_MODEL)
    if active is not None:
        return active.describe()
    if st.session_state.get(ACTIVE_CHOSEN):
        return None
    return saved_model_summary(registry.models_dir() / DEFAULT_MODEL_NAME)


def active_model() -> ActiveModel | None:
    """The visitor's active model; until they choose one, the shipped default."""
    active = st.session_state.get(ACTIVE_MODEL)
    if active is None and not st.session_state.get(ACTIVE_CHOSEN):
        active, _ = saved_model(registry.models_dir() / DEFAULT_MODEL_NAME)
        # A default that fails to load counts as none chosen: the sidebar stops
        # describing it from its meta.json, and this session does not retry every run.
        set_active(active, chosen=active is None)
    return active
