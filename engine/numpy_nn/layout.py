"""Which weights a config's network has, named and shaped in Keras's `get_weights` order,
told without building it (the registry checks weights files against this).
"""

from __future__ import annotations

from engine.config import TrainConfig
from engine.training import NUM_CLASSES

IMAGE_SIDE = 28
INPUT_SIZE = IMAGE_SIDE * IMAGE_SIDE
CONV_SIZE = 3
# Batch norm's moving statistics: saved and copied with the weights, never trained.
STATE_SUFFIXES = ("_moving_mean", "_moving_variance")


def parameter_layout(config: TrainConfig) -> tuple[list[str], list[tuple[int, ...]]]:
    """Names and shapes of every weight array, trainable or state, in Keras's order:
    per conv block the kernel, then gamma, beta, moving mean and moving variance; then
    kernel and bias per dense layer."""
    names: list[str] = []
    shapes: list[tuple[int, ...]] = []
    channels = 1
    for index, filters in enumerate(conv_filters(config)):
        names.append(f"conv_{index}_kernel")
        shapes.append((CONV_SIZE, CONV_SIZE, channels, filters))
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            names.append(f"batch_norm_{index}_{part}")
            shapes.append((filters,))
        channels = filters
    sizes = (feature_size(config), *config.hidden_sizes, NUM_CLASSES)
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        names += [f"dense_{index}_kernel", f"dense_{index}_bias"]
        shapes += [(fan_in, fan_out), (fan_out,)]
    return names, shapes


def is_state(name: str) -> bool:
    return name.endswith(STATE_SUFFIXES)


def conv_filters(config: TrainConfig) -> tuple[int, ...]:
    """The conv blocks' widths; none for an MLP, whatever conv_filters holds."""
    return tuple(config.conv_filters) if config.architecture == "cnn" else ()


def feature_side(config: TrainConfig) -> int:
    """Side of the last feature maps: "same" convs keep it, each 2x2 pool floors half."""
    side = IMAGE_SIDE
    for _ in conv_filters(config):
        side //= 2
    return side


def feature_size(config: TrainConfig) -> int:
    """Inputs of the first dense layer: the flattened maps, or the pixels of an MLP."""
    filters = conv_filters(config)
    if not filters:
        return INPUT_SIZE
    return feature_side(config) ** 2 * filters[-1]


def forward_multiply_adds(config: TrainConfig) -> int:
    """Multiply-adds of one image's forward pass through the convs and dense layers (the
    products that dominate a step; batch norm, pooling and activations left out)."""
    total, side, channels = 0, IMAGE_SIDE, 1
    for filters in conv_filters(config):
        total += side * side * CONV_SIZE * CONV_SIZE * channels * filters   # "same" padding
        side, channels = side // 2, filters
    sizes = (feature_size(config), *config.hidden_sizes, NUM_CLASSES)
    return total + sum(fan_in * fan_out for fan_in, fan_out in zip(sizes, sizes[1:]))
