"""Guided lessons: steps with a button that sets the sidebar and opens the right page, and a
check that notices when the learner has done the step (from what the session holds:
finished runs, the Inside views seen, the Compare page's results).

A check returns a sentence saying what was noticed ("your run reached 97.1%: done"), or
None while the step is still to do. Checks only read session state, so a lesson's progress
survives page switches and the learner can do the steps in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from ui import state, visitors

INSIDE_SEEN = "inside_seen"       # set of (view, digit source) the Inside page has drawn
DONE = "lessons_done"             # {lesson number: {step index: what was noticed}}
CURRENT = "lessons_current"       # the lesson last open on the page

Check = Callable[[], "str | None"]


@dataclass(frozen=True)
class Step:
    text: str
    check: Check
    button: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)   # sidebar values to set
    page: str | None = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Lesson:
    title: str
    intro: str
    steps: tuple[Step, ...]
    outro: str


# ---- what the checks read ------------------------------------------------------------

def _runs() -> list[dict[str, Any]]:
    return st.session_state.get(state.RUN_HISTORY, [])


def _matching_runs(**wanted: Any) -> list[dict[str, Any]]:
    """Finished runs whose config holds every `wanted` value."""
    return [run for run in _runs()
            if all(getattr(run["config"], name) == value for name, value in wanted.items())]


def _last_epoch(run: dict[str, Any]) -> Any:
    return run["history"].epochs[-1] if run["history"].epochs else None


def _gap(run: dict[str, Any]) -> float | None:
    """Training minus validation accuracy after the last epoch."""
    last = _last_epoch(run)
    if last is None or last.val_accuracy is None:
        return None
    return last.train_accuracy - last.val_accuracy


def _seen(view: str, source: str | None = None) -> bool:
    return any(seen_view == view and (source is None or seen_source == source)
               for seen_view, seen_source in st.session_state.get(INSIDE_SEEN, set()))


def note_inside_view(view: str, source: str) -> None:
    """The Inside page drew `view` for a digit from `source` ("test" or "drawn")."""
    st.session_state.setdefault(INSIDE_SEEN, set()).add((view, source))


# ---- lesson 1: what a neuron looks for -------------------------------------------------

def _looked_at_first_layer() -> str | None:
    return "You looked at the first layer's units: done." if _seen("first") else None


def _looked_at_own_digit() -> str | None:
    if _seen("first", "drawn") or _seen("layers", "drawn"):
        return "You saw the network respond to your own drawing: done."
    return None


# ---- lesson 2: the learning rate -------------------------------------------------------

RATE_BASE = {"engine": "numpy", "architecture": "mlp", "hidden_sizes": (256, 128),
             "optimizer": "sgd", "lr_schedule": "constant", "batch_size": 64, "epochs": 3,
             "train_size": 12_000, "validation_fraction": 0.1, "dropout": 0.0, "l2": 0.0,
             "augmentation": "none"}
RATES = {"low": 0.001, "right": 0.1, "high": 1.0}


def _rate_run(rate: float) -> dict[str, Any] | None:
    runs = _matching_runs(optimizer="sgd", learning_rate=rate, hidden_sizes=(256, 128))
    return runs[-1] if runs else None


def _rate_check(which: str) -> Check:
    def check() -> str | None:
        run = _rate_run(RATES[which])
        if run is None:
            return None
        last = _last_epoch(run)
        if which == "high":
            if run["status"] != "diverged":
                return None
            return "Your run diverged, and the Train page said so: done."
        accuracy = run["test_accuracy"]
        shown = f"{accuracy:.1%}" if accuracy is not None else \
            f"{last.val_accuracy:.1%} on validation"
        return f"Your run at {RATES[which]:g} reached {shown}: done."
    return check


COMPARE_SEEN = "compare_seen"      # the Compare page was opened in this session


def _compared_rates() -> str | None:
    runs = [_rate_run(rate) for rate in RATES.values()]
    if all(run is not None for run in runs) and st.session_state.get(COMPARE_SEEN):
        return "You overlaid the three runs on Compare: done."
    return None


# ---- lesson 3: overfitting -------------------------------------------------------------

OVERFIT_BASE = {"engine": "numpy", "architecture": "mlp", "hidden_sizes": (512, 512),
                "optimizer": "adam", "learning_rate": 0.001, "lr_schedule": "constant",
                "batch_size": 64, "epochs": 30, "train_size": 1000,
                "validation_fraction": 0.2, "dropout": 0.0, "l2": 0.0, "augmentation": "none"}
REGULARISED = {"dropout": 0.5, "augmentation": "light"}
OVERFIT_GAP = 0.05        # training this far above validation is overfitting


def _overfit_runs(**extra: Any) -> list[dict[str, Any]]:
    wanted = {name: OVERFIT_BASE[name] for name in ("hidden_sizes", "train_size", "epochs")}
    return _matching_runs(**wanted, **extra)


def _overfitted() -> str | None:
    for run in reversed(_overfit_runs(dropout=0.0, augmentation="none")):
        gap = _gap(run)
        if gap is not None and gap >= OVERFIT_GAP:
            return (f"Training reached {_last_epoch(run).train_accuracy:.1%}, validation "
                    f"only {_last_epoch(run).val_accuracy:.1%}: a gap of {gap:.1%}. That is "
                    "overfitting: done.")
    return None


def _regularised() -> str | None:
    before = [_gap(run) for run in _overfit_runs(dropout=0.0, augmentation="none")]
    before = [gap for gap in before if gap is not None]
    for run in reversed(_overfit_runs(**REGULARISED)):
        gap = _gap(run)
        if gap is not None and before and gap <= min(before) / 2:
            return (f"With dropout and augmentation the gap is {gap:+.1%} (it was "
                    f"{min(before):.1%}): the curves came together: done.")
    return None


# ---- lesson 4: preprocessing -----------------------------------------------------------

THICK_PEN = 30


def _drew_awkward_digit() -> str | None:
    drawn = st.session_state.get(state.LAST_DIGIT)
    stats = getattr(drawn, "drawn_stats", None)
    if stats is None:
        return None
    if stats["stroke"] >= THICK_PEN and stats["size"] <= 0.4 and stats["offset"] >= 0.15:
        return (f"A small ({stats['size']:.0%} of the canvas), off-centre, thick "
                f"({stats['stroke']} px) digit: look at how each step fixed it: done.")
    return None


# ---- lesson 5: same maths, two engines -------------------------------------------------

ENGINES_CONFIG = {"engine": "numpy", "architecture": "mlp", "hidden_sizes": (128,),
                  "optimizer": "adam", "learning_rate": 0.001, "epochs": 2,
                  "train_size": 6000, "validation_fraction": 0.1, "augmentation": "none"}


def _trained_both() -> str | None:
    job = st.session_state.get(state.COMPARE_JOB)
    if job is None or not job.finished:
        return None
    if all(sub.snapshot().history.epochs for sub in job.jobs.values()):
        return "Both engines trained the same config on the same batches: done."
    return None


def _copied_weights() -> str | None:
    kept = st.session_state.get("compare_copy_report")
    if kept is None:
        return None
    report = kept[1]
    if report["agreement"] == 1.0:
        return (f"Same weights, same predictions on every test digit (largest probability "
                f"gap {report['max_probability_gap']:.0e}): done.")
    return None


LESSONS: dict[int, Lesson] = {
    1: Lesson(
        "What a neuron looks for",
        "A unit of the first layer multiplies each of the 784 pixels by a weight and adds "
        "them up. Its weights, drawn as a 28 x 28 picture, show the pattern it looks for.",
        (Step("Open **Inside** on its *First layer* view: red pixels excite a unit, blue "
              "ones hold it back. Sort by *the units this digit excites most*.",
              _looked_at_first_layer, "Open the first layer", page="pages/4_inside.py",
              query={"view": "first"}),
         Step("Draw a digit on **Draw & test**, press *Look inside the network*, and look "
              "at which units your own drawing excites (First layer or Layer by layer).",
              _looked_at_own_digit, "Draw a digit", page="pages/3_draw.py")),
        "Units are not 'the 7 detector': each responds to strokes in some places, and the "
        "next layers combine them."),
    2: Lesson(
        "Learning rate: too low, right, too high",
        "The learning rate is the size of each step down the loss. Three short runs of the "
        "same network with plain SGD show the three regimes.",
        (Step("Train at **0.001**: each step is tiny, and three epochs get nowhere near "
              "where they could.", _rate_check("low"), "Set up 0.001 and open Train",
              settings={**RATE_BASE, "learning_rate": RATES["low"]},
              page="pages/1_train.py"),
         Step("Train at **0.1**: fast and steady.", _rate_check("right"),
              "Set up 0.1 and open Train",
              settings={**RATE_BASE, "learning_rate": RATES["right"]},
              page="pages/1_train.py"),
         Step("Train at **1.0**: each step overshoots, the loss explodes within a few "
              "batches, and Train says the run diverged.", _rate_check("high"),
              "Set up 1.0 and open Train",
              settings={**RATE_BASE, "learning_rate": RATES["high"]},
              page="pages/1_train.py"),
         Step("Overlay the three under *Your runs in this session* on **Compare**.",
              _compared_rates, "Open Compare", page="pages/6_compare.py")),
        "Adam adapts each weight's step and forgives more, but it too diverges when the "
        "rate is far too large. The learning-rate finder on Train suggests a rate."),
    3: Lesson(
        "Overfitting, and what fights it",
        "A big network on few images can learn them by heart: training accuracy climbs to "
        "100% while validation stalls. Dropout and augmentation make memorising harder.",
        (Step("Train a 512-512 network on only **1,000 images** for 30 epochs: watch the "
              "training and validation curves part.", _overfitted,
              "Set up the big network and open Train", settings=OVERFIT_BASE,
              page="pages/1_train.py"),
         Step("Same network with **dropout 0.5** and **light augmentation**: the curves "
              "come together (validation may even run above training, because training "
              "is scored with dropout and augmentation at work).", _regularised,
              "Add dropout and augmentation", settings={**OVERFIT_BASE, **REGULARISED},
              page="pages/1_train.py")),
        "More data is the best cure; the shipped models train on 54,000 images."),
    4: Lesson(
        "Why preprocessing matters",
        "MNIST digits are centred by their centre of mass in a 28 x 28 box, about 20 pixels "
        "tall, with a stroke of 2-3 pixels. A drawing is rarely like that.",
        (Step(f"On **Draw & test**, set the stroke width to {THICK_PEN} or more and draw a "
              "**small** digit **near a corner**. Open *Preprocessing steps*: under each "
              "step, what the model reads if given that picture as it stands.",
              _drew_awkward_digit, "Open Draw & test", page="pages/3_draw.py"),),
        "Without cropping, scaling and centring, the same network reads such a digit "
        "wrongly; the steps turn it into what MNIST taught it."),
    5: Lesson(
        "Same maths, two engines",
        "The NumPy engine computes every forward and backward pass by hand; Keras builds "
        "the same network, differentiates it automatically and runs compiled kernels on "
        "all cores. Given the same weights, they compute the same function.",
        (Step("On **Compare**, press *Train both*: one config, both engines, the same seed "
              "and batch order.", _trained_both, "Set up and open Compare",
              settings=ENGINES_CONFIG, page="pages/6_compare.py"),
         Step("Press *Copy the weights across and compare*: one model's weights in the "
              "other engine give the same prediction for every test digit.",
              _copied_weights, "Open Compare", page="pages/6_compare.py")),
        "What Keras did for you: the gradients (no backward code), fused and compiled "
        "kernels, threads, and saving. What it hid: exactly what the NumPy engine shows."),
}


# ---- progress ------------------------------------------------------------------------

def progress(number: int) -> dict[int, str]:
    """What each done step of lesson `number` noticed; a step once done stays done."""
    done: dict[int, str] = st.session_state.setdefault(DONE, {}).setdefault(number, {})
    for index, step in enumerate(LESSONS[number].steps):
        if index not in done:
            noticed = step.check()
            if noticed:
                done[index] = noticed
    return done


def apply(step: Step) -> None:
    """Set the step's sidebar values and open its page."""
    if step.settings:
        state.settings().update(step.settings)
    if step.page:
        visitors.switch_page(step.page, **step.query)
