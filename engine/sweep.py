"""Sweeps: many training configs under one Optuna study, in this process or in workers on
many machines sharing a storage. The objective is validation accuracy, never test
accuracy: `run_trials` is handed the training images only and scores each trial on the
validation rows the base config's seed holds out of them.

The API a page or the command line drives (from any thread):

    param = parse_vary("learning_rate=1e-4:1e-1:log")      # ValueError in one line
    spec = SweepSpec(engine="numpy", params=(param, ...), trials=24,
                     base=TrainConfig(epochs=3, train_size=10_000),
                     sampler="auto", pruning=True)          # auto: grid for <= 2 params
    spec.problems()                  # [Problem(about, message)]: empty when it can run
    study = open_study(storage_url, study_name, spec)       # None: in memory
                                     # "journal:PATH" or any SQLAlchemy URL; spec=None
                                     # joins a stored study with its own settings;
                                     # StorageUnavailable (no password in it), StudyMismatch
    spec = study_spec(study, trials=...)                    # the settings the study holds
    outcome = run_trials(study, spec, train_images, train_labels, n_trials=None,
                         stop=threading.Event(), on_trial=lambda summary: ...,
                         on_epoch=lambda trial_number, epoch_record: ...)
    summarise(study)  # {"study", "trials": [{"number", "state", "params", "value",
                      #   "curve" (validation accuracy per epoch), "seconds", "note"}],
                      #  "best_params", "best_value"}
    best_config(study, spec)         # the best trial's TrainConfig

A stop ends the running trial after its current batch as failed, with a note, and queues
its parameters again, so a resumed study (`open_study` on the same storage and name, then
`run_trials`) tries them first and no grid point is lost. A worker that dies mid-trial
leaves that trial failed and queued again the same way (engine/sweep_storage.py: Optuna's
heartbeat on a database, a check for dead processes on a journal file).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from engine import build_model
from engine.sweep_spec import (Problem, SearchParam, SweepSpec, config_values,  # noqa: F401
                               parse_vary)
from engine.sweep_storage import (StorageUnavailable, describe_storage,  # noqa: F401
                                  fail_orphaned_trials, open_storage, retry_callback,
                                  this_worker)
from engine.training import EpochRecord, split_training_data

# Optuna's per-trial lines would duplicate the sweep's own progress on stderr, and its
# warning for a failed trial carries a traceback; the trial's note says why instead.
optuna.logging.set_verbosity(optuna.logging.ERROR)

SPEC_ATTR = "digit_lab_sweep"       # the study's user attribute holding its SweepSpec
DEFAULT_STUDY = "sweep"


class StudyMismatch(ValueError):
    """The study exists with other settings, or does not exist where it was expected."""


class SweepStopped(Exception):
    """Raised inside a trial when the stop flag ends it."""


@dataclass(frozen=True)
class RunOutcome:
    finished: int           # trials this call finished: complete, pruned or failed
    stopped: bool           # the stop flag ended the run
    grid_complete: bool     # the grid sampler had no point left to try


# ---- the study ------------------------------------------------------------------

def open_study(storage_url: str | None, study_name: str = DEFAULT_STUDY,
               spec: SweepSpec | None = None) -> optuna.Study:
    """The study `study_name` in the storage, created from `spec` if it is not there. With
    `spec=None` the study must exist and its stored settings are used (a worker joining
    from another machine). StudyMismatch when the stored settings differ from `spec`."""
    shown = describe_storage(storage_url)
    storage = open_storage(storage_url)
    in_memory = storage is None
    if in_memory:
        storage = optuna.storages.InMemoryStorage()
    stored = None if in_memory else _stored_spec(storage, study_name)
    if stored is None and spec is None:
        raise StudyMismatch(f"no study {study_name!r} in {shown}; give the parameters to "
                            "vary to create it")
    if stored is not None and spec is not None:
        _check_same(stored, spec, study_name, shown)
    if stored is None:
        grid = spec.grid() if spec.resolved_sampler == "grid" else None
        stored = {**spec.to_dict(), "grid": grid}
        optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                            load_if_exists=True).set_user_attr(SPEC_ATTR, stored)
    held = SweepSpec.from_dict(stored)
    # Workers sharing a storage each need their own random stream: with one seed they would
    # all propose the same parameters. In memory, the base config's seed makes it repeatable.
    seed = held.base.seed if in_memory else None
    if stored["grid"] is not None:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(stored["grid"],
                                                                           seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=not in_memory)
    pruner = optuna.pruners.MedianPruner() if held.pruning else optuna.pruners.NopPruner()
    return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler,
                             pruner=pruner)


def _stored_spec(storage: Any, study_name: str) -> dict[str, Any] | None:
    if storage is None:
        return None
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return None
    return study.user_attrs.get(SPEC_ATTR)


def _check_same(stored: dict[str, Any], spec: SweepSpec, study_name: str,
                shown: str) -> None:
    given = spec.to_dict()
    for key in ("engine", "vary", "base", "sampler", "pruning"):
        if stored[key] != given[key]:
            held = " ".join(stored[key]) if key == "vary" else stored[key]
            raise StudyMismatch(
                f"study {study_name!r} in {shown} was made with other settings ({key}: "
                f"{held}); leave the parameters out to join it as it is, or choose another "
                "study name")


def study_spec(study: optuna.Study, trials: int | None = None) -> SweepSpec:
    """The settings the study was made with (trials replaced if given)."""
    held = SweepSpec.from_dict(study.user_attrs[SPEC_ATTR])
    if trials is None:
        return held
    return SweepSpec(held.engine, held.params, trials, held.base, held.sampler, held.pruning)


# ---- running trials -------------------------------------------------------------

def run_trials(study: optuna.Study, spec: SweepSpec, train_images: np.ndarray,
               train_labels: np.ndarray, *, n_trials: int | None = None,
               stop: threading.Event | None = None,
               on_trial: Callable[[dict[str, Any]], None] | None = None,
               on_epoch: Callable[[int, EpochRecord], None] | None = None) -> RunOutcome:
    """Run up to `n_trials` (default: the spec's) more trials, or until `stop` is set or
    the grid is complete. `on_trial` gets each finished trial's summary (as `summarise`
    lists them), `on_epoch` each epoch's record as it ends."""
    stop = stop if stop is not None else threading.Event()
    fail_orphaned_trials(study)
    if stop.is_set() or _grid_complete(study):
        return RunOutcome(0, stop.is_set(), not stop.is_set())
    images, labels, val_images, val_labels = split_training_data(train_images, train_labels,
                                                                 spec.base)
    validation = (val_images, val_labels)
    finished: list[int] = []
    running: dict[str, optuna.Trial] = {}

    def objective(trial: optuna.Trial) -> float:
        running["trial"] = trial
        trial.set_user_attr("worker", this_worker())
        trial.set_user_attr("note", "")     # a retried trial starts with its original's
        config = spec.config_for({param.name: param.suggest(trial) for param in spec.params})
        model = build_model(spec.engine, config)
        record = None
        for _ in range(config.epochs):
            record = model.partial_fit(images, labels, validation=validation, stop=stop)
            if model.history.status == "stopped":
                trial.set_user_attr("note", f"stopped at epoch {record.epoch} of "
                                            f"{config.epochs}; its parameters are queued to "
                                            "run first when the study resumes")
                raise SweepStopped(model.history.message)
            trial.report(record.val_accuracy, record.epoch)
            if on_epoch is not None:
                on_epoch(trial.number, record)
            if model.history.status == "diverged":
                trial.set_user_attr("note", model.history.message)
                break
            if trial.should_prune():
                trial.set_user_attr("note", f"pruned after epoch {record.epoch} of "
                                            f"{config.epochs}: below the median of earlier "
                                            "trials at that epoch")
                raise optuna.TrialPruned()
        return record.val_accuracy

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        finished.append(trial.number)
        if on_trial is not None:
            on_trial(trial_summary(trial))
        if stop.is_set():
            study.stop()
        else:
            fail_orphaned_trials(study)

    try:
        study.optimize(objective, n_trials=n_trials or spec.trials, callbacks=[after_trial],
                       gc_after_trial=True)
    except SweepStopped:
        stopped = study._storage.get_trial(running["trial"]._trial_id)
        retry_callback(None)(study, stopped)     # a stop is not the config's fault: no limit
        finished.append(stopped.number)
        if on_trial is not None:
            on_trial(trial_summary(stopped))
    return RunOutcome(len(finished), stop.is_set(), _grid_complete(study))


def _grid_complete(study: optuna.Study) -> bool:
    sampler = study.sampler
    if not isinstance(sampler, optuna.samplers.GridSampler):
        return False
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return not waiting and sampler.is_exhausted(study)


# ---- results --------------------------------------------------------------------

def trial_summary(trial: FrozenTrial) -> dict[str, Any]:
    """One trial as plain data: number, state (complete, pruned, fail, running, waiting),
    params (as a config holds them, layer lists as lists), value (the last epoch's
    validation accuracy, complete trials only), curve (validation accuracy after each
    epoch, as reported to Optuna), seconds, note (why it was pruned, stopped, failed or
    retried)."""
    note = trial.user_attrs.get("note") or ""
    retry_of = trial.system_attrs.get("failed_trial")
    if retry_of is not None and trial.state != TrialState.WAITING and not note:
        note = f"a retry of trial {retry_of}"
    elif retry_of is not None and trial.state == TrialState.WAITING:
        note = f"queued to retry trial {retry_of}"
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() \
        if trial.datetime_complete and trial.datetime_start else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": _plain(config_values(trial.params)),
        "value": trial.value if trial.state == TrialState.COMPLETE else None,
        "curve": [trial.intermediate_values[step]
                  for step in sorted(trial.intermediate_values)],
        "seconds": None if seconds is None else round(seconds, 3),
        "note": note,
    }


def summarise(study: optuna.Study) -> dict[str, Any]:
    """The study as plain data (JSON-ready): name, every trial, the best one."""
    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = max(complete, key=lambda trial: trial.value) if complete else None
    return {
        "study": study.study_name,
        "trials": [trial_summary(trial) for trial in sorted(trials, key=lambda t: t.number)],
        "best_params": _plain(config_values(best.params)) if best else None,
        "best_value": best.value if best else None,
    }


def best_config(study: optuna.Study, spec: SweepSpec) -> Any:
    """The TrainConfig of the best complete trial; ValueError when none completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet")
    best = max(complete, key=lambda trial: trial.value)
    return spec.config_for(config_values(best.params))


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in values.items()}
