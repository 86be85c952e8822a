"""Where a sweep's study lives, and what happens to a trial whose worker dies.

A URL becomes an Optuna storage: none (in memory), `journal:PATH` (a journal file for
workers on one machine), or any SQLAlchemy URL (a database for workers on many machines;
Optuna's heartbeat fails a trial whose worker went silent). Optuna 5's journal storage has
no heartbeat (only RDBStorage implements one), so each trial records its worker's host and
process, and `fail_orphaned_trials` fails the running trials of processes on this host that
no longer exist. Either way the dead trial's parameters are queued once more. Errors name
the storage with its password hidden.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from engine.limits import env_int

# A worker that dies is retried once: twice is a config that kills its worker, not bad luck.
RETRIES_AFTER_A_DEATH = 1
_PASSWORD = re.compile(r"(?P<head>://[^:/@?#]*:)[^@/?#]*@|(?P<key>password=)[^&;\s]*",
                       re.IGNORECASE)


class StorageUnavailable(RuntimeError):
    """The storage URL is wrong or its server cannot be reached (its message hides the
    password)."""


def describe_storage(url: str | None) -> str:
    """The storage for people: the URL with any password replaced by ***."""
    if not url:
        return "memory"
    return _PASSWORD.sub(lambda match: (match["head"] or match["key"]) + "***"
                         + ("@" if match["head"] else ""), url)


def heartbeat_seconds() -> int:
    """How often a trial on an RDB storage says it is alive; Optuna fails it after two
    silent intervals. Tests shorten it to see a killed worker's trial fail quickly."""
    return env_int("DIGIT_LAB_SWEEP_HEARTBEAT", 10, 1, 3600)


def open_storage(url: str | None) -> Any:
    """None (Optuna's in-memory storage), a JournalStorage for `journal:PATH`, or an
    RDBStorage for an SQLAlchemy URL (`postgresql://` means psycopg 3, the driver
    requirements.txt installs). StorageUnavailable in one line otherwise."""
    if not url:
        return None
    shown = describe_storage(url)
    if url.startswith("journal:"):
        return _journal_storage(url[len("journal:"):], shown)
    rdb_url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    connect_args = {"connect_timeout": 10} if rdb_url.startswith(("postgresql", "mysql")) \
        else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)   # heartbeat_interval
            return optuna.storages.RDBStorage(
                rdb_url, engine_kwargs={"connect_args": connect_args},
                heartbeat_interval=heartbeat_seconds(),
                heartbeat_stale_trial_callback=retry_callback(RETRIES_AFTER_A_DEATH))
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError,
            OSError) as error:
        raise StorageUnavailable(f"cannot open storage {shown}: "
                                 f"{_reason(error, url)}") from None


def _journal_storage(path: str, shown: str) -> Any:
    from optuna.storages.journal import JournalFileBackend

    if not path:
        raise StorageUnavailable("storage journal: needs a file path, like "
                                 "journal:sweeps/lr.log")
    folder = Path(path).parent
    if not folder.is_dir():
        raise StorageUnavailable(f"cannot open storage {shown}: the folder {folder} does "
                                 "not exist")
    try:
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    except (OSError, ValueError) as error:
        raise StorageUnavailable(f"cannot open storage {shown}: {_reason(error, path)}") \
            from None


def _reason(error: BaseException, url: str) -> str:
    """The error's first line, without SQLAlchemy's link and without the password, which
    some drivers repeat."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    line = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text[0] if text else "")
    password = re.search(r"://[^:/@]*:([^@/]+)@", url)
    if password:
        line = line.replace(password[1], "***")
    return line or type(error).__name__


def retry_callback(max_retry: int | None) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's retry: a failed trial's parameters queued as a new waiting trial, which
    the next trial any worker starts picks up."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retry)


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def _start_ticks(pid: int) -> str:
    """When the process started (Linux's /proc), so a reused process id is not taken for
    the worker that died; empty where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "zombie" if fields[0] == "Z" else fields[19]


def _worker_alive(worker: str) -> bool:
    host, _, rest = worker.partition(":")
    pid_text, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True     # another machine's process: only a heartbeat can tell
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_ticks(pid)
    return now != "zombie" and (not ticks or not now or now == ticks)


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Fail (and queue again, once) the running trials whose worker process on this host
    no longer exists; the numbers failed. Storages with a heartbeat leave this to Optuna."""
    storage = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:
        return []
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not worker or _worker_alive(worker):
            continue
        host, pid = worker.split(":")[:2]
        try:
            storage.set_trial_user_attr(trial._trial_id, "note",
                                        f"its worker (process {pid} on {host}) ended "
                                        "mid-trial")
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue    # another worker failed it first
        retry_callback(RETRIES_AFTER_A_DEATH)(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed
