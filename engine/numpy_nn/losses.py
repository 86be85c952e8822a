"""The NumPy engine's objective: softmax fused with cross-entropy, and the L2 term on
kernels. The layers and the training loop live elsewhere.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) row by row, stable for any finite logits (log-sum-exp)."""
    shifted = logits - logits.max(axis=1, keepdims=True)          # (n, classes), max 0
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels, fused so that the
    gradient is simply (softmax - one_hot) / batch and no probability is ever logged.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self._labels: np.ndarray | None = None

    def _buffer(self, name: str, like: np.ndarray) -> np.ndarray:
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = self._buffers[name] = np.empty_like(like)
        return buffer

    def forward(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """The mean loss; keeps the probabilities for `backward`."""
        rows = np.arange(len(labels))
        shifted = self._buffer("shifted", logits)                  # (batch, classes)
        np.subtract(logits, logits.max(axis=1, keepdims=True), out=shifted)
        probabilities = self._buffer("probabilities", logits)
        np.exp(shifted, out=probabilities)
        totals = probabilities.sum(axis=1, keepdims=True)          # (batch, 1), >= 1
        probabilities /= totals
        # -log softmax[label] = log(sum exp(shifted)) - shifted[label]
        loss = np.mean(np.log(totals[:, 0]) - shifted[rows, labels])
        self._labels, self._rows = labels, rows
        return float(loss)

    def backward(self, batch_size: int | None = None) -> np.ndarray:
        """d(mean loss) / d(logits), shape (batch, classes); the mean over `batch_size`
        rows when these logits are part of a larger batch."""
        grad = self._buffer("grad", self._buffers["probabilities"])
        np.copyto(grad, self._buffers["probabilities"])
        grad[self._rows, self._labels] -= 1
        grad *= grad.dtype.type(1.0 / (batch_size or len(self._labels)))
        return grad


def l2_penalty(kernels: list[np.ndarray], l2: float) -> float:
    """l2 * sum(W ** 2) over the kernels: what keras.regularizers.L2(l2) adds."""
    return float(l2 * sum(float(np.vdot(W, W)) for W in kernels))


def add_l2_gradient(kernels: list[np.ndarray], kernel_grads: list[np.ndarray],
                    l2: float) -> None:
    """Add d(l2 * sum(W ** 2)) / dW = 2 * l2 * W to each kernel's gradient, in place."""
    if l2 == 0:
        return
    for W, dW in zip(kernels, kernel_grads):
        dW += W.dtype.type(2.0 * l2) * W
