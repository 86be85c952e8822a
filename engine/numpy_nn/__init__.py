"""The from-scratch NumPy engine: layers, losses, optimizers and `NumpyNetwork`.

No autograd and no framework: every gradient is written out by hand (and checked by
finite differences in the tests). Importing this package never imports TensorFlow.
"""

from engine.numpy_nn.network import NumpyNetwork

__all__ = ["NumpyNetwork"]
