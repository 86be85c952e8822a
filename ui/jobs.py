"""A visitor's training run in a worker thread, so it survives clicks and page switches.

The thread never calls Streamlit: it trains through the engine's callbacks and writes
what it learns into a `TrainingJob` under a lock; pages read `snapshot()` from a fragment
that reruns every second. A process-wide semaphore bounds how many runs train at once.

A run whose pages are gone is stopped to free its slot: every page that shows it beats its
heartbeat (`touch`), and between batches the run checks it has had one lately or that a
session that showed it is still connected (a hidden tab's timers may be slowed to once a
minute, its connection is not).
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from engine import build_model
from engine.adapt import EPOCHS, LEARNING_RATE_FACTOR, AdaptResult, Adaptation, finetune_config
from engine.metrics import test_report
from engine.config import TrainConfig
from engine.lr_finder import LearningRateSweep, find_learning_rate
from engine.training import BatchProgress, Classifier, History, split_training_data
from ui.limits import host_limits

_slots_lock = threading.Lock()
_slots: threading.BoundedSemaphore | None = None
_running: dict[int, Any] = {}     # id -> the TrainingJob or CompareJob holding a slot
# How long a start waits for the runs it found abandoned to give their slots back: a
# stopped run ends after its current batch.
REAP_WAIT_SECONDS = 10.0
_SESSIONS_REMEMBERED = 8


def _run_slots() -> threading.BoundedSemaphore:
    """The process-wide limit, sized from the host limits when first needed."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(host_limits().max_concurrent_runs)
        return _slots


def _acquire_slot(thread: threading.Thread | None) -> threading.BoundedSemaphore | None:
    """A run slot, or None when the job already has a thread or every slot is taken even
    after stopping the abandoned runs. The caller releases the very semaphore it got, even
    if the limit is re-created later."""
    if thread is not None:
        return None
    slots = _run_slots()
    if slots.acquire(blocking=False):
        return slots
    # A full server may be full of runs nobody watches any more: a visitor waiting for a
    # slot should not wait for their own batch-time checks.
    if reap_abandoned() and slots.acquire(timeout=REAP_WAIT_SECONDS):
        return slots
    return None


def reap_abandoned() -> int:
    """Stop every run no page has shown lately; how many were stopped."""
    abandoned = [job for job in list(_running.values()) if job.abandoned()]
    for job in abandoned:
        job.stop(abandoned=True)
    return len(abandoned)


def session_connected(session_id: str) -> bool:
    """Whether a browser tab is still connected to this Streamlit session; False outside a
    real server (AppTest's stand-in runtime answers with mocks, which do not count)."""
    try:
        from streamlit.runtime import Runtime

        return Runtime.exists() and Runtime.instance().is_active_session(session_id) is True
    except Exception:       # no runtime, or one shutting down: nobody is connected
        return False


def running_count() -> int:
    """Training runs in progress in this server process, across all sessions."""
    return len(_running)


class Heartbeat:
    """When a page last showed a run, and which sessions showed it."""

    def __init__(self) -> None:
        self._last_seen = time.monotonic()
        self._sessions: list[str] = []

    def touch(self, session_id: str | None = None) -> None:
        """A page shows the run now: pages call this on every (fragment) run."""
        self._last_seen = time.monotonic()
        if session_id and session_id not in self._sessions:
            self._sessions = [*self._sessions, session_id][-_SESSIONS_REMEMBERED:]

    def abandoned(self) -> bool:
        """No page showed the run for the host's limit, and no session that showed it is
        still connected."""
        if time.monotonic() - self._last_seen <= host_limits().abandoned_seconds:
            return False
        return not any(session_connected(session) for session in self._sessions)


class WorkerThread:
    """A job's worker thread, started holding one of the server's run slots."""

    _thread: threading.Thread | None = None
    _slot: threading.BoundedSemaphore | None = None

    def _launch(self, name: str, prepare: Any = None) -> bool:
        """Start `self._run` in a thread once a slot is free; False when the job has
        started already or every slot is taken. `prepare` runs just before the thread."""
        slot = _acquire_slot(self._thread)
        if slot is None:
            return False
        self._slot = slot
        if prepare is not None:
            prepare()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return True

    @property
    def running(self) -> bool:
        """Its thread is still working (or about to end)."""
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass
class JobSnapshot:
    """A consistent copy of a job's state for drawing."""

    status: str                     # queued | running | completed | stopped | diverged | failed
    engine: str
    config: TrainConfig
    history: History
    progress: BatchProgress | None
    message: str
    elapsed_seconds: float
    seconds_left: float | None
    test_metrics: dict[str, Any] | None = field(default=None)

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "stopped", "diverged", "failed")

    @property
    def fraction_done(self) -> float:
        if self.status == "completed":
            return 1.0
        if self.progress is None:
            return 0.0
        done = _epochs_done(self.progress) if self.status == "running" \
            else self.history.epochs_done
        return min(1.0, done / self.config.epochs)


def _epochs_done(progress: BatchProgress) -> float:
    # From the batch report alone: the engine appends an epoch's record to the history
    # outside our lock, so counting records could briefly run ahead of the batch.
    return progress.epoch - 1 + progress.batch / progress.batches_per_epoch


class TrainingJob(Heartbeat, WorkerThread):
    """One run of `config` on `engine`, trained on `data` (an MnistData) in a thread."""

    def __init__(self, engine: str, config: TrainConfig, data: Any) -> None:
        super().__init__()
        self.engine, self.config, self._data = engine, config, data
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._status = "queued"
        self._message = ""
        self._progress: BatchProgress | None = None
        self._model: Classifier | None = None
        self._test_metrics: dict[str, Any] | None = None
        self._started = self._finished = 0.0
        self._abandoned = False

    # -- control, from the session ---------------------------------------------

    def start(self) -> bool:
        """Start training; False when this job has already started or the server already
        runs its limit of runs."""
        return self._launch("digit-lab-training", self._mark_started)

    def _mark_started(self) -> None:
        self._started = time.monotonic()
        self._status = "running"

    def stop(self, *, abandoned: bool = False) -> None:
        self._abandoned = self._abandoned or abandoned
        self._stop.set()

    @property
    def model(self) -> Classifier | None:
        """The trained model once the run has ended with at least one batch kept."""
        with self._lock:
            finished = self._status in ("completed", "stopped", "diverged")
            if finished and self._model is not None and self._model.history.epochs:
                return self._model
            return None

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            history = (History.from_dict(self._model.history.to_dict())
                       if self._model is not None else History())
            progress, status = self._progress, self._status
            end = self._finished if status not in ("queued", "running") else time.monotonic()
            elapsed = end - self._started if self._started else 0.0
            metrics = copy.deepcopy(self._test_metrics)
            message = self._message
        return JobSnapshot(status, self.engine, self.config, history, progress, message,
                           elapsed, self._seconds_left(history, progress, elapsed, status),
                           metrics)

    def _seconds_left(self, history: History, progress: BatchProgress | None,
                      elapsed: float, status: str) -> float | None:
        if status != "running" or progress is None:
            return None
        done = _epochs_done(progress)
        return elapsed / done * (self.config.epochs - done) if done > 0 else None

    # -- the worker thread (no Streamlit calls here) -------------------------------

    def _run(self) -> None:
        _running[id(self)] = self
        try:
            self._train()
        except Exception as error:  # a worker must never die silently
            with self._lock:
                self._status = "failed"
                self._message = f"training failed: {error}"
        finally:
            with self._lock:
                self._finished = time.monotonic()
                if self._abandoned and self._status == "stopped":
                    # Whoever comes back to it learns why it stopped on its own.
                    self._message = (f"no open page showed this run for "
                                     f"{host_limits().abandoned_seconds} s, so it stopped "
                                     f"to free its place for other visitors; "
                                     f"{self._message}")
            _running.pop(id(self), None)
            self._slot.release()

    def _train(self) -> None:
        data = self._data
        train_images, train_labels, val_images, val_labels = split_training_data(
            data.train_images, data.train_labels, self.config)
        model = build_model(self.engine, self.config)
        with self._lock:
            self._model = model
        validation = (val_images, val_labels) if len(val_labels) else None
        model.fit(train_images, train_labels, validation=validation,
                  on_batch=self._on_batch, stop=self._stop)
        test_metrics = None
        if model.history.epochs:
            test_metrics = test_report(data.test_labels, model.predict_proba(data.test_images))
        with self._lock:
            self._test_metrics = test_metrics
            self._status = model.history.status if model.history.epochs else "stopped"
            self._message = model.history.message or (
                "stopped before the first batch finished; nothing was trained"
                if not model.history.epochs else "")

    def _on_batch(self, progress: BatchProgress) -> None:
        with self._lock:
            self._progress = progress
        if not self._stop.is_set() and self.abandoned():
            self.stop(abandoned=True)   # the visitor left: free the slot for someone else


class AdaptJob(TrainingJob):
    """A copy of `base` fine-tuned on custom digits mixed with MNIST (engine.adapt), with
    TrainingJob's thread, run slot, stop, idle stop and snapshots; `base` is only read."""

    def __init__(self, base: Classifier, custom: Any, data: Any, *, base_name: str = "",
                 epochs: int = EPOCHS, learning_rate_factor: float = LEARNING_RATE_FACTOR,
                 seed: int = 0) -> None:
        config = finetune_config(base.config, epochs=epochs,
                                 learning_rate_factor=learning_rate_factor, seed=seed)
        super().__init__(base.engine_name, config, data)
        self.base, self.base_name, self._custom = base, base_name, custom
        self._options = {"epochs": epochs, "learning_rate_factor": learning_rate_factor,
                         "seed": seed}
        self._result: AdaptResult | None = None

    @property
    def result(self) -> AdaptResult | None:
        """The adapted copy and its report, once the run kept at least one batch."""
        model = self.model
        with self._lock:
            return self._result if model is not None else None

    def _train(self) -> None:
        try:
            adaptation = Adaptation(self.base, self._custom, self._data, **self._options)
        except ValueError as error:     # e.g. digits deleted since the button was drawn
            with self._lock:
                self._status, self._message = "failed", str(error)
            return
        with self._lock:
            self._model = adaptation.model
        result = adaptation.run(on_batch=self._on_batch, stop=self._stop)
        result.report["base_model"] = self.base_name
        history = result.model.history
        with self._lock:
            self._result, self._test_metrics = result, result.test_metrics
            self._status = history.status if history.epochs else "stopped"
            self._message = history.message


class LearningRateJob(TrainingJob):
    """The learning-rate finder (engine.lr_finder) on a fresh network of `config`, with
    TrainingJob's thread, run slot, stop, idle stop and snapshots; its batches are
    reported as one epoch, so progress and time left count the sweep."""

    def __init__(self, engine: str, config: TrainConfig, data: Any) -> None:
        super().__init__(engine, config.replace(epochs=1), data)
        self.swept_config = config
        self._result: LearningRateSweep | None = None

    @property
    def result(self) -> LearningRateSweep | None:
        with self._lock:
            return self._result

    def _train(self) -> None:
        images, labels, _, _ = split_training_data(self._data.train_images,
                                                   self._data.train_labels, self.config)
        result = find_learning_rate(build_model(self.engine, self.config), images, labels,
                                    on_batch=self._on_batch, stop=self._stop)
        with self._lock:
            self._result = result
            self._status = "completed" if result.complete else "stopped"
            self._message = "" if result.complete else \
                f"stopped after {len(result.losses)} of {result.batches_planned} batches"


class CompareJob(WorkerThread):
    """The same config trained by both engines, one after the other in one worker thread,
    so neither slows the other down and their seconds per epoch compare fairly."""

    ENGINES = ("numpy", "keras")

    def __init__(self, config: TrainConfig, data: Any) -> None:
        self.config = config
        self.jobs = {engine: TrainingJob(engine, config, data) for engine in self.ENGINES}
        self._stop = threading.Event()
        for job in self.jobs.values():
            job._stop = self._stop      # one Stop button stops whichever engine is training

    def start(self) -> bool:
        """Train both engines; False as for TrainingJob.start."""
        return self._launch("digit-lab-compare")

    def _run(self) -> None:
        _running[id(self)] = self
        try:
            for job in self.jobs.values():
                if self._stop.is_set():
                    break
                job._started = time.monotonic()
                job._status = "running"
                try:
                    job._train()
                except Exception as error:
                    with job._lock:
                        job._status, job._message = "failed", f"training failed: {error}"
                finally:
                    job._finished = time.monotonic()
        finally:
            for job in self.jobs.values():
                if job._status == "queued":
                    job._status, job._message = "stopped", "not started: the run was stopped"
            _running.pop(id(self), None)
            self._slot.release()

    def stop(self, *, abandoned: bool = False) -> None:
        for job in self.jobs.values():
            job._abandoned = job._abandoned or abandoned
        self._stop.set()

    def touch(self, session_id: str | None = None) -> None:
        for job in self.jobs.values():
            job.touch(session_id)

    def abandoned(self) -> bool:
        return all(job.abandoned() for job in self.jobs.values())

    @property
    def finished(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()


class SweepJob(Heartbeat, WorkerThread):
    """A visitor's sweep: trials of an Optuna study (in this process's memory) run one
    after another in a worker thread holding one run slot, so a sweep counts as one run
    against the host's limit, and Stop ends it after the current batch."""

    def __init__(self, spec: Any, data: Any, *, study_name: str) -> None:
        super().__init__()
        self.spec, self.study_name, self._data = spec, study_name, data
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._trials: list[dict[str, Any]] = []         # finished trials' summaries
        self._live: dict[int, list[float]] = {}        # running trial -> its curve so far
        self._status, self._message = "queued", ""
        self._started = self._finished = 0.0
        self.study: Any = None

    def start(self) -> bool:
        return self._launch("digit-lab-sweep", self._mark_started)

    def _mark_started(self) -> None:
        self._started, self._status = time.monotonic(), "running"

    def stop(self, *, abandoned: bool = False) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, Any]:
        """Status, message, finished trials, the running trial's curve, seconds."""
        with self._lock:
            end = self._finished or time.monotonic()
            return {"status": self._status, "message": self._message,
                    "trials": list(self._trials),
                    "live": {number: list(curve) for number, curve in self._live.items()},
                    "seconds": end - self._started if self._started else 0.0,
                    "finished": self._status in ("completed", "stopped", "failed")}

    def _run(self) -> None:
        from engine import sweep

        _running[id(self)] = self
        try:
            self.study = sweep.open_study(None, self.study_name, self.spec)
            outcome = sweep.run_trials(self.study, self.spec, self._data.train_images,
                                       self._data.train_labels, stop=self._stop,
                                       on_trial=self._on_trial, on_epoch=self._on_epoch)
            with self._lock:
                self._status = "stopped" if outcome.stopped else "completed"
        except Exception as error:  # a worker must never die silently
            with self._lock:
                self._status, self._message = "failed", f"the sweep failed: {error}"
        finally:
            with self._lock:
                self._finished = time.monotonic()
            _running.pop(id(self), None)
            self._slot.release()

    def _on_trial(self, summary: dict[str, Any]) -> None:
        with self._lock:
            self._trials.append(summary)
            self._live.pop(summary["number"], None)
        if not self._stop.is_set() and self.abandoned():
            self.stop(abandoned=True)

    def _on_epoch(self, number: int, record: Any) -> None:
        with self._lock:
            self._live.setdefault(number, []).append(record.val_accuracy)
