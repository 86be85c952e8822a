"""How long a run will take and how much memory it needs, before it starts, from this
machine's measured speed: a fresh network of the config trains a few real batches
(`train_batch_at`), and the time per batch scales to the run's batches.

The figure covers the training steps and the validation pass; augmentation and a busy
machine add to it, and the Train page says it is an estimate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from engine import build_model
from engine.config import TrainConfig

PROBE_BATCHES = 3        # timed, after one untimed batch that builds buffers (and traces)
# One validation image costs about a third of a training image (forward only, no update).
VALIDATION_SHARE = 1 / 3


@dataclass(frozen=True)
class Estimate:
    seconds: float                 # the whole run
    seconds_per_epoch: float
    network_mb: float              # the network, its optimizer state and batch buffers
    seconds_per_batch: float


def resident_mb() -> float:
    """This process's resident memory in MB (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def estimate(engine: str, config: TrainConfig, images: np.ndarray, labels: np.ndarray
             ) -> Estimate:
    """Time PROBE_BATCHES real batches of a fresh `config` network on `images`."""
    before = resident_mb()
    model = build_model(engine, config)
    size = min(config.batch_size, len(images))
    rng = np.random.default_rng(config.seed)
    rows = [rng.choice(len(images), size, replace=False) for _ in range(PROBE_BATCHES + 1)]
    model.train_batch_at(images[rows[0]], labels[rows[0]], config.learning_rate)
    started = time.perf_counter()
    for chosen in rows[1:]:
        model.train_batch_at(images[chosen], labels[chosen], config.learning_rate)
    per_batch = (time.perf_counter() - started) / PROBE_BATCHES
    network_mb = max(0.0, resident_mb() - before)
    validation = int(config.train_size * config.validation_fraction)
    training = config.train_size - validation
    batches = math.ceil(training / config.batch_size)
    per_epoch = per_batch * (batches + VALIDATION_SHARE * validation / config.batch_size)
    return Estimate(per_epoch * config.epochs, per_epoch, network_mb, per_batch)
