"""Limits that keep one visitor's run reasonable on a small shared host.

Each is read from an environment variable so a host can tighten or relax it; the
defaults suit Streamlit Community Cloud (about 2.7 GB of memory, a couple of cores).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.limits import env_int


@dataclass(frozen=True)
class HostLimits:
    max_epochs: int            # per run
    max_hidden_width: int      # per dense layer
    max_conv_filters: int      # per conv block
    max_concurrent_runs: int   # training runs at once in this server process
    abandoned_seconds: int     # a run no open page has shown for this long is stopped


def host_limits() -> HostLimits:
    return HostLimits(
        max_epochs=env_int("DIGIT_LAB_MAX_EPOCHS", 50, 1, 200),
        max_hidden_width=env_int("DIGIT_LAB_MAX_HIDDEN_WIDTH", 1024, 8, 2048),
        max_conv_filters=env_int("DIGIT_LAB_MAX_CONV_FILTERS", 128, 4, 256),
        max_concurrent_runs=env_int("DIGIT_LAB_MAX_CONCURRENT_RUNS", 2, 1, 64),
        abandoned_seconds=env_int("DIGIT_LAB_ABANDONED_SECONDS", 60, 1, 24 * 3600),
    )


def busy_message() -> str:
    """What a visitor reads when every training slot of this server is taken."""
    return (f"This server is already training as many models as it allows at once "
            f"({host_limits().max_concurrent_runs}). Try again in a minute, when one has "
            "finished.")
