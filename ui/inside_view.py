"""Parts of the Inside page: which digit to look at, and one view of the network at a time
(only the chosen view is computed, so a click costs one view's time)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import streamlit as st

from engine import explain
from ui import figures, inside_figures, state
from ui.active import ActiveModel

SOURCE_TEST, SOURCE_DRAWN = "A test digit", "Your last drawing or upload"
URL_READ = "inside_url_read"     # the link's ?index= was applied once
HIDDEN_SPACE_DIGITS = 5000
TOP_UNITS = 16


@dataclass(frozen=True)
class Digit:
    """The digit every view explains: 28 x 28 floats in [0, 1], light ink on black."""

    image: np.ndarray
    name: str                       # "test digit #1234", "your drawing", a file name
    label: int | None = None        # the true digit, when known
    test_index: int | None = None
    # A canvas drawing's size and offset (fractions of the canvas) and pen width (px),
    # for the lesson on preprocessing.
    drawn_stats: dict | None = None

    @property
    def source(self) -> str:
        return "test" if self.test_index is not None else "drawn"


class Subject(NamedTuple):
    """What every view is drawn for."""

    active: ActiveModel
    data: Any
    digit: Digit
    predicted: int


# ---- choosing the digit ---------------------------------------------------------------

def choose_digit(data, active: ActiveModel) -> Digit | None:
    """The picker at the top of the page; None (with a note) when there is no digit."""
    _read_url(data)
    source = st.radio("Digit", [SOURCE_TEST, SOURCE_DRAWN], horizontal=True, key="i_source",
                      label_visibility="collapsed")
    if source == SOURCE_DRAWN:
        st.query_params.pop("index", None)
        kept = st.session_state.get(state.LAST_DIGIT)
        if kept is None:
            st.info("Nothing drawn or uploaded yet in this session.", icon=":material/draw:")
            st.page_link("pages/3_draw.py", label="Draw a digit", icon=":material/draw:")
            return None
        if isinstance(kept, str):
            st.warning(f"Your last drawing cannot be read: {kept}",
                       icon=":material/search_off:")
            return None
        return kept
    labels = data.test_labels
    columns = st.columns([1, 1, 2], vertical_alignment="bottom")
    digit = columns[0].selectbox("True digit", list(range(10)), key="i_class")
    of_class = np.flatnonzero(labels == digit)
    nth = columns[1].number_input(f"Which one (of {len(of_class):,})", 1, len(of_class),
                                  key="i_nth", on_change=None)
    columns[2].button("Random misread", icon=":material/shuffle:", key="i_random",
                      on_click=_pick_misread, args=(data, active))
    index = int(of_class[min(int(nth), len(of_class)) - 1])
    st.query_params["index"] = str(index)
    return Digit(data.test_images[index].astype(np.float32) / 255.0, f"test digit #{index}",
                 int(labels[index]), index)


def _read_url(data) -> None:
    """Seed the picker from ?index=N once, when the visitor arrives with a link."""
    if "i_class" not in st.session_state:
        st.session_state["i_class"], st.session_state["i_nth"] = 7, 1
    if st.session_state.get(URL_READ):
        return
    st.session_state[URL_READ] = True
    text = st.query_params.get("index")
    if text is None:
        return
    if not text.isdigit() or int(text) >= len(data.test_labels):
        st.caption(f"Ignored ?index={text}: a test digit's number is 0 to "
                   f"{len(data.test_labels) - 1:,}.")
        return
    _select_test_digit(data, int(text))


def _select_test_digit(data, index: int) -> None:
    label = int(data.test_labels[index])
    st.session_state["i_source"] = SOURCE_TEST
    st.session_state["i_class"] = label
    st.session_state["i_nth"] = int(np.searchsorted(
        np.flatnonzero(data.test_labels == label), index)) + 1


def _pick_misread(data, active: ActiveModel) -> None:
    predictions = np.argmax(active.test_probabilities(data.test_images), axis=1)
    misread = np.flatnonzero(predictions != data.test_labels)
    if len(misread):
        _select_test_digit(data, int(np.random.default_rng().choice(misread)))


# ---- the digit and its reading ---------------------------------------------------------

def digit_card(digit: Digit, probabilities: np.ndarray) -> None:
    predicted = int(np.argmax(probabilities))
    picture, reading = st.columns([1, 3])
    picture.image(figures.tile_digits(digit.image[None], 1), width=140, clamp=True,
                  caption=digit.name)
    truth = f" · true digit **{digit.label}**" if digit.label is not None else ""
    verdict = "" if digit.label is None else (" ✓" if digit.label == predicted else " ✗")
    reading.markdown(f"Read as **{predicted}** ({probabilities[predicted]:.1%})"
                     f"{verdict}{truth}")
    reading.plotly_chart(figures.probability_bars(probabilities), key="i_bars",
                         width="stretch")


def class_picker(label: str, default: int, key: str, *, allow_none: bool = False):
    options = (["none"] if allow_none else []) + list(range(10))
    if key not in st.session_state or st.session_state.get(f"{key}_seed") != default:
        st.session_state[key] = "none" if allow_none else default
        st.session_state[f"{key}_seed"] = default
    value = st.selectbox(label, options, key=key)
    return None if value == "none" else int(value)


# ---- the views -------------------------------------------------------------------------

def _target_and_control(predicted: int, key: str) -> tuple[int, Any]:
    """The class a view explains (the prediction first) on the left; the right column
    for the view's own control."""
    left, right = st.columns(2)
    with left:
        target = class_picker("Digit", predicted, key)
    return target, right


def layers_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("Each layer turns the one before into a new list of numbers. Below, the "
               "units that respond most to this digit in every layer, and, for a dense "
               "network, which of them push which: a red line excites the next unit, a "
               "blue one holds it back.")
    outputs = active.model.layer_outputs(digit.image[None])
    path = _dense_path(active, outputs)
    if path is not None:
        st.plotly_chart(inside_figures.path_figure(*path), key="i_path", width="stretch")
    for number, output in enumerate(outputs[:-1]):
        values = output.values[0]
        if values.ndim == 3:
            maps = np.moveaxis(values, -1, 0)
            st.plotly_chart(inside_figures.unit_grid(
                maps, [f"map {k}" for k in range(len(maps))], signed=False,
                columns=min(16, len(maps)), title=output.name),
                key=f"i_layer_{number}", width="stretch")
        else:
            st.plotly_chart(inside_figures.unit_bars(values, top=TOP_UNITS,
                                                     title=f"{output.name}: the "
                                                     f"{min(TOP_UNITS, len(values))} most "
                                                     "active units"),
                            key=f"i_layer_{number}", width="stretch")


def _dense_path(active: ActiveModel, outputs) -> tuple | None:
    """Columns and contributions for path_figure: a dense network's top units per layer
    and, between them, activation x weight. None for a CNN (its maps show instead)."""
    if active.model.config.architecture != "mlp":
        return None
    kernels = active.model.get_weights()[0::2]
    top = 8
    columns, edges, previous = [], [], None
    for output, kernel in zip(outputs, kernels):
        values = output.values[0]
        chosen = np.argsort(values)[::-1][:top] if output.kind != "logits" else np.arange(10)
        if previous is not None:
            prior_units, prior_values = previous
            edges.append(prior_values[:, None] * kernel[np.ix_(prior_units, chosen)])
        label = "digit" if output.kind == "logits" else "unit"
        columns.append((output.name, values[chosen], [f"{label} {unit}" for unit in chosen]))
        previous = (chosen, values[chosen])
    return columns, edges


def first_layer_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    layer = explain.first_layer(active.model)
    response = active.model.layer_outputs(digit.image[None])[0].values[0]
    if layer.kind == "dense":
        st.caption("A first-layer unit multiplies every pixel by its weight and adds them "
                   "up: red pixels push it on, blue ones hold it back. So each picture is "
                   "the pattern the unit looks for.")
        order_by = st.radio("Show first", ["the units this digit excites most",
                                           "the largest weights"], horizontal=True,
                            key="i_first_order")
        strength = response if order_by.startswith("the units") else layer.norms
        order = np.argsort(strength)[::-1][:32]
        labels = [f"unit {unit} (responds {response[unit]:.2f})" for unit in order]
        st.plotly_chart(inside_figures.unit_grid(layer.weights[order], labels,
                                                 title="First-layer units as 28 x 28 images"),
                        key="i_first", width="stretch")
        return
    st.caption("Each filter is a small stamp slid over the digit; where the picture under "
               "it looks like the stamp, its response map lights up.")
    left, right = st.columns(2)
    labels = [f"filter {k}" for k in range(len(layer.weights))]
    left.plotly_chart(inside_figures.unit_grid(layer.weights, labels, title="Filters"),
                      key="i_filters", width="stretch")
    maps = np.moveaxis(response, -1, 0)
    right.plotly_chart(inside_figures.unit_grid(maps, labels, signed=False,
                                                title="Their responses to this digit"),
                       key="i_responses", width="stretch")


def saliency_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("How much a tiny change of each pixel would move the chosen digit's score: "
               "red pixels raise it, blue ones lower it. Pick a second digit to ask "
               "\"why this one and not that one?\".")
    left, right = st.columns(2)
    with left:
        target = class_picker("Why this digit", predicted, "i_sal_target")
    with right:
        versus = class_picker("and not", predicted, "i_sal_versus", allow_none=True)
    result = explain.saliency(active.model, digit.image, target, versus=versus)
    title = f"Saliency of {target}" + (f" minus {versus}" if versus is not None else "")
    st.plotly_chart(inside_figures.overlay(digit.image, result.values, title=title,
                                           colorbar_title="d score / d pixel"),
                    key="i_saliency", width="stretch")


def integrated_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("Fade the digit in from a black picture and add up, pixel by pixel, how the "
               "score grew on the way. Unlike saliency, the parts add up: together they "
               "are the whole difference between the digit's score and the black "
               "picture's (the check below).")
    target, right = _target_and_control(predicted, "i_ig_target")
    steps = right.select_slider("Steps", [32, 64, 128, 256], value=64, key="i_ig_steps")
    result = explain.integrated_gradients(active.model, digit.image, target, steps=steps)
    st.plotly_chart(inside_figures.overlay(digit.image, result.values,
                                           title=f"Integrated gradients for {target}"),
                    key="i_ig", width="stretch")
    total = float(np.sum(result.values))
    change = result.score - result.baseline_score
    columns = st.columns(3)
    columns[0].metric("Sum of the attributions", f"{total:.3f}")
    columns[1].metric("Score at the digit minus at black", f"{change:.3f}",
                      help=f"{result.score:.3f} - {result.baseline_score:.3f}")
    columns[2].metric("Gap", f"{result.completeness_gap:.2%}",
                      help=f"Completeness, after {result.steps} steps: more steps are taken "
                           "until the gap is under 1%.")


def occlusion_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("Hide one small square at a time and watch the score: where hiding costs "
               "the most (red), the network was looking.")
    target, right = _target_and_control(predicted, "i_occ_target")
    patch = right.select_slider("Square size (pixels)", [2, 4, 6, 8], value=4,
                                key="i_occ_patch")
    result = explain.occlusion(active.model, digit.image, target, patch=patch,
                               stride=max(1, patch // 2))
    st.plotly_chart(inside_figures.overlay(digit.image, result.values,
                                           title=f"Score drop of {target} when hidden",
                                           colorbar_title="score drop"),
                    key="i_occlusion", width="stretch")


def dream_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("Start from a blank (or an average) digit and change it, step by step, to "
               "raise one digit's score (or one hidden unit's output) as high as it goes; a "
               "gentle blur and a penalty on bright pixels keep the picture readable. What "
               "comes out is what the network takes for the essence of that digit or the "
               "pattern that unit waits for.")
    outputs = active.model.layer_outputs(digit.image[None])
    layers = list(range(len(outputs) - 1))
    what, detail, start_column = st.columns(3)
    kind = what.radio("Raise", ["a digit's score", "a hidden unit"], key="i_dream_kind")
    if kind == "a hidden unit" and layers:
        layer = detail.selectbox("Layer", layers, format_func=lambda i: outputs[i].name,
                                 key="i_dream_layer")
        units = outputs[layer].values.shape[-1]
        strongest = int(np.argmax(outputs[layer].values[0].reshape(-1, units).mean(axis=0)))
        target = int(detail.number_input(f"Unit (0-{units - 1}; this digit excites "
                                         f"{strongest} most)", 0, units - 1, strongest,
                                         key=f"i_dream_unit_{layer}"))
        shown = f"unit {target} of {outputs[layer].name}"
    else:
        layer = -1
        with detail:
            target = class_picker("Digit", predicted, "i_dream_target")
        shown = f"the score of {target}"
    # A ReLU unit silent on a blank picture has no gradient there: start from the mean.
    start = start_column.radio("Start from", ["blank", "the average test digit"],
                               index=1 if layer != -1 else 0, key=f"i_dream_start_{layer}")
    start_image = "blank" if start == "blank" else active.memo(
        "mean_digit", lambda: data.test_images.mean(axis=0).astype(np.float32) / 255.0)
    dream = active.memo(f"dream:{layer}:{target}:{start}",
                        lambda: explain.activation_maximisation(
                            active.model, target=target, layer=layer, start=start_image))
    if dream.converged and len(dream.scores) <= 2:
        st.info(f"Nothing raises {shown} from this start (a ReLU unit that is silent on it "
                "has no gradient): start from the average digit.", icon=":material/info:")
    image_column, curve_column = st.columns([1, 2])
    image_column.image(figures.tile_digits(dream.image[None], 1), width=196, clamp=True,
                       caption=f"What raises {shown}")
    curve_column.plotly_chart(inside_figures.score_steps(dream.scores, title=shown.capitalize()),
                              key="i_dream_scores", width="stretch")


def space_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption(f"The last hidden layer holds a long list of numbers per digit. Squeezed to "
               f"the two directions that vary most (PCA), {HIDDEN_SPACE_DIGITS:,} test "
               "digits fall into groups by class; misread digits (x) sit between groups. "
               "The star is this digit.")
    images = data.test_images[:HIDDEN_SPACE_DIGITS]
    labels = data.test_labels[:HIDDEN_SPACE_DIGITS]
    hidden = active.memo("hidden_space", lambda: explain.hidden_space(active.model, images,
                                                                      labels))
    current = hidden.place(active.model.layer_outputs(digit.image[None])[-2].values[0])
    st.plotly_chart(inside_figures.hidden_space_figure(
        hidden.coords, hidden.labels, hidden.predictions, hidden.explained,
        indices=np.arange(len(labels)), current=np.atleast_2d(current)),
        key="i_space", width="stretch", on_select=lambda: _space_clicked(data),
        selection_mode="points")
    st.caption("Click a point to look at that digit.")


def _space_clicked(data) -> None:
    """A click on the hidden-space map opens that test digit (a callback: the picker's
    widgets above may only change before the page is drawn)."""
    rows = figures.selected_rows(st.session_state.get("i_space"))
    picked = [int(row[0]) for row in rows if row and row[0] is not None]
    if picked:
        _select_test_digit(data, picked[0])


def fool_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("Nudge every pixel a little in the direction that hurts the answer most "
               "(the fast gradient sign method), with the smallest nudge that changes the "
               "answer. A person still sees the same digit; the network does not.")
    fooled = explain.fooling(active.model, digit.image)
    before, after = int(np.argmax(fooled.original_probabilities)), \
        int(np.argmax(fooled.probabilities))
    if not fooled.flipped:
        st.info(f"No nudge up to {fooled.epsilon:.2f} per pixel changed the answer: this "
                "digit is read robustly.", icon=":material/shield:")
    columns = st.columns(3)
    columns[0].image(figures.tile_digits(digit.image[None], 1), width=168, clamp=True,
                     caption=f"original: {before} ({fooled.original_probabilities[before]:.1%})")
    columns[1].plotly_chart(inside_figures.overlay(np.zeros_like(digit.image),
                                                   fooled.perturbation,
                                                   title=f"nudge (at most {fooled.epsilon:.3f})"),
                            key="i_fool_delta", width="stretch")
    columns[2].image(figures.tile_digits(np.clip(fooled.adversarial, 0, 1)[None], 1),
                     width=168, clamp=True,
                     caption=f"nudged: {after} ({fooled.probabilities[after]:.1%})")
    st.plotly_chart(figures.engines_probability_bars(
        {"before": fooled.original_probabilities, "after": fooled.probabilities}),
        key="i_fool_bars", width="stretch")


def dead_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    st.caption("A ReLU unit outputs zero for any negative input. A unit that outputs zero "
               "for every test digit never passes anything on: it is dead, usually killed "
               "by a too-large learning rate early on.")
    layers = active.memo("dead_units", lambda: explain.dead_units(active.model,
                                                                  data.test_images))
    if not layers:
        st.info("This network has no ReLU layers, so no unit can die this way.")
        return
    st.plotly_chart(inside_figures.dead_unit_bars([layer.name for layer in layers],
                                                  [layer.dead for layer in layers],
                                                  [layer.total for layer in layers]),
                    key="i_dead", width="stretch")
    for layer in layers:
        if layer.dead:
            shown = ", ".join(str(unit) for unit in list(layer.indices)[:40])
            st.caption(f"{layer.name}: {layer.dead} of {layer.total} dead ({shown}"
                       f"{', ...' if layer.dead > 40 else ''})")


def training_view(subject: Subject) -> None:
    from ui.train_view import statistics_tabs

    active = subject.active
    st.caption("Recorded while the model trained, by both engines, at no extra pass over "
               "the data: how each layer's weights spread epoch by epoch, how large its "
               "gradients were, and how many ReLU units never fired on the training images "
               "looked at (every eighth batch, 7,500 images an epoch on full MNIST).")
    statistics_tabs(active.model.history, key="inside")


def engines_view(subject: Subject) -> None:
    active, data, digit, predicted = subject
    from engine.cross_engine import other_engine

    st.caption("The same weights copied into the other engine, asked the same question: "
               "the NumPy engine differentiates with its own backward pass, Keras with "
               "TensorFlow's automatic differentiation. The maps should agree to rounding.")
    target = class_picker("Digit", predicted, "i_eng_target")
    twin = active.memo("other_engine", lambda: other_engine(active.model))
    mine, theirs, difference = explain.compare_engines(active.model, twin, digit.image,
                                                       target)
    names = {"numpy": "NumPy", "keras": "Keras"}
    st.plotly_chart(inside_figures.overlays_side_by_side(
        digit.image, [(f"{names[active.engine]} saliency", mine),
                      (f"{names[twin.engine_name]} saliency", theirs)]),
        key="i_engines", width="stretch")
    scale = float(np.max(np.abs(mine))) or 1.0
    st.metric("Largest difference", f"{difference:.2e}",
              help=f"{difference / scale:.1e} of the largest value")


VIEWS: dict[str, tuple[str, Callable[[Subject], None]]] = {
    "layers": ("Layer by layer", layers_view),
    "first": ("First layer", first_layer_view),
    "saliency": ("Saliency", saliency_view),
    "integrated": ("Integrated gradients", integrated_view),
    "occlusion": ("Occlusion", occlusion_view),
    "dream": ("What excites it", dream_view),
    "space": ("Hidden space", space_view),
    "fool": ("Fooling it", fool_view),
    "dead": ("Dead units", dead_view),
    "training": ("Over training", training_view),
    "engines": ("Both engines", engines_view),
}
