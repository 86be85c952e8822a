"""`python -m engine sweep` as people run it: a progress line per trial on stderr, one JSON
object with --json, bad input refused in one line before any trial (exit 2), a storage
that cannot be opened in one line without its password (exit 1), Ctrl-C stops cleanly
(exit 130) and the study resumes, `--workers` on a journal file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from engine.cli import main
from engine.sweep import open_study
from tests.engine.cli_run import REPO, one_error_line, run
from tests.support.liveserver import free_port

TINY = ["--engine", "numpy", "--train-size", "1200", "--epochs", "2", "--hidden", "32"]
GRID = ["--vary", "learning_rate=1e-3:1e-2", "--vary", "optimizer=adam|sgd"]
TRIAL_KEYS = {"number", "state", "params", "value", "curve", "seconds", "note"}


@pytest.fixture(scope="module")
def env():
    return {**os.environ, "DIGIT_LAB_MAX_TRIALS": "50"}


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("trial ", "worker "))]


def test_a_sweep_prints_a_line_per_trial_and_one_json_object(env):
    result = run(env, "sweep", *TINY, *GRID, "--trials", "4", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {"study", "trials", "best_params", "best_value"}
    assert [trial["number"] for trial in summary["trials"]] == [0, 1, 2, 3]
    assert all(set(trial) == TRIAL_KEYS for trial in summary["trials"])
    assert summary["best_value"] == max(trial["value"] for trial in summary["trials"]
                                        if trial["value"] is not None)
    lines = progress_lines(result.stderr)
    assert len(lines) == 4 and lines[0].startswith("trial ") and "val_acc" in lines[0]
    assert len(result.stderr.splitlines()) == 4, result.stderr


@pytest.mark.parametrize("arguments, message", [
    (["--vary", "lr=1e-4:1e-1"], "--vary lr=1e-4:1e-1: unknown parameter 'lr'"),
    (["--vary", "learning_rate=1e-4:5"], "learning_rate must be in (0, 1], got 5"),
    (["--vary", "learning_rate=1e-4..1e-1"], "a range of learning_rate is LOW:HIGH"),
    (["--vary", "learning_rate"], "write NAME=LOW:HIGH"),
    (["--vary", "hidden_sizes=64:128"], "hidden_sizes takes a list of values"),
    (["--vary", "learning_rate=1e-4:1e-1", "--trials", "51"],
     "--trials must be from 1 to 50 (this host's limit, DIGIT_LAB_MAX_TRIALS), got 51"),
    (["--vary", "optimizer=adam|sgd", "--trials", "3"], "the grid has 2 points"),
    (["--vary", "learning_rate=1e-4:1e-1", "--learning-rate", "0.01"],
     "learning_rate is both set by its flag and varied by --vary"),
    (["--vary", "batch_size=64|2048"], "with batch_size=2048: batch_size must be at most"),
    (["--vary", "learning_rate=1e-4:1e-1", "--workers", "2"],
     "--workers 2 needs a --storage the workers share"),
    (["--study", "new"], "without --vary the study's stored settings are used, so "
                         "hidden_sizes would be ignored"),
    (["--vary", "learning_rate=1e-4:1e-1", "--sampler", "random"], "invalid choice"),
])
def test_bad_input_is_refused_in_one_line_before_any_trial(tmp_path, monkeypatch, capsys,
                                                          arguments, message):
    """In this process (the same `main` as `python -m engine`, without a second's start-up
    per case): exit 2, one line, and no study opened."""
    monkeypatch.setenv("DIGIT_LAB_MAX_TRIALS", "50")
    journal = tmp_path / "study.log"
    storage = [] if "--workers" in arguments else ["--storage", f"journal:{journal}"]
    assert main(["sweep", *TINY, "--trials", "2", *storage, *arguments]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert message in err
    assert not journal.exists(), "a study was opened before the input was checked"


def test_without_vary_or_storage_there_is_nothing_to_run(env):
    result = run(env, "sweep", "--trials", "2")
    assert result.returncode == 2
    assert "give the parameters to vary with --vary" in one_error_line(result)


def test_joining_a_study_with_other_settings_is_refused(env, tmp_path):
    storage = ["--storage", f"journal:{tmp_path / 'study.log'}", "--study", "lr"]
    first = run(env, "sweep", *TINY, *storage, "--vary", "optimizer=adam|sgd", "--trials", "1")
    assert first.returncode == 0, first.stderr
    other = run(env, "sweep", *TINY, *storage, "--vary", "optimizer=adam|nesterov",
                "--trials", "1")
    assert other.returncode == 2
    assert "study 'lr' in journal:" in one_error_line(other)
    assert "was made with other settings (vary: optimizer=adam|sgd)" in other.stderr
    joined = run(env, "sweep", *storage, "--trials", "1", "--json")
    assert joined.returncode == 0, joined.stderr
    assert len(json.loads(joined.stdout)["trials"]) == 2
    shown = run(env, "sweep", *storage, "--trials", "0", "--json")
    assert shown.returncode == 0 and shown.stderr == "", shown.stderr
    assert json.loads(shown.stdout) == json.loads(joined.stdout)


@pytest.mark.parametrize("url, shown", [
    (f"postgresql://ada:s3cret-pw@127.0.0.1:{free_port()}/sweeps",
     "cannot open storage postgresql://ada:***@127.0.0.1:"),
    ("postgresql://ada@127.0.0.1:1/sweeps?password=s3cret-pw",
     "cannot open storage postgresql://ada@127.0.0.1:1/sweeps?password=***"),
    ("journal:/no/such/folder/study.log",
     "cannot open storage journal:/no/such/folder/study.log: the folder /no/such/folder"),
    ("nosuchdb://ada:s3cret-pw@host/x", "cannot open storage nosuchdb://ada:***@host/x"),
    ("not a url", "cannot open storage not a url"),
])
def test_a_storage_that_cannot_be_opened_is_one_line_without_its_password(env, url, shown):
    result = run(env, "sweep", *TINY, *GRID, "--trials", "2", "--storage", url)
    assert result.returncode == 1, result.stderr
    line = one_error_line(result)
    assert shown in line
    assert "s3cret-pw" not in result.stderr


def test_ctrl_c_stops_cleanly_and_the_study_resumes(env, tmp_path):
    """Ctrl-C while the second trial trains: exit 130, the JSON still printed, the trial
    failed with a note and its parameters queued; the same command again runs them first
    and completes the grid."""
    storage = f"journal:{tmp_path / 'study.log'}"
    # Trials of a second or so, long enough to be interrupted in.
    command = [sys.executable, "-m", "engine", "sweep", "--engine", "numpy", "--hidden",
               "256,128", "--epochs", "3", "--train-size", "3000", *GRID, "--trials", "4",
               "--json", "--storage", storage, "--study", "stop"]
    sweep = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert sweep.stderr.readline().startswith("trial 0 complete")
    study = open_study(storage, "stop")
    while len(study.trials) < 2 or not study.trials[1].intermediate_values:
        assert sweep.poll() is None, "the sweep ended before trial 1 finished an epoch"
        time.sleep(0.02)
    sweep.send_signal(signal.SIGINT)
    stdout, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, stderr
    assert "Traceback" not in stderr
    trials = json.loads(stdout)["trials"]
    assert [trial["state"] for trial in trials] == ["complete", "fail", "waiting"]
    assert "stopped at epoch" in trials[1]["note"]
    assert trials[2]["params"] == trials[1]["params"]
    assert "trial 1 fail [2/4]: " in stderr

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    trials = json.loads(resumed.stdout)["trials"]
    finished = [(trial["params"]["learning_rate"], trial["params"]["optimizer"])
                for trial in trials if trial["state"] in ("complete", "pruned")]
    assert sorted(finished) == sorted((rate, optimizer) for rate in (0.001, 0.01)
                                      for optimizer in ("adam", "sgd"))


def test_workers_share_the_trials_of_one_study_on_a_journal_file(env, tmp_path):
    result = run(env, "sweep", *TINY, "--vary", "learning_rate=1e-3:3e-2",
                 "--vary", "dropout=0:0.3", "--vary", "l2=0:0.001", "--trials", "5",
                 "--workers", "2", "--storage", f"journal:{tmp_path / 'study.log'}", "--json")
    assert result.returncode == 0, result.stderr
    trials = json.loads(result.stdout)["trials"]
    assert [trial["number"] for trial in trials] == [0, 1, 2, 3, 4]
    lines = progress_lines(result.stderr)
    assert sum(line.startswith("worker 1: ") for line in lines) == 3
    assert sum(line.startswith("worker 2: ") for line in lines) == 2
