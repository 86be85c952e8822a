"""Train engine/novelty.py's digit/not-digit detector on tuning material, choose its threshold
on validation material, and write engine/detector/digit_detector.npz (atomically).

Digits: MNIST training rows 0-53,999 and generated handwriting of tuning fonts and seeds
(tests/support/lettering.py, tests/support/varied_digits.py). Not digits: letters (not the
digit-shaped ones) of the tuning and "extra-letters" fonts, scribbles, shapes and empty paper
of tuning seeds (tests/support/not_digits.py). Every generated picture is prepared as an
upload is. Validation: MNIST training rows 54,000-59,999, the same generators with other
tuning seeds, and letters and digits of the "validation" fonts, which no training sees. The
threshold is the highest score limit that flags at most 1% of the validation MNIST digits
and at most 1% of the validation handwriting (the targets allow 2% on held-out material).
Seeded: the material, the first weights and every batch come from seeds (float rounding may
still differ between machines).

    .venv/bin/python scripts/train_detector.py [--conv 16,32] [--hidden 64] [--epochs 12]
        [--distort] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data import load_mnist  # noqa: E402
from engine.novelty import DETECTOR_PATH, KERNEL, DigitDetector, save_detector  # noqa: E402
from engine.numpy_nn.blas import training_threads  # noqa: E402
from engine.numpy_nn.conv import Conv2D, Flatten, MaxPool2D, Reshape  # noqa: E402
from engine.numpy_nn.denormals import denormals_flushed  # noqa: E402
from engine.numpy_nn.layers import Dense, ReLU, he_uniform  # noqa: E402
from engine.numpy_nn.losses import SoftmaxCrossEntropy  # noqa: E402
from engine.numpy_nn.optimizers import Adam  # noqa: E402
from scripts.detector_material import Prepared, prepared_groups  # noqa: E402
from tests.support.not_digits import LETTERS  # noqa: E402

FIT_ROWS = 54_000        # MNIST training rows learned from; the rest are validation digits
# Scribbles are the hardest non-digits to learn (a short tangle can be a fair 2 or 7): more
# of them than of the other kinds. Letters of three more handwriting fonts ("extra-letters":
# trained on, never validated on) widen the hands the letters come in.
TRAIN_NOT_DIGITS = ([("not-digits", seed, 120, "tuning") for seed in range(1, 31)]
                    + [("scribbles", seed, 100, "tuning") for seed in range(31, 55)]
                    + [("letters", seed, 100, "extra-letters", LETTERS) for seed in range(1, 7)])
TRAIN_HANDWRITING = ([("lettering", seed, 12, "tuning") for seed in range(1, 13)]
                     + [("varied", seed, 12) for seed in range(1, 9)])
VALIDATION_NOT_DIGITS = [("not-digits", seed, 150, "tuning") for seed in range(90, 94)]
# Letters and digits in handwriting fonts the detector never trains on: how it meets an
# unseen hand (the tuning fonts' letters above are the training fonts').
VALIDATION_FONT_LETTERS = [("letters", seed, 150, "validation", LETTERS) for seed in (90, 91)]
VALIDATION_FONT_DIGITS = [("lettering", seed, 10, "validation") for seed in (90, 91)]
VALIDATION_HANDWRITING = ([("lettering", seed, 10, "tuning") for seed in range(90, 94)]
                          + [("varied", seed, 10) for seed in (90, 91)])
# Each batch: MNIST digits in turn, then pictures drawn from the generated pools; those are
# few, so drawn far more often than MNIST's, or the detector would learn MNIST's style.
# Scribbles (turned every way) get a pool of their own, so they do not crowd out letters.
BATCH = {"mnist": 64, "handwriting": 32, "not-digit": 32, "scribble": 32}
# Chosen on validation (docs/handwriting.md): two conv blocks catch a scribble's wobble
# that the MLP (no conv blocks, 256 hidden) missed.
CONV_FILTERS, HIDDEN, EPOCHS = (16, 32), 64, 12
DIGIT_FLAG_LIMIT = 0.01  # share of validation digits (each source) the threshold may flag


def jittered(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each picture shifted by up to 2 px each way: preparation centres by mass, so small
    shifts are what two preparations of one shape differ by."""
    out = np.empty_like(images)
    shifts = rng.integers(-2, 3, size=(len(images), 2))
    for index, (down, right) in enumerate(shifts):
        out[index] = np.roll(images[index], (down, right), axis=(0, 1))
    return out


def distorted(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each picture turned (up to 12 degrees), leaned (shear up to 0.25) and scaled (0.9 to
    1.1) about its centre: the letters of a font never trained on differ from the training
    fonts' by such changes, and digits get the same, so a change alone says nothing."""
    out = np.empty_like(images)
    centre = np.array([13.5, 13.5])
    for index, image in enumerate(images):
        angle = np.radians(rng.uniform(-12, 12))
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        lean = np.array([[1.0, 0.0], [rng.uniform(-0.25, 0.25), 1.0]])
        matrix = turn @ lean / rng.uniform(0.9, 1.1)        # output (row, col) -> input
        out[index] = ndimage.affine_transform(image, matrix, centre - matrix @ centre,
                                              order=1)
    return out


def pools(handwriting: Prepared, others: Prepared) -> dict[str, np.ndarray]:
    """The generated pools a batch draws from. Every scribble comes in all eight
    orientations (mirrored, turned): a scribble stays a scribble, and the detector otherwise
    learns the ones it saw by heart (99% of training scribbles flagged, 69% of validation
    ones)."""
    scribbles = others.images[others.kinds == "scribble"]
    return {"handwriting": handwriting.images,
            "not-digit": others.images[others.kinds != "scribble"],
            "scribble": np.concatenate([np.rot90(images, quarter, axes=(1, 2))
                                        for images in (scribbles, scribbles[:, :, ::-1])
                                        for quarter in range(4)])}


def build_layers(rng: np.random.Generator, conv_filters: tuple[int, ...], hidden: int
                 ) -> list:
    """The detector's layers with He-uniform kernels and zero biases: per conv block
    Conv 3x3 "same" -> MaxPool 2x2 -> ReLU (engine/novelty.py runs the same), then Dense
    -> ReLU -> Dense to 2 logits."""
    layers, channels, side = [], 1, 28
    if conv_filters:
        layers.append(Reshape((side, side, 1)))
    for index, filters in enumerate(conv_filters):
        kernel = he_uniform(rng, KERNEL * KERNEL * channels, filters)
        layers += [Conv2D(kernel.reshape(KERNEL, KERNEL, channels, filters).astype(np.float32),
                          np.zeros(filters, np.float32), input_gradient=index > 0),
                   MaxPool2D(), ReLU()]
        channels, side = filters, side // 2
    if conv_filters:
        layers.append(Flatten())
    features = side * side * channels
    return layers + [Dense(he_uniform(rng, features, hidden).astype(np.float32),
                           np.zeros(hidden, np.float32), input_gradient=bool(conv_filters)),
                     ReLU(),
                     Dense(he_uniform(rng, hidden, 2).astype(np.float32),
                           np.zeros(2, np.float32))]


def as_detector(layers: list, threshold: float, about: dict) -> DigitDetector:
    """The trained layers as engine/novelty.py's detector (copies of the weights)."""
    weights = [param.copy() for layer in layers for param in layer.params]
    conv_weights, head = weights[:-4], weights[-4:]
    return DigitDetector(*head, threshold=threshold, about=about,
                         conv_blocks=tuple(zip(conv_weights[::2], conv_weights[1::2])))


def train(digits: np.ndarray, generated: dict[str, np.ndarray], *, epochs: int,
          hidden: int, seed: int, conv_filters: tuple[int, ...] = (),
          distort: bool = False, learning_rate: float = 1e-3) -> list:
    """The detector's layers, trained on balanced batches with the NumPy engine's layers
    and Adam (cosine schedule)."""
    rng = np.random.default_rng(seed)
    layers = build_layers(rng, conv_filters, hidden)
    loss = SoftmaxCrossEntropy()
    optimizer = Adam(learning_rate)
    pairs = [pair for layer in layers for pair in zip(layer.params, layer.grads)]
    labels = np.repeat([1, 1, 0, 0], [BATCH[name] for name in ("mnist", "handwriting",
                                                              "not-digit", "scribble")])
    steps = len(digits) // BATCH["mnist"]

    def drawn(images: np.ndarray) -> np.ndarray:
        return distorted(images, rng) if distort else images

    for epoch in range(epochs):
        started, total = time.perf_counter(), 0.0
        order = rng.permutation(len(digits))
        optimizer.learning_rate = learning_rate * 0.5 * (1 + np.cos(np.pi * epoch / epochs))
        for step in range(steps):
            batch = np.concatenate([
                digits[order[step * BATCH["mnist"]:(step + 1) * BATCH["mnist"]]],
                *(jittered(drawn(generated[name][rng.integers(0, len(generated[name]),
                                                              BATCH[name])]), rng)
                  for name in ("handwriting", "not-digit", "scribble")),
            ])
            x = batch if conv_filters else batch.reshape(-1, 28 * 28)
            for layer in layers:
                x = layer.forward(x, True)
            total += loss.forward(x, labels)
            grad = loss.backward()
            for layer in reversed(layers):
                grad = layer.backward(grad)
                if grad is None:
                    break
            optimizer.step(pairs)
        print(f"epoch {epoch + 1}/{epochs}: loss {total / steps:.4f} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
    return layers


def rates(flagged: np.ndarray, material: Prepared) -> dict[str, float]:
    """Share flagged per kind and in all; pictures with no digit found count as flagged."""
    result = {}
    for kind in sorted(set(material.kinds.tolist()) | set(material.unfound)):
        mine = flagged[material.kinds == kind]
        missing = material.unfound.get(kind, 0)
        result[kind] = round(float((mine.sum() + missing) / (len(mine) + missing)), 4)
    everything = len(flagged) + sum(material.unfound.values())
    result["all"] = round(float((flagged.sum() + sum(material.unfound.values())) / everything),
                          4)
    return result


def choose_threshold(digit_scores: list[np.ndarray]) -> float:
    """The highest threshold flagging at most DIGIT_FLAG_LIMIT of each digit source."""
    return float(min(np.quantile(scores, DIGIT_FLAG_LIMIT) for scores in digit_scores))


def validation_rates(detector: DigitDetector, validation: dict[str, Prepared]
                     ) -> dict[str, dict[str, float]]:
    """Share flagged per kind of each validation set."""
    return {name: rates(~detector.digit_like(material.images), material)
            for name, material in validation.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--conv", default=",".join(map(str, CONV_FILTERS)),
                        help="filters of each conv block, e.g. 8,16; empty for an MLP")
    parser.add_argument("--hidden", type=int, default=HIDDEN)
    parser.add_argument("--distort", action=argparse.BooleanOptionalAction, default=False,
                        help="turn, lean and scale the generated pictures while training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=DETECTOR_PATH)
    args = parser.parse_args()
    conv_filters = tuple(int(filters) for filters in args.conv.split(",") if filters)

    started = time.perf_counter()
    groups = prepared_groups([TRAIN_NOT_DIGITS, TRAIN_HANDWRITING, VALIDATION_NOT_DIGITS,
                              VALIDATION_HANDWRITING, VALIDATION_FONT_LETTERS,
                              VALIDATION_FONT_DIGITS])
    (train_others, train_handwriting, validation_others, validation_handwriting,
     validation_font_letters, validation_font_digits) = groups
    print(f"{sum(len(group.images) for group in groups)} generated pictures prepared "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    mnist = load_mnist()
    scale = np.float32(1 / 255)
    digits = mnist.train_images[:FIT_ROWS].astype(np.float32) * scale
    validation_digits = mnist.train_images[FIT_ROWS:].astype(np.float32) * scale
    training_started = time.perf_counter()
    with training_threads(), denormals_flushed():
        layers = train(digits, pools(train_handwriting, train_others), epochs=args.epochs,
                       hidden=args.hidden, seed=args.seed, conv_filters=conv_filters,
                       distort=args.distort)
    training_seconds = time.perf_counter() - training_started
    detector = as_detector(layers, 0.0, {})
    threshold = choose_threshold([detector.scores(validation_digits),
                                  detector.scores(validation_handwriting.images)])
    detector = replace(detector, threshold=threshold)
    validation = validation_rates(detector, {
        "mnist rows 54000-59999": Prepared(validation_digits,
                                           np.full(len(validation_digits), "mnist"), {}),
        "handwriting": validation_handwriting,
        "not digits": validation_others,
        "letters of validation fonts": validation_font_letters,
        "digits of validation fonts": validation_font_digits,
    })
    about = {"made_by": "scripts/train_detector.py", "epochs": args.epochs,
             "conv_filters": list(conv_filters), "hidden": args.hidden,
             "distort": args.distort, "seed": args.seed,
             "mnist_fit_rows": FIT_ROWS,
             "train": [list(spec) for spec in TRAIN_NOT_DIGITS + TRAIN_HANDWRITING],
             "validation": [list(spec) for spec in VALIDATION_NOT_DIGITS
                            + VALIDATION_HANDWRITING + VALIDATION_FONT_LETTERS
                            + VALIDATION_FONT_DIGITS],
             "validation_flagged": validation}
    path = save_detector(replace(detector, about=about), args.output)
    print(f"threshold {threshold:.3f}; validation flagged: {validation}")
    print(f"trained in {training_seconds:.0f} s; wrote {path} in "
          f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
