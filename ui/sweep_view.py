"""Parts of the Sweep page: the sweep's form (its problems under the widgets they concern),
the live trials, the results, and what to do with the best trial."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine import registry
from engine.config import TrainConfig
from engine.sweep_spec import SAMPLERS, SWEEPABLE, SweepSpec, parse_vary
from ui import figures, state, visitors
from ui.jobs import SweepJob, TrainingJob
from ui.limits import busy_message
from ui.state import ENGINE_NAMES

SWEEP_JOB, BEST_JOB = state.SWEEP_JOB, state.SWEEP_BEST_JOB
_FINISHED_DRAWN = "sweep_finished_drawn"    # the job whose end the page has redrawn
# A first sweep people understand: how the learning rate and the width change accuracy.
DEFAULT_VARY = {"learning_rate": "learning_rate=1e-4:1e-1:log",
                "hidden_sizes": "hidden_sizes=64|128|256,128"}
EXAMPLES = {"learning_rate": "1e-4:1e-1:log", "hidden_sizes": "64|128|256,128",
            "batch_size": "32|64|128|256", "dropout": "0:0.5", "optimizer": "adam|sgd|momentum",
            "activation": "relu|tanh|sigmoid|leaky_relu", "l2": "1e-6:1e-2:log",
            "momentum": "0.5:0.99", "augmentation": "none|light|strong"}
TOP = 10


def form(engine_default: str) -> SweepSpec | None:
    """The sweep's widgets; the spec when it can run, else None, with each problem shown
    under the widget it concerns."""
    problems: dict[str, list[str]] = {}
    top = st.columns([1, 2])
    engine = top[0].radio("Engine", list(ENGINE_NAMES), format_func=ENGINE_NAMES.get,
                          horizontal=True, key="s_engine",
                          index=list(ENGINE_NAMES).index(engine_default))
    names = top[1].multiselect("Parameters to vary", list(SWEEPABLE),
                               default=list(DEFAULT_VARY), key="s_names",
                               help="Ranges are checked against the ones the sidebar uses.")
    params, slots = [], {}
    for name in names:
        text = st.text_input(f"{name}: values to try", value=DEFAULT_VARY.get(name, f"{name}="
                                                                   f"{EXAMPLES.get(name, '')}"),
                             key=f"s_vary_{name}",
                             help="LOW:HIGH (add :log for a log scale) or A|B|C; the same "
                                  "as the command line's --vary")
        slots[name] = st.empty()
        try:
            params.append(parse_vary(text if "=" in text else f"{name}={text}"))
        except ValueError as error:
            problems.setdefault(name, []).append(str(error))
    settings = st.columns(5)
    trials = settings[0].number_input("Trials", 1, 500, 12, key="s_trials")
    sampler = settings[1].selectbox("Sampler", SAMPLERS, key="s_sampler",
                                    help="auto: a grid for up to two parameters, TPE beyond")
    train_size = settings[2].number_input("Training images", 600, 60_000, 10_000, step=1000,
                                          key="s_train_size")
    epochs = settings[3].number_input("Epochs per trial", 1, 30, 3, key="s_epochs")
    pruning = settings[4].toggle("Prune", value=True, key="s_pruning",
                                 help="Stop a trial early when its validation accuracy is "
                                      "below the median of earlier trials at that epoch")
    spec = None
    if not problems:
        base = TrainConfig(epochs=int(epochs), train_size=int(train_size),
                           validation_fraction=0.1)
        spec = SweepSpec(engine=engine, params=tuple(params), trials=int(trials),
                         base=base, sampler=sampler, pruning=pruning)
        for problem in spec.problems():
            problems.setdefault(problem.about, []).append(problem.message)
    for about, messages in problems.items():
        for message in messages:
            (slots.get(about) or st).error(message, icon=":material/error:")
    return None if problems else spec


def start(spec: SweepSpec, data: Any) -> str | None:
    stamp = dt.datetime.now().strftime("%H%M%S")
    job = SweepJob(spec, data, study_name=f"sweep-{stamp}")
    if not job.start():
        return busy_message()
    st.session_state[SWEEP_JOB] = job
    visitors.keep(SWEEP_JOB, job)
    return None


def trials_table(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """Trials best first (complete ones by value), then the rest by number."""
    rows = [{"trial": trial["number"], "state": trial["state"],
             "validation accuracy": trial["value"],
             "last epoch": trial["curve"][-1] if trial["curve"] else None,
             **{name: _shown(value) for name, value in trial["params"].items()},
             "seconds": trial["seconds"], "note": trial["note"]} for trial in trials]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["validation accuracy", "trial"], ascending=[False, True],
                             na_position="last").reset_index(drop=True)


def _shown(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def curves_figure(trials: list[dict[str, Any]], live: dict[int, list[float]]) -> go.Figure:
    """Every trial's validation accuracy per epoch; pruned ones dotted, the best thick."""
    figure = go.Figure()
    complete = [trial for trial in trials if trial["value"] is not None]
    best = max(complete, key=lambda trial: trial["value"])["number"] if complete else None
    for trial in trials:
        if not trial["curve"]:
            continue
        figure.add_scatter(
            x=list(range(1, len(trial["curve"]) + 1)), y=trial["curve"], mode="lines+markers",
            name=f"trial {trial['number']}",
            line=dict(width=4 if trial["number"] == best else 1.5,
                      dash="dot" if trial["state"] == "pruned" else "solid"))
    for number, curve in live.items():
        figure.add_scatter(x=list(range(1, len(curve) + 1)), y=curve, mode="lines+markers",
                           name=f"trial {number} (running)", line=dict(dash="dash"))
    figure.update_xaxes(title_text="epoch", dtick=1)
    figure.update_yaxes(title_text="validation accuracy", tickformat=".1%")
    return figures.layout(figure, height=380, title="Validation accuracy of every trial")


def parameter_figures(trials: list[dict[str, Any]], names: list[str]) -> list[go.Figure]:
    """Accuracy against each varied parameter (complete trials), one figure each."""
    complete = [trial for trial in trials if trial["value"] is not None]
    shown = []
    for name in names:
        values = [_shown(trial["params"].get(name)) for trial in complete]
        figure = go.Figure(go.Scatter(
            x=values, y=[trial["value"] for trial in complete], mode="markers",
            marker=dict(size=10, color="#4f8bf9"),
            customdata=[trial["number"] for trial in complete],
            hovertemplate="trial %{customdata}: %{y:.2%}<extra></extra>"))
        numeric = all(isinstance(value, (int, float)) for value in values)
        if numeric and name in ("learning_rate", "l2"):
            figure.update_xaxes(type="log")
        elif not numeric:
            figure.update_xaxes(type="category")
        figure.update_xaxes(title_text=name)
        figure.update_yaxes(title_text="validation accuracy", tickformat=".1%")
        shown.append(figures.layout(figure, height=300, title=f"Accuracy against {name}"))
    return shown


def optuna_figures(study: Any) -> list[tuple[str, go.Figure]]:
    """Optuna's own parallel coordinates and parameter importances, where they apply."""
    import optuna

    complete = [trial for trial in study.get_trials(deepcopy=False)
                if trial.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return []
    drawn = [("Parallel coordinates",
              optuna.visualization.plot_parallel_coordinate(study))]
    distinct = {name for name in study.best_params
                if len({repr(trial.params.get(name)) for trial in complete}) > 1}
    if len(complete) >= 3 and len(distinct) >= 2:    # one parameter is all the importance
        try:
            drawn.append(("Parameter importance",
                          optuna.visualization.plot_param_importances(study)))
        except (RuntimeError, ValueError):   # e.g. every trial scored the same
            pass
    for _, figure in drawn:
        figure.update_layout(template="plotly_dark", height=420,
                             paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                             margin=dict(l=40, r=40, t=70, b=20))
    return drawn


def use_best(config: TrainConfig, engine: str) -> None:
    """The best trial's config goes into the sidebar (a partial set: its fields)."""
    settings = state.settings()
    settings.update({"engine": engine, **config.to_dict()})


class BestRunJob(TrainingJob):
    """The best trial's config trained on all the training images, then saved to the
    registry with the sweep recorded in its meta.json."""

    def __init__(self, engine: str, config: TrainConfig, data: Any, *, name: str,
                 sweep_record: dict[str, Any], owner: str | None) -> None:
        super().__init__(engine, config, data)
        self.name, self.sweep_record, self.owner = name, sweep_record, owner
        self.saved_path: Any = None

    def _train(self) -> None:
        super()._train()
        model = self._model
        if model is None or not model.history.epochs:
            return
        path = registry.save(model, self.name, metrics=dict(self._test_metrics or {}),
                             owner=self.owner, extra={"sweep": self.sweep_record},
                             command=f"dashboard Sweep page: the best trial of study "
                                     f"{self.sweep_record['study']}, on every training image")
        with self._lock:
            self.saved_path = path


def best_run_config(config: TrainConfig) -> TrainConfig:
    """The best trial's settings on every training image (no validation rows held out),
    with the sweep's epochs."""
    return config.replace(train_size=60_000, validation_fraction=0.0)


def sweep_record(job: SweepJob, snapshot: dict[str, Any]) -> dict[str, Any]:
    complete = [trial for trial in snapshot["trials"] if trial["value"] is not None]
    best = max(complete, key=lambda trial: trial["value"])
    return {"study": job.study_name, "storage": "in memory (the dashboard's process)",
            "spec": job.spec.to_dict(), "trials": len(snapshot["trials"]),
            "complete": len(complete), "best_trial": best["number"],
            "best_params": best["params"], "best_validation_accuracy": best["value"]}


# ---- live and finished ------------------------------------------------------------

@st.fragment(run_every=1.0)
def live_results() -> None:
    """The trials table and curves, redrawn every second while the sweep runs; once it
    ends, one full rerun draws the finished results and buttons."""
    job = st.session_state.get(SWEEP_JOB)
    if job is None:
        return
    visitors.watch(job)
    snapshot = job.snapshot()
    if snapshot["finished"]:
        if st.session_state.get(_FINISHED_DRAWN) is not job:
            st.session_state[_FINISHED_DRAWN] = job
            st.rerun()
    else:
        done, total = len(snapshot["trials"]), job.spec.trials
        st.progress(min(1.0, done / total), text=f"Trial {min(done + 1, total)} of {total} "
                                                 f"· {snapshot['seconds']:.0f} s")
    if snapshot["status"] == "failed":
        st.error(snapshot["message"], icon=":material/error:")
    elif snapshot["status"] == "stopped":
        stopped = [trial for trial in snapshot["trials"] if trial["state"] == "fail"]
        cut = f" Trial {stopped[-1]['number']} was cut short and is marked failed." \
            if stopped else ""
        st.warning(f"Stopped: {len(snapshot['trials']) - len(stopped)} trials finished.{cut} "
                   "The trials not yet started were not run.", icon=":material/stop_circle:")
    table = trials_table(snapshot["trials"])
    if not table.empty:
        st.dataframe(table.head(TOP), hide_index=True, width="stretch", column_config={
            "validation accuracy": st.column_config.NumberColumn(format="%.4f"),
            "last epoch": st.column_config.NumberColumn(format="%.4f"),
            "seconds": st.column_config.NumberColumn(format="%.1f")})
    if snapshot["trials"] or snapshot["live"]:
        st.plotly_chart(curves_figure(snapshot["trials"], snapshot["live"]),
                        key="s_curves", width="stretch")


def finished_results(job: SweepJob, data: Any) -> None:
    """Accuracy against each parameter, Optuna's figures, and the best trial's buttons."""
    snapshot = job.snapshot()
    names = [param.name for param in job.spec.params]
    charts = parameter_figures(snapshot["trials"], names)
    for column, chart in zip(st.columns(max(1, len(charts))), charts):
        column.plotly_chart(chart, width="stretch")
    if job.study is not None:
        for title, chart in optuna_figures(job.study):
            st.markdown(f"**{title}**")
            st.plotly_chart(chart, width="stretch")
    if not any(trial["value"] is not None for trial in snapshot["trials"]):
        return
    from engine.sweep import best_config

    best = best_config(job.study, job.spec)
    record = sweep_record(job, snapshot)
    st.subheader("The best trial")
    st.markdown(f"Trial **{record['best_trial']}**: "
                f"{record['best_validation_accuracy']:.2%} validation accuracy with "
                + ", ".join(f"`{name}={_shown(value)}`"
                            for name, value in record["best_params"].items()))
    use, train = st.columns(2)
    if use.button("Use best settings", icon=":material/input:",
                  help="Puts the best trial's settings in the sidebar"):
        use_best(best, job.spec.engine)
        st.toast("The sidebar holds the best trial's settings.", icon=":material/check:")
        st.rerun()
    best_job = st.session_state.get(BEST_JOB)
    if train.button("Train and save best", icon=":material/save:",
                    disabled=best_job is not None and best_job.running,
                    help="Trains the best settings on all 60,000 training images and saves "
                         "the model with this sweep in its meta.json"):
        reason = start_best(job, record, best, data)
        if reason:
            st.warning(reason, icon=":material/hourglass_top:")
        else:
            st.rerun()
    best_progress()


def start_best(job: SweepJob, record: dict[str, Any], best: TrainConfig,
               data: Any) -> str | None:
    name = registry.safe_name(f"{job.study_name}-best")
    best_job = BestRunJob(job.spec.engine, best_run_config(best), data, name=name,
                          sweep_record=record,
                          owner=visitors.owner_id(visitors.token()))
    if not best_job.start():
        return busy_message()
    st.session_state[BEST_JOB] = best_job
    visitors.keep(BEST_JOB, best_job)
    return None


@st.fragment(run_every=1.0)
def best_progress() -> None:
    best_job = st.session_state.get(BEST_JOB)
    if best_job is None:
        return
    visitors.watch(best_job)
    snapshot = best_job.snapshot()
    if not snapshot.finished:
        from ui.train_view import progress_text

        st.progress(snapshot.fraction_done, text=progress_text(snapshot))
        return
    if best_job.saved_path is not None:
        accuracy = (snapshot.test_metrics or {}).get("test_accuracy")
        shown = f" ({accuracy:.2%} on MNIST test)" if accuracy is not None else ""
        st.success(f"Saved as **{best_job.saved_path.name}**{shown}, with this sweep in its "
                   "meta.json. Make it active on Models.", icon=":material/check:")
    else:
        st.error(f"Not saved: {snapshot.message or snapshot.status}",
                 icon=":material/error:")
