"""Limits a host sets through environment variables, read where the engine needs them.

The dashboard's own limits (ui/limits.py) read theirs the same way; a sweep's live here
because the command line enforces them too, and engine/ never imports ui/.
"""

from __future__ import annotations

import os


def env_int(name: str, default: int, low: int, high: int) -> int:
    """The environment's integer `name`, clamped to [low, high]; `default` if unset or not
    a whole number (a typo in a host's settings should not stop the app)."""
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        return default
    return min(max(value, low), high)


def max_sweep_trials() -> int:
    """Trials one sweep command or page run may ask for. 200 default-MLP trials of 10
    epochs on all 60,000 images are about 40 minutes of one core here; a host that lends
    its cores to many visitors sets DIGIT_LAB_MAX_TRIALS lower."""
    return env_int("DIGIT_LAB_MAX_TRIALS", 200, 1, 100_000)


def max_sweep_workers() -> int:
    """Worker processes `sweep --workers` may start on this machine: one per core by
    default, since each trains on one thread and more only take turns."""
    return env_int("DIGIT_LAB_MAX_WORKERS", os.cpu_count() or 1, 1, 1024)
