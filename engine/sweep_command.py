"""`python -m engine sweep`: the checks, then trials in this process or in worker
processes sharing the storage; a progress line per finished trial on stderr and, with
--json, the whole study as one JSON object on stdout. The sweep itself is `engine.sweep`.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from engine import sweep
from engine.commands import _print_json, _stop_on_interrupt, load_mnist_saying_what_was_refused
from engine.usage import UsageError, sweep_arguments

ROOT = Path(__file__).resolve().parent.parent


def run(args: argparse.Namespace) -> int:
    spec = sweep_arguments(args)
    study_name = args.study or sweep.DEFAULT_STUDY
    try:
        study = sweep.open_study(args.storage, study_name, spec)
    except sweep.StudyMismatch as error:
        raise UsageError(str(error)) from None
    spec = sweep.study_spec(study, trials=args.trials)
    if args.trials == 0:
        status = 0
    elif args.workers > 1:
        status = _supervise(args, study_name, study)
    else:
        status = _run_here(study, spec, args.worker)
    if args.worker is None and args.json:
        _print_json(sweep.summarise(study))
    return status


class ProgressLines:
    """One line per finished trial: its state, validation accuracy, the best so far, its
    parameters and time, and why it was pruned, stopped or failed."""

    def __init__(self, total: int, prefix: str = "", stream: TextIO | None = None) -> None:
        self.total, self.prefix, self.done = total, prefix, 0
        self.stream = stream if stream is not None else sys.stderr
        self.best: tuple[float, int] | None = None

    def __call__(self, trial: dict[str, Any]) -> None:
        self.done += 1
        curve, value = trial["curve"], trial["value"]
        if value is not None and (self.best is None or value > self.best[0]):
            self.best = (value, trial["number"])
        if value is not None:
            score = f"val_acc {value:.4f}"
        elif curve:
            score = f"val_acc {curve[-1]:.4f} at epoch {len(curve)}"
        else:
            score = "no epoch finished"
        best = f"  best {self.best[0]:.4f} (trial {self.best[1]})" if self.best else ""
        params = " ".join(f"{name}={_shown(value)}" for name, value in trial["params"].items())
        seconds = f"  {trial['seconds']:.1f}s" if trial["seconds"] is not None else ""
        note = f"  ({trial['note']})" if trial["note"] and trial["state"] != "complete" \
            else ""
        self.stream.write(f"{self.prefix}trial {trial['number']} {trial['state']} "
                          f"[{self.done}/{self.total}]: {score}{best}  {params}{seconds}"
                          f"{note}\n")
        self.stream.flush()


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _run_here(study: Any, spec: sweep.SweepSpec, worker: int | None) -> int:
    data = load_mnist_saying_what_was_refused()
    prefix = f"worker {worker}: " if worker else ""
    stop = threading.Event()
    if worker is None:
        _stop_on_interrupt(stop, live_bar=False)
    if threading.current_thread() is threading.main_thread():
        # A machine or a scheduler taking a worker back sends SIGTERM: end the trial as
        # Ctrl-C would, so its parameters are queued again rather than left running. A
        # worker of --workers hears Ctrl-C from its parent, which has said so already.
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        if worker is not None:
            signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    outcome = sweep.run_trials(study, spec, data.train_images, data.train_labels, stop=stop,
                               on_trial=ProgressLines(spec.trials, prefix))
    if outcome.grid_complete and not outcome.stopped and outcome.finished < spec.trials:
        print(f"{prefix}the grid is complete: every point has been tried", file=sys.stderr)
    return 130 if outcome.stopped else 0


def _supervise(args: argparse.Namespace, study_name: str, study: Any) -> int:
    """Start the workers, each joining the study for its share of the trials; Ctrl-C
    stops them after their current batch, a second one kills them."""
    shares = [args.trials // args.workers + (index < args.trials % args.workers)
              for index in range(args.workers)]
    command = [sys.executable, "-m", "engine", "sweep", "--storage", args.storage,
               "--study", study_name]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    children: list[subprocess.Popen] = []
    stopping: list[bool] = []

    def stop_workers(signum: int, frame: Any) -> None:
        if stopping:
            raise KeyboardInterrupt
        stopping.append(True)
        print("stopping: each worker ends its trial after the current batch (Ctrl-C again "
              "to abort)", file=sys.stderr, flush=True)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    try:
        signal.signal(signal.SIGINT, stop_workers)
        signal.signal(signal.SIGTERM, stop_workers)
        for index, share in enumerate(shares, start=1):
            # A session of its own: the terminal's Ctrl-C reaches the workers once, through
            # this process, not twice (which would abort them).
            children.append(subprocess.Popen(
                [*command, "--trials", str(share), "--worker", str(index)], env=env,
                start_new_session=True))
        codes = [child.wait() for child in children]
    except KeyboardInterrupt:
        for child in children:
            child.kill()
            child.wait()
        sweep.fail_orphaned_trials(study)
        raise
    sweep.fail_orphaned_trials(study)
    if stopping:
        return 130
    for index, code in enumerate(codes, start=1):
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            print(f"error: worker {index} {how}; the trial it was running is marked failed "
                  "and queued again (on a database, once its heartbeat is overdue)",
                  file=sys.stderr)
    return 1 if any(codes) else 0
