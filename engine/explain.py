"""Inside the network, for one model and one digit: which pixels a score depends on
(saliency, integrated gradients, occlusion), what a class or unit responds to
(activation maximisation), where digits sit in the last hidden layer (PCA), the smallest
perturbation that changes the answer (FGSM), dead ReLU units and the first layer's
weights.

Engine-neutral: it asks the model for `logits`, `layer_outputs` and `input_gradient`
(see `engine.training.Classifier`) and knows nothing of how either engine computes them.
Images are (28, 28) in [0, 1] (uint8 0-255 is taken too), oriented as the preprocessed
digit; so is every map returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.numpy_nn.blas import training_threads
from engine.training import NUM_CLASSES, Classifier, as_model_input

SIDE = 28
# Images per layer_outputs call over a whole test set: a CNN's first maps hold
# 28 * 28 * filters values per image.
OUTPUTS_CHUNK = 1000
# Integrated gradients refines its path until the attributions add up to the score
# difference within this share (the issue asks for 1%), or it has used IG_MAX_STEPS.
IG_TOLERANCE = 0.01
IG_MAX_STEPS = 1024
# Step sizes tried at once in each activation-maximisation step, each half the last.
DREAM_STEP_HALVINGS = 6
# Halvings tried with the plain gradient when no regularised step raises the score.
DREAM_FALLBACK_HALVINGS = 16


@dataclass
class Attribution:
    """A signed map of how much each pixel counts for the score."""

    method: str
    target: int
    versus: int | None
    predicted: int
    values: np.ndarray                  # (28, 28) float32
    score: float                        # target logit (minus versus's) at the digit
    baseline_score: float | None = None     # the same at the baseline (integrated gradients)
    # |sum(values) - (score - baseline)| / |score - baseline|
    completeness_gap: float | None = None
    steps: int | None = None            # integrated gradients: the path's intervals


@dataclass
class Dream:
    """An image grown to raise one class's score or one unit's output."""

    image: np.ndarray                   # (28, 28) float32 in [0, 1]
    scores: list[float]                 # at the start, then after each step: increasing
    target: int
    layer: int
    layer_name: str = ""
    converged: bool = False             # stopped early: no step raised the score


@dataclass
class HiddenMap:
    """The first two principal components of a layer's outputs over many digits."""

    coords: np.ndarray                  # (n, 2) float32
    mean: np.ndarray                    # (d,)
    components: np.ndarray              # (2, d), orthonormal rows
    explained: np.ndarray               # (2,) shares of the total variance
    labels: np.ndarray                  # (n,)
    predictions: np.ndarray             # (n,)
    layer_name: str = ""

    def place(self, values: np.ndarray) -> np.ndarray:
        """Map coordinates (m, 2) of layer outputs (d,) or (m, d) (or (m, h, w, c))."""
        rows = np.asarray(values, dtype=np.float64)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows.reshape(len(rows), -1)
        return ((rows - self.mean) @ self.components.T).astype(np.float32)


@dataclass
class Fooled:
    """The smallest perturbation on a grid of sizes (max-norm) that changes the answer."""

    original_probabilities: np.ndarray  # (10,)
    adversarial: np.ndarray             # (28, 28) in [0, 1]
    perturbation: np.ndarray            # adversarial - original, each |value| <= epsilon
    probabilities: np.ndarray           # (10,) at the adversarial image
    epsilon: float
    flipped: bool
    method: str                         # "FGSM" or "iterative FGSM (k steps)"
    original_prediction: int = 0
    prediction: int = 0
    grid: list[float] = field(default_factory=list)         # the sizes tried
    flipped_at: list[bool] = field(default_factory=list)    # per size: did any method flip


@dataclass
class DeadUnits:
    name: str
    total: int
    dead: int
    indices: list[int]


@dataclass
class FirstLayer:
    kind: str                           # "dense" or "conv"
    weights: np.ndarray                 # dense (units, 28, 28); conv (filters, k, k)
    norms: np.ndarray                   # (units,)


# ---- attributions -----------------------------------------------------------------

def saliency(model: Classifier, image: np.ndarray, target: int,
             versus: int | None = None) -> Attribution:
    """The gradient of the target's logit (minus versus's) with respect to the pixels."""
    digit, weights = _digit(image), _class_weights(target, versus)
    logits, gradient = model.input_gradient(digit[None], weights)
    return Attribution("saliency", target, versus, int(np.argmax(logits[0])),
                       gradient[0].astype(np.float32), float(logits[0] @ weights))


def integrated_gradients(model: Classifier, image: np.ndarray, target: int, *,
                         steps: int = 32, baseline: np.ndarray | None = None,
                         versus: int | None = None, tolerance: float = IG_TOLERANCE,
                         max_steps: int = IG_MAX_STEPS) -> Attribution:
    """(digit - baseline) times the gradient averaged along the straight path between
    them, by the trapezoid rule over `steps` intervals (all points in one call). The
    values add up to score - baseline_score up to the rule's error, `completeness_gap`;
    while that is above `tolerance` the intervals are halved (one more call for the
    midpoints), up to `max_steps`: a ReLU network's gradient jumps along the path, so
    some digits need more than 32 steps for 1%. `steps` holds the number used."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    digit, weights = _digit(image), _class_weights(target, versus)
    start = np.zeros_like(digit) if baseline is None else _digit(baseline)
    alphas = np.linspace(0.0, 1.0, steps + 1)
    scores, gradients = _along_path(model, start, digit, alphas, weights)
    while True:
        rule = np.full(steps + 1, 1.0 / steps)
        rule[[0, -1]] /= 2
        values = (digit - start).astype(np.float64) * np.tensordot(rule, gradients, axes=1)
        score, baseline_score = float(scores[-1]), float(scores[0])
        gap = completeness_gap(values, score, baseline_score)
        if gap <= tolerance or 2 * steps > max_steps:
            break
        middles = (np.arange(steps) + 0.5) / steps
        new_scores, new_gradients = _along_path(model, start, digit, middles, weights)
        scores = _interleave(scores, new_scores)
        gradients = _interleave(gradients, new_gradients)
        steps *= 2
    predicted = int(np.argmax(_logits(model, digit[None])[0]))
    return Attribution("integrated gradients", target, versus, predicted,
                       values.astype(np.float32), score, baseline_score, gap, steps)


def _along_path(model: Classifier, start: np.ndarray, digit: np.ndarray,
                alphas: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and input gradients (float64) at start + alpha * (digit - start)."""
    path = (start + alphas[:, None, None] * (digit - start)).astype(digit.dtype)
    path[alphas == 1.0] = digit         # exactly the digit, not rounded on the way
    logits, gradients = model.input_gradient(path, weights)
    return logits.astype(np.float64) @ weights, gradients.astype(np.float64)


def _interleave(evens: np.ndarray, odds: np.ndarray) -> np.ndarray:
    """evens[0], odds[0], evens[1], ..., evens[-1]: points of a path with its midpoints."""
    merged = np.empty((len(evens) + len(odds), *evens.shape[1:]), evens.dtype)
    merged[0::2], merged[1::2] = evens, odds
    return merged


def completeness_gap(values: np.ndarray, score: float, baseline_score: float) -> float:
    difference = score - baseline_score
    return abs(float(np.sum(values)) - difference) / max(abs(difference), 1e-12)


def occlusion(model: Classifier, image: np.ndarray, target: int, *, patch: int = 4,
              stride: int = 2, fill: float = 0.0, versus: int | None = None
              ) -> Attribution:
    """How far the score drops when a patch x patch square is set to `fill`, for every
    square `stride` apart (the last flush with the edge), averaged per pixel over the
    squares that cover it. One forward call for the digit and all its occlusions."""
    if not 1 <= patch <= SIDE or stride < 1:
        raise ValueError(f"patch must be in [1, {SIDE}] and stride at least 1, got "
                         f"{patch} and {stride}")
    digit, weights = _digit(image), _class_weights(target, versus)
    corners = patch_corners(patch, stride)
    squares = [(top, left) for top in corners for left in corners]
    batch = np.repeat(digit[None], len(squares) + 1, axis=0)        # the digit first
    for index, (top, left) in enumerate(squares, start=1):
        batch[index, top:top + patch, left:left + patch] = fill
    logits = _logits(model, batch)
    scores = logits.astype(np.float64) @ weights
    total, count = np.zeros((SIDE, SIDE)), np.zeros((SIDE, SIDE))
    for drop, (top, left) in zip(scores[0] - scores[1:], squares):
        total[top:top + patch, left:left + patch] += drop
        count[top:top + patch, left:left + patch] += 1
    return Attribution("occlusion", target, versus, int(np.argmax(logits[0])),
                       (total / count).astype(np.float32), float(scores[0]))


def patch_corners(patch: int, stride: int) -> list[int]:
    """Where squares start along one side, so that every pixel is covered."""
    corners = list(range(0, SIDE - patch + 1, stride))
    if corners[-1] != SIDE - patch:
        corners.append(SIDE - patch)
    return corners


METHODS = {"saliency": saliency, "integrated-gradients": integrated_gradients,
           "occlusion": occlusion}


def explain(model: Classifier, image: np.ndarray, method: str, target: int | None = None
            ) -> Attribution:
    """`method` (a METHODS key) for `target`, by default the predicted digit."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if target is None:
        target = int(np.argmax(_logits(model, _digit(image)[None])[0]))
    return METHODS[method](model, image, target)


def compare_engines(model_a: Classifier, model_b: Classifier, image: np.ndarray,
                    target: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Saliency of the same digit by two models (one copied from the other across
    engines): both maps and their largest difference."""
    values_a = saliency(model_a, image, target).values
    values_b = saliency(model_b, image, target).values
    return values_a, values_b, float(np.max(np.abs(values_a - values_b)))


# ---- what a class or unit responds to --------------------------------------------

def activation_maximisation(model: Classifier, *, target: int, layer: int = -1,
                            start: str | np.ndarray = "blank", steps: int = 48,
                            step_size: float = 0.25, l2: float = 0.05, blur: float = 1.0
                            ) -> Dream:
    """Gradient ascent on the pixels (kept in [0, 1]) for the target class's logit, or
    for unit `target` of layer `layer` (a conv or pool unit is a channel: its mean).

    Each step moves along the gradient blurred by `blur` pixels (a Gaussian) and pulled
    towards black by `l2`, which keeps the picture readable; step sizes from
    `step_size` (in pixel values per step) down by halves are tried at once and the best
    that raises the score is taken. When none does, the plain gradient is tried down
    to tiny steps, so every step raises the score; when even that fails the ascent has
    stopped at a maximum within the box, and ends (`converged`)."""
    image = _start_image(start).astype(np.float32)
    probe = model.layer_outputs(image[None])
    if not -len(probe) <= layer < len(probe):
        raise ValueError(f"layer must index one of the {len(probe)} layer outputs, "
                         f"got {layer}")
    entry = probe[layer]
    weights = _unit_weights(entry.values.shape[1:], target)
    values, gradient = model.input_gradient(image[None], weights, layer=layer)
    score = _weighted_sums(values, weights)[0]
    scores, converged = [score], False
    blurring = _blur_matrix(blur)
    sizes = step_size * 0.5 ** np.arange(DREAM_STEP_HALVINGS)
    for _ in range(steps):
        smooth = blurring @ gradient[0].astype(np.float64) @ blurring.T
        direction = smooth / max(float(np.abs(smooth).max()), 1e-12) - l2 * image
        found = _best_step(model, image, direction, sizes, weights, layer, score)
        if found is None:
            plain = gradient[0] / max(float(np.abs(gradient[0]).max()), 1e-12)
            tiny = step_size * 0.5 ** np.arange(DREAM_FALLBACK_HALVINGS)
            found = _best_step(model, image, plain, tiny, weights, layer, score)
        if found is None:
            converged = True
            break
        image, gradient, score = found
        scores.append(score)
    return Dream(image.astype(np.float32), scores, target, layer % len(probe), entry.name,
                 converged)


def _best_step(model: Classifier, image: np.ndarray, direction: np.ndarray,
               sizes: np.ndarray, weights: np.ndarray, layer: int, score: float
               ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(image, its gradient, its score) of the best candidate step that raises the
    score, or None."""
    candidates = np.clip(image + sizes[:, None, None] * direction, 0.0, 1.0
                         ).astype(np.float32)                       # what the model sees
    values, gradients = model.input_gradient(candidates, weights, layer=layer)
    candidate_scores = _weighted_sums(values, weights)
    best = int(np.argmax(candidate_scores))
    if not candidate_scores[best] > score:
        return None
    return candidates[best], gradients[best:best + 1], float(candidate_scores[best])


def _unit_weights(shape: tuple[int, ...], target: int) -> np.ndarray:
    """Weights picking unit `target` (the last axis); a map's channel by its mean."""
    if not 0 <= target < shape[-1]:
        raise ValueError(f"target must be a unit from 0 to {shape[-1] - 1}, got {target}")
    weights = np.zeros(shape, np.float32)
    weights[..., target] = 1.0 / math.prod(shape[:-1])
    return weights


def _weighted_sums(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    rows = (values.astype(np.float64) * weights).reshape(len(values), -1)
    return rows.sum(axis=1)


def _start_image(start: str | np.ndarray) -> np.ndarray:
    if isinstance(start, np.ndarray):
        return _digit(start).astype(np.float64)
    if start == "blank":
        return np.zeros((SIDE, SIDE))
    if start == "mean":
        from engine.data import load_mnist
        return load_mnist().train_images.mean(axis=0) / 255.0
    raise ValueError(f"start must be 'blank', 'mean' or an image, got {start!r}")


def _blur_matrix(sigma: float) -> np.ndarray:
    """B with B @ image @ B.T a Gaussian blur of `sigma` pixels (identity for 0); rows
    sum to one, so a flat image stays flat. Symmetric and positive definite, so a
    blurred gradient still points uphill."""
    if sigma <= 0:
        return np.eye(SIDE)
    offsets = np.arange(SIDE)[:, None] - np.arange(SIDE)[None, :]
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum(axis=1, keepdims=True)


# ---- the hidden space, dead units, the first layer --------------------------------

def hidden_space(model: Classifier, images: np.ndarray, labels: np.ndarray, *,
                 layer: int | None = None) -> HiddenMap:
    """PCA (NumPy's SVD, see `principal_axes`) of `layer`'s outputs (default: the last
    hidden layer, or the logits of a network without one) over `images`."""
    rows, logits, name = [], [], ""
    for start in range(0, len(images), OUTPUTS_CHUNK):
        outputs = model.layer_outputs(images[start:start + OUTPUTS_CHUNK])
        chosen = outputs[_hidden_index(len(outputs), layer)]
        rows.append(chosen.values.reshape(len(chosen.values), -1))
        logits.append(outputs[-1].values)
        name = chosen.name
    values = np.concatenate(rows).astype(np.float64)                # (n, d)
    mean = values.mean(axis=0)
    centred = values - mean
    components, variances = principal_axes(centred)
    explained = variances[:2] / max(float(np.sum(variances)), 1e-300)
    return HiddenMap((centred @ components.T).astype(np.float32), mean, components,
                     explained, np.asarray(labels), np.argmax(np.concatenate(logits), 1),
                     name)


def principal_axes(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the first two principal axes (2, d), every axis's sum of squares), by SVD.
    With more rows than columns the SVD is of the (d, d) scatter matrix X^T X, whose
    singular vectors are X's right ones and whose singular values are X's squared: a
    third of the time of X's own for 5,000 x 800 (measured). Each axis's sign is fixed
    so that its largest loading is positive: the map does not flip between runs."""
    count, width = centred.shape
    # One BLAS thread, as the engines inspect: with two spinning for each other on the
    # busy 2-core machine, the SVD of 800 x 800 took 11.7 s against 0.9 s (measured).
    with training_threads():
        if count >= width:
            _, squares, right = np.linalg.svd(centred.T @ centred)
        else:
            _, singular, right = np.linalg.svd(centred, full_matrices=False)
            squares = singular ** 2
    axes = right[:2].copy()
    largest = np.argmax(np.abs(axes), axis=1)
    axes *= np.sign(axes[np.arange(len(axes)), largest])[:, None]
    return axes, squares


def _hidden_index(count: int, layer: int | None) -> int:
    if layer is None:
        return max(count - 2, 0)
    if not -count <= layer < count:
        raise ValueError(f"layer must index one of the {count} layer outputs, got {layer}")
    return layer % count


def dead_units(model: Classifier, images: np.ndarray) -> list[DeadUnits]:
    """Per ReLU layer, the units (a conv's channels) whose output is <= 0 on every one
    of `images`."""
    relu_dense = model.config.activation == "relu"
    highest: list[np.ndarray] | None = None
    names: list[str] = []
    for start in range(0, len(images), OUTPUTS_CHUNK):
        outputs = [entry for entry in model.layer_outputs(images[start:start + OUTPUTS_CHUNK])
                   if entry.kind == "conv" or (entry.kind == "dense" and relu_dense)]
        peaks = [entry.values.reshape(-1, entry.values.shape[-1]).max(axis=0)
                 for entry in outputs]
        names = [entry.name for entry in outputs]
        highest = peaks if highest is None else [np.maximum(a, b)
                                                 for a, b in zip(highest, peaks)]
    return [DeadUnits(name, len(peak), int(np.sum(peak <= 0)),
                      np.flatnonzero(peak <= 0).tolist())
            for name, peak in zip(names, highest or [])]


def first_layer(model: Classifier) -> FirstLayer:
    """What each first-layer unit looks for: a dense unit's 784 weights as a 28 x 28
    picture, or a conv filter's kernel (its only input channel)."""
    kernel = np.asarray(model.get_weights()[0])
    if kernel.ndim == 4:                                   # (k, k, 1, filters)
        weights = np.transpose(kernel[:, :, 0, :], (2, 0, 1))
        kind = "conv"
    else:                                                   # (784, units)
        weights = kernel.T.reshape(-1, SIDE, SIDE)
        kind = "dense"
    norms = np.sqrt(np.sum(weights.reshape(len(weights), -1) ** 2, axis=1))
    return FirstLayer(kind, weights.astype(np.float32), norms.astype(np.float32))


# ---- fooling it -------------------------------------------------------------------

def fooling(model: Classifier, image: np.ndarray, *, target: int | None = None,
            epsilon_max: float = 0.3, steps: int = 10, iterations: int = 10) -> Fooled:
    """The smallest epsilon among `steps` evenly spaced sizes up to `epsilon_max` at
    which FGSM (one step of epsilon along the sign of the loss gradient) or iterative
    FGSM (`iterations` steps of epsilon / 4, kept within epsilon of the digit) changes
    the answer: to any other digit, or to `target`. Every size in one batched call per
    step."""
    if not 0 < epsilon_max <= 1 or steps < 1:
        raise ValueError(f"epsilon_max must be in (0, 1] and steps at least 1, got "
                         f"{epsilon_max} and {steps}")
    digit = _digit(image)
    original = _softmax(_logits(model, digit[None]))[0]
    predicted = int(np.argmax(original))
    if target is not None and (not 0 <= target < NUM_CLASSES or target == predicted):
        raise ValueError(f"target must be a digit other than the prediction ({predicted}), "
                         f"got {target}")
    grid = epsilon_max * np.arange(1, steps + 1) / steps            # (steps,)
    radius = grid[:, None, None].astype(np.float32)
    one_step = _attack_step(model, np.repeat(digit[None], steps, 0), radius, digit,
                            radius, predicted, target)
    iterated = np.repeat(digit[None], steps, 0)
    for _ in range(iterations):
        iterated = _attack_step(model, iterated, radius / 4, digit, radius, predicted, target)
    attempts = {"FGSM": one_step, f"iterative FGSM ({iterations} steps)": iterated}
    flips = {method: _flips(_softmax(_logits(model, batch)), predicted, target)
             for method, batch in attempts.items()}
    flipped_at = np.logical_or(*flips.values())
    if flipped_at.any():
        size = int(np.argmax(flipped_at))
        method = next(name for name, flip in flips.items() if flip[size])
    else:
        size, method = steps - 1, f"iterative FGSM ({iterations} steps)"
    adversarial = attempts[method][size]
    probabilities = _softmax(_logits(model, adversarial[None]))[0]
    return Fooled(original, adversarial, adversarial - digit, probabilities,
                  float(grid[size]), bool(flipped_at.any()), method, predicted,
                  int(np.argmax(probabilities)), grid.tolist(), flipped_at.tolist())


def _attack_step(model: Classifier, batch: np.ndarray, size: np.ndarray, digit: np.ndarray,
                 radius: np.ndarray, predicted: int, target: int | None) -> np.ndarray:
    """One signed-gradient step per image up the loss of `predicted` (or down the loss
    of `target`), kept within `radius` of the digit and in [0, 1]."""
    logits = _logits(model, batch)
    probabilities = _softmax(logits)
    # d cross-entropy / d logits is p - onehot: raise the predicted digit's loss, or
    # lower the target's (the gradient of -CE(target) is onehot - p).
    if target is None:
        weights = probabilities - np.eye(NUM_CLASSES)[predicted]
    else:
        weights = np.eye(NUM_CLASSES)[target] - probabilities
    _, gradient = model.input_gradient(batch, weights.astype(np.float32))
    moved = batch + size * np.sign(gradient)
    moved = np.clip(moved, digit - radius, digit + radius)
    return np.clip(moved, 0.0, 1.0).astype(np.float32)


def _flips(probabilities: np.ndarray, predicted: int, target: int | None) -> np.ndarray:
    answers = np.argmax(probabilities, axis=1)
    return answers != predicted if target is None else answers == target


# ---- small helpers ---------------------------------------------------------------

def _digit(image: np.ndarray) -> np.ndarray:
    """(28, 28) float32 in [0, 1] (float64 kept, for gradient checks)."""
    image = np.asarray(image)
    if image.ndim != 2 or image.shape != (SIDE, SIDE):
        raise ValueError(f"expected one (28, 28) image, got shape {image.shape}")
    if image.dtype == np.float64:
        return image.copy()
    return as_model_input(image)[0].copy()


def _class_weights(target: int, versus: int | None) -> np.ndarray:
    """Weights on the logits: the target's, minus versus's ("why 7 and not 1")."""
    for name, digit in (("target", target), ("versus", versus)):
        if digit is not None and not (isinstance(digit, (int, np.integer))
                                      and 0 <= digit < NUM_CLASSES):
            raise ValueError(f"{name} must be a digit from 0 to 9, got {digit!r}")
    if versus is not None and versus == target:
        raise ValueError(f"versus must differ from the target ({target})")
    weights = np.zeros(NUM_CLASSES)
    weights[target] = 1.0
    if versus is not None:
        weights[versus] = -1.0
    return weights


def _logits(model: Classifier, images: np.ndarray) -> np.ndarray:
    """The logits, by `layer_outputs`: the same work for these small networks, and run
    the way an engine runs an inspection (the NumPy engine on one BLAS thread)."""
    return model.layer_outputs(images)[-1].values


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
