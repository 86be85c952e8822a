"""The training contract both engines honour: data split, batch order, learning-rate
schedule, progress callbacks, the stop flag, the divergence guard and the history.

An engine implements `partial_fit` (one epoch) and the array-level calls; `Classifier`
adds the parts that are the same for every engine, so a page or the command line never
asks which engine it holds. Each engine keeps only its batch loop: it reports the epoch as
an `EpochOutcome`, and `Classifier._finish_epoch` turns that into the record, the run's
status and message, and the advice, once for every engine.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from engine.config import TrainConfig
from engine.training_stats import StatsRecorder, TrainingStats

NUM_CLASSES = 10
# Keep stored per-batch losses bounded: past this many points, pairs are averaged.
MAX_BATCH_LOSS_POINTS = 20_000


class StopFlag(Protocol):
    """Anything with `is_set()`, e.g. `threading.Event`."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class BatchProgress:
    """Reported after every finished batch."""

    epoch: int              # 1-based, counting epochs already in the history
    batch: int              # 1-based within the epoch
    batches_per_epoch: int
    loss: float             # this batch's training loss (data term, before L2)
    seconds_in_epoch: float


@dataclass
class EpochRecord:
    """What one (possibly stopped) epoch achieved."""

    epoch: int
    fraction: float                 # 1.0 when finished; batches done / batches per epoch if stopped
    train_loss: float               # mean over the epoch's batches
    train_accuracy: float           # on the epoch's (augmented) batches, as seen in training
    val_loss: float | None
    val_accuracy: float | None
    val_per_class_accuracy: list[float] | None
    learning_rate: float
    seconds: float


@dataclass
class History:
    """Everything a run reported, as plain data (JSON via to_dict/from_dict)."""

    epochs: list[EpochRecord] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    batch_loss_stride: int = 1      # batches each stored point averages
    batches_per_epoch: int = 0
    status: str = "new"             # new | running | completed | stopped | diverged
    message: str = ""
    # Advice about a run that goes on, e.g. "not learning": one line each, oldest first.
    warnings: list[str] = field(default_factory=list)
    # Per-layer weights, gradients and dead units by epoch; None for runs recorded before
    # they existed (engine.training_stats).
    training_stats: TrainingStats | None = None

    def column(self, name: str) -> list[Any]:
        return [getattr(record, name) for record in self.epochs]

    @property
    def epochs_done(self) -> float:
        return sum(record.fraction for record in self.epochs)

    def seconds_per_epoch(self) -> float | None:
        """Median seconds of the epochs that ran to their end (a stopped one's time says
        nothing about an epoch's); None before the first one ends."""
        whole = [record.seconds for record in self.epochs if record.fraction == 1.0]
        return statistics.median(whole) if whole else None

    def add_batch_loss(self, loss: float) -> None:
        self._pending.append(loss)
        if len(self._pending) == self.batch_loss_stride:
            self.batch_loss.append(float(np.mean(self._pending)))
            self._pending.clear()
        if len(self.batch_loss) > MAX_BATCH_LOSS_POINTS:
            pairs = np.asarray(self.batch_loss[: len(self.batch_loss) // 2 * 2])
            self.batch_loss = pairs.reshape(-1, 2).mean(axis=1).tolist()
            self.batch_loss_stride *= 2

    @property
    def _pending(self) -> list[float]:
        if not hasattr(self, "_pending_losses"):
            self._pending_losses: list[float] = []
        return self._pending_losses

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": [asdict(record) for record in self.epochs],
            "batch_loss": list(self.batch_loss),
            "batch_loss_stride": self.batch_loss_stride,
            "batches_per_epoch": self.batches_per_epoch,
            "status": self.status,
            "message": self.message,
            "warnings": list(self.warnings),
            "training_stats": (self.training_stats.to_dict()
                               if self.training_stats is not None else None),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        return cls(
            epochs=[EpochRecord(**record) for record in data.get("epochs", [])],
            batch_loss=[float(value) for value in data.get("batch_loss", [])],
            batch_loss_stride=int(data.get("batch_loss_stride", 1)),
            batches_per_epoch=int(data.get("batches_per_epoch", 0)),
            status=str(data.get("status", "new")),
            message=str(data.get("message", "")),
            warnings=[str(line) for line in data.get("warnings", [])],
            training_stats=(TrainingStats.from_dict(data["training_stats"])
                            if data.get("training_stats") else None),
        )


@dataclass
class EpochOutcome:
    """What an engine's batch loop reports about one epoch; `Classifier` turns it into the
    record and the run's status, the same way for every engine."""

    batches: int                    # batches in a whole epoch
    kept: int                       # batches whose updates the weights hold
    train_loss: float               # means over the batches trained (NaN for none)
    train_accuracy: float
    ended: str = "completed"        # completed | stopped | diverged
    failed_batch: int | None = None     # diverged: the batch that showed it
    reason: str = ""                    # diverged: what showed it (loss_problem's words)


@dataclass
class LayerOutput:
    """One hidden layer's output after its activation (or the logits) for a batch:
    `kind` is "conv", "pool", "dense" or "logits"; `values` is (n, h, w, channels) for
    conv and pool, (n, units) for dense, (n, 10) for the logits."""

    name: str           # readable, e.g. "conv 1 (3x3, 32 filters)", "dense 1 (256 units)"
    kind: str
    values: np.ndarray


OnBatch = Callable[[BatchProgress], None]
OnEpoch = Callable[[EpochRecord], None]


# ---- data split, order, schedule -----------------------------------------------

def split_training_data(images: np.ndarray, labels: np.ndarray, config: TrainConfig
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeded subset of `config.train_size` images, split into training and validation."""
    rng = np.random.default_rng([config.seed, 1])
    chosen = rng.permutation(len(images))[: min(config.train_size, len(images))]
    validation_count = int(len(chosen) * config.validation_fraction)
    validation, training = np.sort(chosen[:validation_count]), np.sort(chosen[validation_count:])
    return images[training], labels[training], images[validation], labels[validation]


def epoch_permutation(seed: int, epoch_index: int, count: int) -> np.ndarray:
    """The batch order of one epoch: the same in both engines for the same seed."""
    return np.random.default_rng([seed, 2, epoch_index]).permutation(count)


def batch_rng(seed: int, epoch_index: int) -> np.random.Generator:
    """Randomness for dropout masks and augmentation within one epoch."""
    return np.random.default_rng([seed, 3, epoch_index])


def learning_rate_at(config: TrainConfig, epoch_index: int) -> float:
    """The learning rate for a 0-based epoch under the config's schedule."""
    base = config.learning_rate
    if config.lr_schedule == "step":
        step = max(1, math.ceil(config.epochs / 3))
        return base * 0.5 ** (epoch_index // step)
    if config.lr_schedule == "cosine":
        progress = min(epoch_index, config.epochs) / config.epochs
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 0-255 or float 0-1 -> float32 in [0, 1], the engines' input."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected images of shape (n, 28, 28), got {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255)
    return images.astype(np.float32, copy=False)


# A batch whose mean cross-entropy passes this has blown up, whatever the CPU's rounding
# makes of it next: chance is ln 10 (about 2.3), so this means the correct class gets a
# probability near e^-23 on average. Finite losses that large never recover in practice.
LOSS_CEILING = 10 * math.log(NUM_CLASSES)
CHANCE_LOSS = math.log(NUM_CLASSES)
# "At chance": ten classes give 10%; a network stuck on one digit scores about 11%.
CHANCE_ACCURACY = 0.2


def loss_problem(loss: float) -> str | None:
    """Why a batch's loss means the run diverged, or None when it is fine."""
    if not math.isfinite(loss):
        return "the loss became infinite or NaN"
    if loss > LOSS_CEILING:
        return (f"the loss exploded to {loss:.3g}, far above chance "
                f"({CHANCE_LOSS:.2f})")
    return None


def weights_finite(arrays: list[np.ndarray] | np.ndarray) -> bool:
    """True when every weight is finite.

    A dot product propagates any NaN or infinity (and overflows for weights so large that
    the run has diverged anyway); it is about three times cheaper than `isfinite().all()`,
    which matters when it runs before every snapshot.
    """
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    for array in arrays:
        flat = np.asarray(array).reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            if not np.isfinite(np.dot(flat, flat)):
                return False
    return True


def divergence_message(epoch: int, batch: int, learning_rate: float,
                       reason: str = "the loss became infinite or NaN") -> str:
    return (f"diverged at epoch {epoch}, batch {batch}: {reason}; lower the learning "
            f"rate below {learning_rate:g}. The weights from before the divergence "
            f"were kept.")


def not_learning_warning(record: EpochRecord, previous: EpochRecord | None = None
                         ) -> str | None:
    """After a finished epoch: advice when the loss is still above chance and the
    accuracy no better than guessing (validation's if there is one). A loss far above
    chance, or rising since `previous`, points to a learning rate too high; one that sits
    near chance, to one too low."""
    accuracy = record.val_accuracy if record.val_accuracy is not None \
        else record.train_accuracy
    if not (math.isfinite(record.train_loss) and math.isfinite(accuracy)):
        return None
    if record.train_loss < CHANCE_LOSS or accuracy > CHANCE_ACCURACY:
        return None
    rising = previous is not None and math.isfinite(previous.train_loss) \
        and record.train_loss > 1.05 * previous.train_loss
    if record.train_loss > 2 * CHANCE_LOSS or rising:
        advice = "the loss is high or rising, so lower the learning rate"
    else:
        advice = "the loss sits near chance, so raise the learning rate"
    return (f"not learning after epoch {record.epoch}: the loss "
            f"({record.train_loss:.3g}) is above chance ({CHANCE_LOSS:.2f}) and accuracy "
            f"is {accuracy:.1%}, as guessing would score; {advice} (this epoch's: "
            f"{record.learning_rate:g}) or check the data.")


def stop_message(epoch: int, batch: int, batches_per_epoch: int) -> str:
    return (f"stopped at epoch {epoch}, batch {batch} of {batches_per_epoch}; the weights "
            f"of the last finished batch were kept.")


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray) -> list[float]:
    """Accuracy on each true class; NaN for a class absent from `labels`."""
    result = []
    for digit in range(NUM_CLASSES):
        mask = labels == digit
        result.append(float(np.mean(predictions[mask] == digit)) if mask.any() else math.nan)
    return result


# ---- what every engine shares ---------------------------------------------------

class Classifier:
    """The interface of both engines. Subclasses implement the abstract methods.

    Learned state: `config`, `history`. Inputs are (n, 28, 28) images, uint8 or float in
    [0, 1]; labels are integers 0-9.
    """

    engine_name = "abstract"
    architectures: tuple[str, ...] = ()     # what `config.architecture` may be
    config: TrainConfig
    history: History
    # Engines record per-layer statistics while they train (the bench turns this off to
    # measure what recording costs); `stats` is the engine's recorder, None when off.
    record_training_stats = True
    stats: StatsRecorder | None = None

    # -- to implement --
    def partial_fit(self, images: np.ndarray, labels: np.ndarray, *,
                    validation: tuple[np.ndarray, np.ndarray] | None = None,
                    on_batch: OnBatch | None = None, stop: StopFlag | None = None
                    ) -> EpochRecord:
        """Train one epoch; append and return its record (status in `history`)."""
        raise NotImplementedError

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) float32 class probabilities."""
        raise NotImplementedError

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(n, 10) pre-softmax scores, in inference mode."""
        raise NotImplementedError

    def layer_outputs(self, images: np.ndarray) -> list[LayerOutput]:
        """Every hidden layer's output after its activation, then the logits, in
        inference mode (dropout off, batch norm's moving statistics). Dropout, flatten
        and batch norm are no entries of their own: batch norm is part of its conv's."""
        raise NotImplementedError

    def input_gradient(self, images: np.ndarray, output_weights: np.ndarray, *,
                       layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(that layer's output, d/d(pixels) of sum(output * output_weights) per image),
        the gradient (n, 28, 28) float32, for pixels in [0, 1] and in inference mode.
        `layer` indexes `layer_outputs` (-1: the logits); `output_weights` has the
        output's shape or broadcasts to it (a (10,) row picks or mixes classes)."""
        raise NotImplementedError

    def get_weights(self) -> list[np.ndarray]:
        """Weights in Keras's order (kernel, bias per dense layer)."""
        raise NotImplementedError

    def set_weights(self, weights: list[np.ndarray]) -> None:
        raise NotImplementedError

    def save_weights(self, folder: Any) -> str:
        """Write the weights file into `folder`; return its file name."""
        raise NotImplementedError

    def loss(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Mean cross-entropy (data term only)."""
        probabilities = self.predict_proba(images)
        picked = probabilities[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
        return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))

    # -- shared --
    def fit(self, images: np.ndarray, labels: np.ndarray, *, epochs: int | None = None,
            validation: tuple[np.ndarray, np.ndarray] | None = None,
            on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None,
            stop: StopFlag | None = None) -> History:
        """Train until `epochs` more epochs are done (default: the config's), a stop, or
        a divergence; return the history."""
        for _ in range(epochs if epochs is not None else self.config.epochs):
            record = self.partial_fit(images, labels, validation=validation,
                                      on_batch=on_batch, stop=stop)
            if on_epoch is not None:
                on_epoch(record)
            if self.history.status in ("stopped", "diverged"):
                break
        return self.history

    def _finish_epoch(self, outcome: EpochOutcome, *, epoch_index: int, learning_rate: float,
                      started: float, validation: tuple[np.ndarray, np.ndarray] | None,
                      stop: StopFlag | None) -> EpochRecord:
        """The epoch's state machine, one for every engine: an epoch that ran to its end
        while the stop flag was raised counts as stopped; a run is "running" between
        epochs and "completed" once the config's epochs are done. The record joins the
        history, with advice when a finished epoch shows the run is not learning."""
        epoch, ended = epoch_index + 1, outcome.ended
        if ended == "completed" and stop is not None and stop.is_set():
            ended = "stopped"
        if ended == "diverged":
            status = "diverged"
            message = divergence_message(epoch, outcome.failed_batch or outcome.kept + 1,
                                         learning_rate, outcome.reason or
                                         "the loss became infinite or NaN")
        elif ended == "stopped":
            status, message = "stopped", stop_message(epoch, outcome.kept, outcome.batches)
        else:
            status = "completed" if epoch >= self.config.epochs else "running"
            message = ""
        val_loss, val_accuracy, val_per_class = self.validation_scores(validation)
        record = EpochRecord(
            epoch=epoch, fraction=outcome.kept / outcome.batches,
            train_loss=outcome.train_loss, train_accuracy=outcome.train_accuracy,
            val_loss=val_loss, val_accuracy=val_accuracy,
            val_per_class_accuracy=val_per_class, learning_rate=float(learning_rate),
            seconds=time.perf_counter() - started)
        history = self.history
        history.epochs.append(record)
        history.status, history.message = status, message
        if self.stats is not None:
            self.stats.close_epoch(history, epoch, self.get_weights())
        if status != "diverged" and record.fraction == 1.0:
            previous = history.epochs[-2] if len(history.epochs) > 1 else None
            warning = not_learning_warning(record, previous)
            if warning is not None:
                history.warnings.append(warning)
        return record

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.argmax(self.predict_proba(images), axis=1).astype(np.uint8)

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
        probabilities = self.predict_proba(images)
        labels = np.asarray(labels)
        predictions = np.argmax(probabilities, axis=1)
        picked = probabilities[np.arange(len(labels)), labels.astype(np.int64)]
        return {
            "loss": float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))),
            "accuracy": float(np.mean(predictions == labels)),
            "per_class_accuracy": per_class_accuracy(labels, predictions),
        }

    def validation_scores(self, validation: tuple[np.ndarray, np.ndarray] | None
                          ) -> tuple[float | None, float | None, list[float] | None]:
        """(loss, accuracy, per-class accuracy) on the validation set, or Nones."""
        if validation is None or len(validation[1]) == 0:
            return None, None, None
        scores = self.evaluate(*validation)
        return scores["loss"], scores["accuracy"], scores["per_class_accuracy"]

    def score(self, images: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(self.predict(images) == np.asarray(labels)))

    @property
    def parameter_count(self) -> int:
        return int(sum(weight.size for weight in self.get_weights()))
