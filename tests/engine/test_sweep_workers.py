"""Sweep workers as separate processes sharing one study: on a journal file, and on a
real PostgreSQL server this test starts for itself (skipped with the reason when
PostgreSQL is missing, required when DIGIT_LAB_REQUIRE_POSTGRES=1, as .ci/run sets).
Workers are `python -m engine sweep` processes joining the study, as people start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.config import TrainConfig
from engine.sweep import SweepSpec, open_study, parse_vary, summarise
from tests.engine.cli_run import REPO
from tests.support import postgres_server

# Slow: processes start, import and load MNIST several times per test (10-25 s each here).
# None of it depends on numeric kernels, so the forced-kernel runs (not slow) skip it;
# `make test` runs it.
pytestmark = pytest.mark.slow

# Three parameters, so TPE proposes a fresh learning rate for every trial. 1,200 images,
# 2 epochs: a trial takes a fraction of a second.
SPEC = SweepSpec("numpy", tuple(parse_vary(text) for text in (
    "learning_rate=1e-3:3e-2:log", "dropout=0:0.3", "batch_size=32|64")), trials=8,
    base=TrainConfig(hidden_sizes=(64,), epochs=2, train_size=1200))
# A trial whose worker stops saying it is alive is failed after two silent seconds.
HEARTBEAT = "1"


@pytest.fixture(scope="module")
def postgres_url():
    reason = postgres_server.missing_reason()
    if reason:
        if os.environ.get("DIGIT_LAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DIGIT_LAB_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    with postgres_server.running_server() as url:
        yield url


@pytest.fixture(params=["journal", "postgresql"])
def storage(request, tmp_path):
    """A fresh study's storage URL, on each kind of shared storage."""
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.log'}"
    return request.getfixturevalue("postgres_url")


def start_worker(storage: str, study: str, trials: int) -> subprocess.Popen:
    env = {**os.environ, "DIGIT_LAB_SWEEP_HEARTBEAT": HEARTBEAT}
    return subprocess.Popen([sys.executable, "-m", "engine", "sweep", "--storage", storage,
                             "--study", study, "--trials", str(trials)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(worker: subprocess.Popen) -> str:
    _, stderr = worker.communicate(timeout=240)
    assert worker.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    return stderr


def worker_pid(trial) -> int | None:
    worker = trial.user_attrs.get("worker")
    return int(worker.split(":")[1]) if worker else None


def trials_by_worker(study) -> dict[int, list[int]]:
    """Trial numbers per worker process id, from the worker each trial records."""
    by_pid: dict[int, list[int]] = {}
    for trial in study.get_trials(deepcopy=False):
        by_pid.setdefault(worker_pid(trial), []).append(trial.number)
    return by_pid


def test_two_workers_finish_n_plus_m_distinct_trials(storage, request):
    name = f"two-{request.node.callspec.id}"
    open_study(storage, name, SPEC)
    first, second = start_worker(storage, name, 3), start_worker(storage, name, 2)
    finish(first), finish(second)
    study = open_study(storage, name)
    trials = summarise(study)["trials"]
    assert [trial["number"] for trial in trials] == [0, 1, 2, 3, 4]
    assert {trial["state"] for trial in trials} <= {"complete", "pruned"}
    by_pid = trials_by_worker(study)
    assert sorted(len(numbers) for numbers in by_pid.values()) == [2, 3]
    assert set(by_pid) == {first.pid, second.pid}
    rates = [trial["params"]["learning_rate"] for trial in trials]
    assert len(set(rates)) == 5, "two workers proposed the same parameters"


def freeze_mid_trial(worker: subprocess.Popen, storage: str, name: str) -> int:
    """Once `worker` has finished a trial, stop it (SIGSTOP) while it trains another, past
    its first epoch; return that trial's number. Freezing first makes 'mid-trial' certain:
    the trial is checked to be still running once the process can no longer change it."""
    study = open_study(storage, name)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the worker ended before it could be caught mid-trial"
        mine = [trial for trial in study.get_trials(deepcopy=False)
                if worker_pid(trial) == worker.pid]
        training = [trial.number for trial in mine
                    if trial.state.name == "RUNNING" and trial.intermediate_values]
        if training and any(trial.state.name == "COMPLETE" for trial in mine):
            os.kill(worker.pid, signal.SIGSTOP)
            if study.trials[training[0]].state.name == "RUNNING":
                return training[0]
            os.kill(worker.pid, signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("never caught the worker mid-trial")


def test_a_worker_killed_mid_trial_leaves_that_trial_failed_and_the_others_intact(
        storage, request):
    """SIGKILL one of two workers during a trial. The other goes on; a worker started after
    the dead one's heartbeat is overdue (database) or its process is gone (journal) finds
    the trial, marks it failed and runs its parameters again. Nothing else is lost."""
    name = f"kill-{request.node.callspec.id}"
    # Three epochs: two windows per trial in which it is caught training.
    open_study(storage, name, SweepSpec(SPEC.engine, SPEC.params, SPEC.trials,
                                        SPEC.base.replace(epochs=3)))
    doomed, survivor = start_worker(storage, name, 6), start_worker(storage, name, 3)
    killed = freeze_mid_trial(doomed, storage, name)
    doomed.kill()
    doomed.communicate(timeout=30)
    finish(survivor)
    time.sleep(2 * int(HEARTBEAT) + 1)
    finish(start_worker(storage, name, 1))

    study = open_study(storage, name)
    trials = {trial["number"]: trial for trial in summarise(study)["trials"]}
    assert trials[killed]["state"] == "fail"
    retries = [trial for trial in study.get_trials(deepcopy=False)
               if trial.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")
    assert retries[0].params == study.trials[killed].params
    others = [trial for number, trial in trials.items() if number != killed]
    assert {trial["state"] for trial in others} <= {"complete", "pruned"}, others
    # The dead worker's finished trials, the survivor's 3, the killed one and the last 1.
    done_by_doomed = len(trials_by_worker(study)[doomed.pid]) - 1
    assert len(trials) == done_by_doomed + 3 + 1 + 1
    if storage.startswith("journal:"):
        assert f"process {doomed.pid}" in trials[killed]["note"]
    else:
        # Failed by Optuna's heartbeat, which works across machines, not by the check for
        # processes on this host that a journal file relies on.
        assert "process" not in trials[killed]["note"]
