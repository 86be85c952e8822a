"""Optimizers for the NumPy engine, following Keras 3's update formulas exactly.

An optimizer sees only (param, grad) pairs and updates the params in place; it knows
nothing about layers. State (velocities, moments) is kept per position in that list, so
always pass the pairs in the same order. Setting `learning_rate` between steps is how
the training loop applies a schedule.
"""

from __future__ import annotations

import numpy as np

from engine.config import TrainConfig
from engine.numpy_nn.parts import PartRunner

Pairs = list[tuple[np.ndarray, np.ndarray]]


class Optimizer:
    """Shared bookkeeping: the step count, work arrays, and the per-position state."""

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = learning_rate
        self.iterations = 0                 # steps taken, as Keras's `iterations`
        self._scratch: list[tuple[np.ndarray, np.ndarray]] = []

    def step(self, pairs: Pairs, runner: PartRunner | None = None) -> None:
        """One update of every pair; with a two-part `runner`, the first half of the
        pairs in one thread and the rest in another (each pair's update is its own)."""
        if not self._scratch:
            # Two work arrays per param let each update keep Keras's order of operations
            # (so float32 rounding matches) without allocating anything per step.
            self._scratch = [(np.empty_like(param), np.empty_like(param))
                             for param, _ in pairs]
            self._create_state(pairs)
        if runner is None or runner.parts == 1:
            self._update_pairs(pairs, range(len(pairs)))
        else:
            middle = (len(pairs) + 1) // 2
            halves = (range(middle), range(middle, len(pairs)))
            runner.run(lambda part: self._update_pairs(pairs, halves[part]))
        self.iterations += 1

    def _update_pairs(self, pairs: Pairs, indices: range) -> None:
        for index in indices:
            param, grad = pairs[index]
            # Scalars in the param's dtype: a Python float is fine under NumPy 2, but a
            # float64 scalar would silently upcast a float32 update.
            self._update(index, param, grad, *self._scratch[index], param.dtype.type)

    def reset(self) -> None:
        """Forget all state, as a freshly built optimizer."""
        self._scratch = []
        self.iterations = 0

    def _create_state(self, pairs: Pairs) -> None:
        pass

    def _update(self, index, param, grad, scratch, scratch_2, scalar) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Keras's SGD. With momentum mu:  v = mu * v - lr * g;  W += v.
    With Nesterov:                    v = mu * v - lr * g;  W += mu * v - lr * g.
    """

    def __init__(self, learning_rate: float, momentum: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(learning_rate)
        # As in Keras, a momentum of 0 means plain SGD, Nesterov or not.
        self.momentum = momentum
        self.nesterov = nesterov
        self.velocities: list[np.ndarray] = []

    def _create_state(self, pairs: Pairs) -> None:
        self.velocities = [np.zeros_like(param) for param, _ in pairs]

    def _update(self, index, param, grad, scratch, scratch_2, scalar) -> None:
        lr_grad = np.multiply(grad, scalar(self.learning_rate), out=scratch)   # lr * g
        if self.momentum == 0:
            param -= lr_grad
            return
        velocity = self.velocities[index]
        velocity *= scalar(self.momentum)
        velocity -= lr_grad
        if not self.nesterov:
            param += velocity
            return
        step = np.multiply(velocity, scalar(self.momentum), out=scratch_2)
        step -= lr_grad
        param += step


class Adam(Optimizer):
    """Keras's Adam (epsilon 1e-7, bias correction folded into the step size):

        m += (g - m) (1 - beta_1);   v += (g^2 - v) (1 - beta_2)
        alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)
        W -= alpha m / (sqrt(v) + epsilon)
    """

    def __init__(self, learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7) -> None:
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.moments: list[np.ndarray] = []
        self.velocities: list[np.ndarray] = []

    def _create_state(self, pairs: Pairs) -> None:
        self.moments = [np.zeros_like(param) for param, _ in pairs]
        self.velocities = [np.zeros_like(param) for param, _ in pairs]

    def _update(self, index, param, grad, scratch, scratch_2, scalar) -> None:
        # In the param's dtype, as Keras does: in float32, 1 - 0.999 ** t is not 0.001,
        # and computing it in float64 would drift from Keras by ~1e-5 of a step.
        t = scalar(self.iterations + 1)
        beta_1_power = scalar(self.beta_1) ** t
        beta_2_power = scalar(self.beta_2) ** t
        alpha = (scalar(self.learning_rate) * np.sqrt(1 - beta_2_power)
                 / (1 - beta_1_power))
        m, v = self.moments[index], self.velocities[index]
        np.subtract(grad, m, out=scratch)
        scratch *= scalar(1 - self.beta_1)
        m += scratch
        np.multiply(grad, grad, out=scratch)
        scratch -= v
        scratch *= scalar(1 - self.beta_2)
        v += scratch
        denominator = np.sqrt(v, out=scratch)
        denominator += scalar(self.epsilon)
        step = np.multiply(m, alpha, out=scratch_2)
        step /= denominator
        param -= step


def build_optimizer(config: TrainConfig) -> Optimizer:
    """The optimizer the config names, at its base learning rate."""
    if config.optimizer == "adam":
        return Adam(config.learning_rate)
    if config.optimizer == "sgd":
        return SGD(config.learning_rate)
    if config.optimizer == "momentum":
        return SGD(config.learning_rate, momentum=config.momentum)
    if config.optimizer == "nesterov":
        return SGD(config.learning_rate, momentum=config.momentum, nesterov=True)
    raise ValueError(f"optimizer must be one of adam, sgd, momentum, nesterov, "
                     f"got {config.optimizer!r}")
