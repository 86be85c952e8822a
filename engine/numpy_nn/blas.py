"""Run NumPy's OpenBLAS on one thread while the NumPy engine trains.

Why: on a small machine shared with other work (the dashboard's server, a Keras run, a
browser), OpenBLAS's worker threads spin while waiting for each other, and an epoch that
takes ~1 s can take 10-25 s (measured on 2 cores under load). One thread costs little
when the machine is idle, because the batch-sized matrix products are small. Where
NumPy does not use OpenBLAS (e.g. Apple's Accelerate), this does nothing. A fixed
count also makes a run's weights independent of the machine's core count: OpenBLAS's
sums round differently with two threads than with one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading
from collections.abc import Iterator

import numpy as np

TRAINING_THREADS = 1

_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_lock = threading.Lock()
_users = 0
_saved_threads: int | None = None


@functools.cache
def _openblas() -> tuple | None:
    """(set_num_threads, get_num_threads) of the OpenBLAS NumPy loaded, or None."""
    for path in _candidate_libraries():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for setter_name in _SETTERS:
            getter_name = setter_name.replace("set_num_threads", "get_num_threads")
            setter = getattr(library, setter_name, None)
            getter = getattr(library, getter_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                return setter, getter
    return None


def _candidate_libraries() -> list[str]:
    paths = []
    with contextlib.suppress(OSError):
        with open("/proc/self/maps", encoding="utf-8") as maps:   # Linux: what is loaded
            paths = [line.split()[-1] for line in maps if "openblas" in line.lower()]
    numpy_libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    paths += glob.glob(os.path.join(numpy_libs, "*openblas*"))
    return list(dict.fromkeys(path for path in paths if os.path.isfile(path)))


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """Within the block, OpenBLAS uses TRAINING_THREADS threads; nested and concurrent
    blocks (two trainings in two threads) restore the original count only at the end
    of the last one."""
    global _users, _saved_threads
    functions = _openblas()
    if functions is None:
        yield
        return
    set_threads, get_threads = functions
    with _lock:
        if _users == 0:
            _saved_threads = get_threads()
            set_threads(TRAINING_THREADS)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved_threads is not None:
                set_threads(_saved_threads)
