"""Per-layer statistics recorded while a network trains, the same way for both engines:
each layer's gradient norm (mean over the epoch's sampled batches), a histogram of its
kernel at the end of every epoch, and its dead units (ReLU units, or conv channels, that
fired on no image of the epoch's sampled batches). Every SAMPLE_EVERY-th batch is sampled.

The engines feed a `StatsRecorder` from their own batch loop, without an extra pass over
the data: the NumPy engine batch by batch (`add_batch`, from the gradients and ReLU
outputs its backward and forward passes already made), the Keras engine once per epoch
(`totals`, read from the variables its compiled train step accumulates). `Classifier`
closes each epoch into `History.training_stats`, which travels in meta.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

HISTOGRAM_BINS = 40
# Histogram edges are fixed for a run so epochs compare: symmetric about zero, twice the
# largest |weight| of the first recorded epoch (weights spread as they learn). Weights
# that still escape are counted as below or above the range, never dropped.
EDGE_MARGIN = 2.0
# The statistics read every eighth batch of an epoch, its first included: its gradient
# norms and which units fired on its images. A pass over all the gradients is
# memory-bound like the optimizer's update (with every fourth batch the statistics cost
# the NumPy engine 6.8% of an epoch on the idle 2-core machine), and looking at every
# batch's ReLU outputs cost the Keras engine two graph operations per layer and batch.
# An eighth of an epoch (over 50 batches, 7,500 images on MNIST) still gives a steady
# mean, and a unit silent on 7,500 images is dead for any purpose a learner has.
SAMPLE_EVERY = 8


@dataclass(frozen=True)
class StatsLayer:
    """A weighted layer as the statistics see it, in both engines' order."""

    name: str                   # "conv 1", "dense 1", "logits"
    kind: str                   # conv | dense
    units: int                  # filters or units
    relu: bool                  # a ReLU follows: its dead units are counted
    kernel: int                 # index of its kernel in `get_weights()`
    trainable: tuple[int, ...]  # indices of its arrays in the trained weights (Keras order)


def stats_layers(config: Any) -> list[StatsLayer]:
    """The layers of `config`'s network (a TrainConfig): per conv block its kernel with
    its batch norm's gamma and beta, per dense layer its kernel and bias."""
    # Imported here: the layout module imports engine.training, which imports this one.
    from engine.numpy_nn.layout import is_state, parameter_layout

    names, shapes = parameter_layout(config)
    trained = [name for name in names if not is_state(name)]
    layers = []
    for index, (name, shape) in enumerate(zip(names, shapes)):
        if not name.endswith("_kernel"):
            continue
        kind, number = name.split("_")[:2]
        block = int(number)
        parts = (f"conv_{block}_kernel", f"batch_norm_{block}_gamma",
                 f"batch_norm_{block}_beta") if kind == "conv" else \
            (name, f"dense_{block}_bias")
        is_logits = kind == "dense" and block == len(config.hidden_sizes)
        layers.append(StatsLayer(
            name="logits" if is_logits else f"{kind} {block + 1}", kind=kind,
            units=shape[-1], relu=kind == "conv" or (not is_logits
                                                    and config.activation == "relu"),
            kernel=index, trainable=tuple(trained.index(part) for part in parts)))
    return layers


@dataclass
class EpochStats:
    """One epoch's statistics, one entry per layer (`TrainingStats.layers`)."""

    epoch: int
    batches: int                        # batches the gradient norms average over
    gradient_norm: list[float]          # mean of ||d loss / d layer weights|| over them
    weight_counts: list[list[int]]      # kernel histogram on the run's fixed edges
    weights_below: list[int]            # kernel weights left of the first edge
    weights_above: list[int]            # ... right of the last edge
    dead_units: list[int | None]        # units that never fired; None where no ReLU follows


@dataclass
class TrainingStats:
    """A run's per-layer statistics, epoch by epoch (plain data, JSON via to_dict)."""

    layers: list[dict[str, Any]]        # name, kind, units, relu per layer
    weight_limits: list[float]          # histogram edges span [-limit, limit] per layer
    bins: int = HISTOGRAM_BINS
    epochs: list[EpochStats] = field(default_factory=list)

    def bin_edges(self, layer: int) -> np.ndarray:
        limit = self.weight_limits[layer]
        return np.linspace(-limit, limit, self.bins + 1)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": [dict(layer) for layer in self.layers],
                "weight_limits": list(self.weight_limits), "bins": self.bins,
                "epochs": [asdict(epoch) for epoch in self.epochs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingStats:
        """Raises ValueError for anything but what `to_dict` wrote."""
        try:
            stats = cls(layers=[dict(layer) for layer in data["layers"]],
                        weight_limits=[float(limit) for limit in data["weight_limits"]],
                        bins=int(data.get("bins", HISTOGRAM_BINS)),
                        epochs=[EpochStats(**epoch) for epoch in data.get("epochs", [])])
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"training statistics are not readable ({error!r})") from None
        width = len(stats.layers)
        if len(stats.weight_limits) != width or any(
                len(epoch.gradient_norm) != width or len(epoch.weight_counts) != width
                or len(epoch.dead_units) != width for epoch in stats.epochs):
            raise ValueError("training statistics need one entry per layer in every epoch")
        return stats


# Once per epoch the Keras engine hands over what its train step accumulated (and zeroes
# it): per layer the summed batch gradient norms, how many batches they sum, and per
# ReLU layer which units fired.
Totals = tuple[np.ndarray, int, list[np.ndarray]]


class StatsRecorder:
    """Accumulates one epoch's gradient norms and fired units; `close_epoch` turns them
    and the epoch's final weights into an `EpochStats` in the history."""

    def __init__(self, config: Any) -> None:
        self.layers = stats_layers(config)
        self.relu_layers = [layer for layer in self.layers if layer.relu]
        # Set by an engine that accumulates elsewhere and hands over once per epoch.
        self.totals: Callable[[], Totals] | None = None
        self._reset()

    def _reset(self) -> None:
        self._norm_sums = np.zeros(len(self.layers))
        self._norm_batches = 0
        self._batches = 0
        # Per ReLU layer, the units that have not fired yet this epoch. Only they are
        # looked at in later batches: after the first few, that is the dead ones alone.
        self._silent = [np.arange(layer.units) for layer in self.relu_layers]

    @property
    def samples_next(self) -> bool:
        """Whether the next batch is one the statistics read (every SAMPLE_EVERY-th)."""
        return self._batches % SAMPLE_EVERY == 0

    def skip_batch(self) -> None:
        """A batch not sampled went by."""
        self._batches += 1

    def add_batch(self, norms: np.ndarray, activations: list[np.ndarray]) -> None:
        """A sampled batch: each layer's gradient norm, and each ReLU layer's output
        (..., units); a unit fired if it is above zero anywhere."""
        self._norm_sums += norms
        self._norm_batches += 1
        self._batches += 1
        self.add_activations(activations)

    def add_activations(self, activations: list[np.ndarray]) -> None:
        """More of this batch's ReLU outputs, one per ReLU layer (e.g. a second half)."""
        for index, (silent, output) in enumerate(zip(self._silent, activations)):
            if not silent.size:
                continue
            output = output.reshape(-1, output.shape[-1])           # (positions, units)
            if silent.size < output.shape[1]:
                output = output[:, silent]
            self._silent[index] = silent[output.max(axis=0) <= 0]

    def close_epoch(self, history: Any, epoch: int, weights: list[np.ndarray]) -> None:
        """Append the epoch's statistics to `history.training_stats` (created on the
        first epoch, with its histogram edges); an epoch without a batch adds nothing."""
        if self.totals is not None:
            norm_sums, batches, fired = self.totals()
            self._norm_sums, self._norm_batches = norm_sums, batches
            self._silent = [np.flatnonzero(~units) for units in fired]
        # The first batch of an epoch is always sampled: no norms, no batches.
        batches, norm_sums, silent = self._norm_batches, self._norm_sums, self._silent
        self._reset()
        if batches == 0:
            return
        kernels = [np.asarray(weights[layer.kernel]) for layer in self.layers]
        stats = history.training_stats
        if stats is None or [layer["name"] for layer in stats.layers] != \
                [layer.name for layer in self.layers]:
            stats = history.training_stats = TrainingStats(
                layers=[{"name": layer.name, "kind": layer.kind, "units": layer.units,
                         "relu": layer.relu} for layer in self.layers],
                weight_limits=[_limit(kernel) for kernel in kernels])
        counts, below, above = [], [], []
        for index, kernel in enumerate(kernels):
            limit = stats.weight_limits[index]
            counts.append(np.histogram(kernel, bins=stats.bins, range=(-limit, limit))[0]
                          .tolist())
            below.append(int(np.count_nonzero(kernel < -limit)))
            above.append(int(np.count_nonzero(kernel > limit)))
        dead_by_layer = iter(len(units) for units in silent)
        stats.epochs.append(EpochStats(
            epoch=epoch, batches=int(batches),
            gradient_norm=[float(total) / batches for total in norm_sums],
            weight_counts=counts, weights_below=below, weights_above=above,
            dead_units=[next(dead_by_layer) if layer.relu else None
                        for layer in self.layers]))


def _limit(kernel: np.ndarray) -> float:
    finite = kernel[np.isfinite(kernel)]
    largest = float(np.max(np.abs(finite))) if finite.size else 0.0
    return EDGE_MARGIN * largest if largest > 0 else 1.0
