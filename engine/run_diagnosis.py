"""What went wrong (or right) in a finished run, in plain words, from its history alone.

Each rule has one threshold, named here, and its own test on a real run that shows it
(tests/engine/test_diagnosis.py). The rules look at the epochs' losses and accuracies
as the engines record them; validation figures are used where the run had a validation
split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.config import TrainConfig
from engine.training import History

CHANCE_ACCURACY = 0.2        # at most this: the network guesses (10 classes: 0.1)
EXPLODED_FACTOR = 3.0        # a loss this many times the first epoch's: it blew up
ROSE_FRACTION = 0.10         # the last loss this much above the run's best: it rose
FLAT_FRACTION = 0.05         # the loss fell by less than this share over the run: flat
FLAT_MIN_LOSS = 0.5          # ... while still above this (a converged run is flat too)
OVERFIT_GAP = 0.05           # training accuracy this far above validation: overfitting
UNDERFIT_GAP = 0.02          # validation this far above training: regularisation at work
HIGH_RATE = 0.1              # a flat loss at this rate or above: stuck, not too slow


@dataclass(frozen=True)
class Finding:
    """One diagnosis: `kind` names the rule, `severity` is "problem" or "note"."""

    kind: str
    severity: str
    text: str


def diagnose(history: History, config: TrainConfig) -> list[Finding]:
    """Findings for a run, problems first; one "fine" note when nothing is wrong."""
    records = [record for record in history.epochs if record.fraction == 1.0] or \
        history.epochs
    if not records:
        return []
    rate = config.learning_rate
    losses = [record.train_loss for record in records]
    last = records[-1]
    findings: list[Finding] = []
    exploded = history.status == "diverged" or any(
        not math.isfinite(loss) or loss > EXPLODED_FACTOR * losses[0] for loss in losses[1:])
    if exploded:
        findings.append(Finding("exploded", "problem", (
            f"The loss exploded: each step overshot. The learning rate ({rate:g}) is too "
            f"high for this network and optimizer; try {rate / 10:g}.")))
    elif len(losses) >= 2 and losses[-1] > (1 + ROSE_FRACTION) * min(losses):
        exploded = True         # the same cause, told with the numbers that show it
        findings.append(Finding("rose", "problem", (
            f"The training loss rose from {min(losses):.3f} to {losses[-1]:.3f}: the steps "
            f"are too large late in the run. Lower the learning rate ({rate:g}) or use a "
            "schedule that decays it (cosine).")))
    accuracy = last.val_accuracy if last.val_accuracy is not None else last.train_accuracy
    if accuracy <= CHANCE_ACCURACY:
        findings.append(Finding("chance", "problem", (
            f"Accuracy is {accuracy:.1%}, about what guessing scores (10%): the network "
            "has learnt next to nothing.")))
    if not exploded and len(losses) >= 2 and losses[-1] > FLAT_MIN_LOSS and \
            losses[0] - losses[-1] < FLAT_FRACTION * losses[0]:
        advice = (f"at {rate:g} the network may be stuck bouncing around: try {rate / 10:g}"
                  if rate >= HIGH_RATE else
                  f"the steps at {rate:g} may be too small: try {rate * 10:g}")
        findings.append(Finding("flat", "problem", (
            f"The loss hardly moved ({losses[0]:.3f} to {losses[-1]:.3f}): {advice}, and "
            "look for dead units (Inside, Dead units).")))
    if last.val_accuracy is not None and not exploded:
        gap = last.train_accuracy - last.val_accuracy
        if gap >= OVERFIT_GAP:
            findings.append(Finding("overfitting", "problem", (
                f"Training accuracy ({last.train_accuracy:.1%}) is far above validation "
                f"({last.val_accuracy:.1%}): the network learns the training images by "
                "heart. More training images, dropout, L2 or augmentation, or fewer "
                "epochs, bring the two together.")))
        elif -gap >= UNDERFIT_GAP and (config.dropout > 0 or config.augmentation != "none"):
            findings.append(Finding("regularised", "note", (
                f"Validation ({last.val_accuracy:.1%}) is above training "
                f"({last.train_accuracy:.1%}): not a bug. Training accuracy is measured "
                "with dropout and augmentation at work, which make the training images "
                "harder; validation sees the network whole.")))
    if not any(finding.severity == "problem" for finding in findings):
        findings.insert(0, Finding("fine", "note", (
            f"No problem found: the loss fell from {losses[0]:.3f} to {losses[-1]:.3f} "
            f"and accuracy reached {accuracy:.1%}.")))
    return findings
