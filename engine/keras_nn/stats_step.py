"""The Keras engine's train step with per-layer statistics: Keras's own step (forward,
loss with the L2 terms, gradients, update, metrics) that also adds each layer's gradient
norm and each ReLU layer's fired units into TensorFlow variables, inside the compiled
step. The recorder reads and zeroes them once per epoch (engine.training_stats).

Dead units are taken here, from the sampled training batches' own forward pass, not
from a validation pass afterwards: that pass would cost a forward over the validation set
per epoch, while here they cost one reduction per ReLU layer per sampled batch on
activations the step computes anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.keras_nn.build import import_keras
from engine.training_stats import SAMPLE_EVERY, StatsLayer, Totals


def relu_layer_name(layer: StatsLayer) -> str:
    """The Keras layer whose output is `layer`'s ReLU output (build.py's names)."""
    number = layer.name.split()[1]
    return f"conv_relu_{number}" if layer.kind == "conv" else f"hidden_{number}"


def install_stats_step(model: Any, layers: list[StatsLayer]) -> Any:
    """Make `model.fit` (and `train_on_batch`) run a step that records statistics;
    return a function giving the epoch's `Totals` and zeroing them.

    The step is set on this model object only, not on its class: the saved file stays a
    plain functional model that any Keras loads. Nothing the step needs is an attribute
    of the model, so none of it is tracked or saved with the weights.
    """
    keras = import_keras()
    import tensorflow as tf

    relu_layers = [layer for layer in layers if layer.relu]
    # The same layers with more outputs: one forward pass gives the logits and the ReLU
    # activations, and its gradients are the model's own.
    relu_outputs = [model.get_layer(relu_layer_name(layer)).output for layer in relu_layers]
    probe = keras.Model(model.inputs, [model.outputs[0], *relu_outputs])
    trained = model.trainable_variables
    # float32, or float64 where a test builds the model so: the step's own dtypes.
    weight_dtype = trained[0].dtype
    # Which layer each trained array belongs to: one product turns the arrays' squared
    # norms into the layers', fewer operations per step than a sum per layer.
    membership = np.zeros((len(layers), len(trained)))
    for row, layer in enumerate(layers):
        membership[row, list(layer.trainable)] = 1.0
    membership = tf.constant(membership, weight_dtype)
    norm_sums = tf.Variable(tf.zeros(len(layers), weight_dtype), trainable=False)
    measured = tf.Variable(0, dtype=tf.int64, trainable=False)     # batches in the sums
    batches = tf.Variable(0, dtype=tf.int64, trainable=False)
    # ReLU outputs are >= 0, so a unit's largest output so far is above zero exactly when
    # it has fired.
    peaks = [tf.Variable(tf.zeros(layer.units, output.dtype), trainable=False)
             for layer, output in zip(relu_layers, relu_outputs)]

    def train_step(data: Any) -> Any:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits, *activations = probe(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=logits,
                                      sample_weight=sample_weight, training=True)
            loss = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, trained)
        model.optimizer.apply_gradients(zip(gradients, trained))

        def read_sampled_batch() -> Any:
            # l2_loss is half the sum of squares in one pass, with no squared copy.
            squares = 2 * tf.stack([tf.nn.l2_loss(gradient) for gradient in gradients])
            norm_sums.assign_add(tf.sqrt(tf.linalg.matvec(membership, squares)))
            for peak, activation in zip(peaks, activations):
                spatial = list(range(len(activation.shape) - 1))
                peak.assign(tf.maximum(peak, tf.reduce_max(activation, axis=spatial)))
            return measured.assign_add(1)

        # The batches the NumPy engine samples too (engine.training_stats.SAMPLE_EVERY).
        tf.cond(tf.equal(batches % SAMPLE_EVERY, 0), read_sampled_batch,
                lambda: measured + 0)
        batches.assign_add(1)
        # Keras's "loss" log (its running mean) is not kept: the history reads the
        # batch_loss metric, the data term alone (build.batch_metrics).
        return model.compute_metrics(x, y, logits, sample_weight=sample_weight)

    model.train_step = train_step

    def totals() -> Totals:
        result = (norm_sums.numpy().astype(np.float64), int(measured.numpy()),
                  [peak.numpy() > 0 for peak in peaks])
        for variable in (norm_sums, measured, batches, *peaks):
            variable.assign(tf.zeros_like(variable))
        return result

    return totals
