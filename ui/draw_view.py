"""Parts of the Draw & test page: the canvas (in a fragment, so a stroke reruns only it),
the uploader's compact grid of readings (in pages), and one digit's steps, prediction, save
form and "why did it fail?" panel (ui/why_view.py)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

from engine.custom import custom_dir, save_custom_digit
from engine.images.imageio import UnreadableImage, read_image
from engine.images.preprocess import NoDigitFound, PreparedDigit, prepare_digit
from engine.images.step_effect import step_readings
from engine.novelty import DetectorUnavailable, looks_like_digit
from ui import cache, figures, state, visitors
from ui.inside_view import SOURCE_DRAWN, Digit
from ui.why_view import why_panel

CANVAS_SIZE = 280
UPLOAD_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]
UPLOADS_PER_PAGE = 24
TILE_WIDTH = 120        # pixels: a 72-pixel thumbnail and two lines of caption
STEPS_PER_ROW = 4
BOTH_ENGINES_KEPT = "d_both_kept"     # the visitor's last choice of the toggle


@st.fragment
def canvas_panel() -> None:
    # The canvas's side is fixed: in a third of the width (a column) it was cut off below
    # about 1400 px. On a phone the prediction wraps under it.
    row = st.container(horizontal=True, gap="large")
    left, right = row.container(width=CANVAS_SIZE + 8), row.container(width="stretch")
    with left:
        # Streamlit forgets a widget's value on pages that do not draw it; a key of our
        # own carries the width across page switches.
        if "d_stroke" not in st.session_state:
            st.session_state["d_stroke"] = st.session_state.get("d_stroke_kept", 18)
        stroke_width = st.slider("Stroke width", 6, 40, key="d_stroke")
        st.session_state["d_stroke_kept"] = stroke_width
        clears = st.session_state.setdefault("d_clears", 0)
        if "canvas" not in st.session_state:
            # The first run of a visit to this page (Streamlit forgot the canvas's state
            # on the page before): start from the strokes drawn on the last visit.
            st.session_state["d_initial"] = {
                "objects": st.session_state.get("d_strokes_kept", []), "clears": clears}
        # The canvas redraws itself from initial_drawing whenever that changes, so it
        # stays the same during a visit, and a new clear count empties it in place.
        # (Remounting it under a new key instead made the fresh canvas ignore about one
        # stroke in ten.)
        result = st_canvas(stroke_width=stroke_width, stroke_color="#FFFFFF",
                           background_color="#000000", height=CANVAS_SIZE, width=CANVAS_SIZE,
                           drawing_mode="freedraw", return_image_data=True,
                           initial_drawing=st.session_state["d_initial"], key="canvas")
        if result.json_data is not None:
            st.session_state["d_strokes_kept"] = result.json_data.get("objects", [])
        if result.image_data is not None:
            st.session_state["d_picture_kept"] = result.image_data
        # A canvas redrawn from initial_drawing reports nothing until the next stroke:
        # the picture it shows is the one kept from the last visit.
        picture = st.session_state.get("d_picture_kept")
        if st.button("Clear", icon=":material/ink_eraser:", key="d_clear"):
            st.session_state["d_clears"] = clears + 1
            st.session_state["d_initial"] = {"objects": [], "clears": clears + 1}
            st.session_state["d_strokes_kept"] = []
            st.session_state.pop("d_picture_kept", None)
            st.session_state["d_just_cleared"] = True
            st.rerun(scope="fragment")
        st.caption("Light ink on black, like MNIST. Draw one digit, as large as you like.")
    with right:
        # Right after Clear the canvas has not yet reported its empty drawing.
        just_cleared = st.session_state.pop("d_just_cleared", False)
        if just_cleared or picture is None or not np.any(picture[..., :3] > 40):
            st.info("Draw a digit on the black square.", icon=":material/draw:")
            return
        digit_report(picture, key="canvas", ink="light", name="your drawing")


def upload_panel() -> None:
    files = st.file_uploader("Pictures of digits (one digit each)", type=UPLOAD_TYPES,
                             accept_multiple_files=True, key="d_uploads",
                             help="Photos of paper, scans, or drawings; any size.")
    if not files:
        st.caption("Dark ink on light paper or light on dark both work; the digit can be "
                   "small and off-centre.")
        return
    readings = [_upload_reading(upload) for upload in files]
    st.markdown(upload_summary(readings))
    pages = -(-len(files) // UPLOADS_PER_PAGE)
    page_number = 1
    if pages > 1:
        page_number = st.number_input(f"Page (of {pages})", 1, pages, key="d_upload_page")
    first = (page_number - 1) * UPLOADS_PER_PAGE
    shown = list(enumerate(zip(files, readings)))[first:first + UPLOADS_PER_PAGE]
    # Tiles that wrap to the screen's width (columns would stack one per row on a phone).
    with st.container(horizontal=True, gap="small"):
        for _, (upload, reading) in shown:
            with st.container(width=TILE_WIDTH):
                _upload_tile(upload.name, reading)
    names = [f"{number + 1}. {upload.name}" for number, upload in enumerate(files)]
    chosen = st.selectbox("Full steps and prediction for", ["(none)", *names],
                          key="d_upload_detail")
    if chosen != "(none)":
        number = names.index(chosen)
        upload = files[number]
        st.markdown(f"**{upload.name}**")
        try:
            picture = read_image(upload.getvalue())
        except UnreadableImage as error:
            st.error(f"{upload.name}: {error}", icon=":material/broken_image:")
            return
        digit_report(picture, key=f"upload_{number}_{upload.file_id}", ink="auto",
                     name=upload.name)


def _upload_reading(upload: Any) -> dict[str, Any]:
    """One file's thumbnail, reading and confidence, or why it has none; kept per file for
    the session, so paging and reruns do not prepare every picture again."""
    readings = st.session_state.setdefault("d_upload_readings", {})
    model_name = state.active_summary()
    cache_key = (upload.file_id, model_name)
    if cache_key not in readings:
        readings[cache_key] = _read_upload(upload.getvalue())
    return readings[cache_key]


def _read_upload(data: bytes) -> dict[str, Any]:
    try:
        prepared = prepare_digit(read_image(data), ink="auto")
    except (UnreadableImage, NoDigitFound) as error:
        return {"image": None, "digit": None, "confidence": None, "looks_like_digit": False,
                "error": str(error)}
    probabilities = state.active_model().model.predict_proba(prepared.image[None])
    return {"image": prepared.image, "digit": int(np.argmax(probabilities[0])),
            "confidence": float(np.max(probabilities[0])),
            "looks_like_digit": _digit_like(prepared.image),
            "error": None}


def _digit_like(image: np.ndarray) -> bool:
    """The detector's answer for one prepared picture; without its file, the page says
    so and claims nothing (the reading is shown as a digit)."""
    try:
        return bool(looks_like_digit(image[None])[0])
    except DetectorUnavailable as error:
        st.error(str(error), icon=":material/error:")
        return True


def upload_summary(readings: list[dict[str, Any]]) -> str:
    """One line over every file: how many read as which digit, not digits, unreadable."""
    read = [reading for reading in readings if reading["error"] is None]
    digits = [reading for reading in read if reading["looks_like_digit"]]
    counts = np.bincount([reading["digit"] for reading in digits], minlength=10)
    spread = ", ".join(f"{count} x {digit}" for digit, count in enumerate(counts) if count)
    parts = [f"**{len(readings)} file{'s' if len(readings) != 1 else ''}**",
             f"{len(digits)} read as digits" + (f" ({spread})" if spread else "")]
    if len(read) > len(digits):
        parts.append(f"{len(read) - len(digits)} not like a digit")
    if len(readings) > len(read):
        parts.append(f"{len(readings) - len(read)} with no digit found or unreadable")
    return ": ".join(parts[:2]) + "".join(f"; {part}" for part in parts[2:])


def _upload_tile(name: str, reading: dict[str, Any]) -> None:
    if reading["image"] is not None:
        st.image(figures.square(reading["image"]), width=72, clamp=True)
    short = name if len(name) <= 22 else name[:19] + "..."
    if reading["error"] is not None:
        st.caption(f"{short}  \n:orange[no reading]")
    elif not reading["looks_like_digit"]:
        st.caption(f"{short}  \n:orange[not a digit?] (reads {reading['digit']}, "
                   f"{reading['confidence']:.0%})")
    else:
        st.caption(f"{short}  \n**{reading['digit']}** ({reading['confidence']:.0%})")


def drawing_stats(picture: np.ndarray) -> dict[str, float] | None:
    """A canvas drawing's size (its ink's larger side over the canvas's), offset (its
    ink's centre from the canvas's, over the canvas's side) and the pen's width in px."""
    ink = np.asarray(picture)[..., :3].max(axis=-1) > 40
    rows, columns = np.nonzero(ink)
    if not len(rows):
        return None
    side = max(ink.shape)
    size = max(np.ptp(rows), np.ptp(columns)) / side
    centre = np.array([(rows.min() + rows.max()) / 2, (columns.min() + columns.max()) / 2])
    offset = float(np.hypot(*(centre - np.array(ink.shape) / 2))) / side
    return {"size": float(size), "offset": offset,
            "stroke": int(st.session_state.get("d_stroke_kept", 18))}


def digit_report(picture: np.ndarray, *, key: str, ink: str, name: str) -> None:
    """Steps, prediction and save form for one picture."""
    active = state.active_model()
    started = time.perf_counter()
    try:
        prepared = prepare_digit(picture, ink=ink)
    except NoDigitFound as error:
        if key == "canvas":
            st.session_state[state.LAST_DIGIT] = str(error)
        st.warning(str(error), icon=":material/search_off:")
        return
    if key == "canvas":
        # The canvas's latest drawing is what Inside shows under "your last drawing".
        st.session_state[state.LAST_DIGIT] = Digit(prepared.image, name,
                                                   drawn_stats=drawing_stats(picture))
    probabilities = active.model.predict_proba(prepared.image[None])[0]
    server_ms = (time.perf_counter() - started) * 1000
    best = int(np.argmax(probabilities))
    digit_like = _digit_like(prepared.image)
    # "not a digit?" gets the page's width, the bars below it: in a quarter of the width
    # it was cut to "not a d..." below 1400 px.
    top, chart = st.columns([1, 3]) if digit_like else (st.container(), st.container())
    if digit_like:
        top.metric("Prediction", str(best), f"{probabilities[best]:.1%} sure",
                   delta_color="off")
    else:
        top.metric("Prediction", "not a digit?", f"closest: {best} ({probabilities[best]:.0%})",
                   delta_color="off")
        top.warning("That does not look like a digit: a detector trained on digits and on "
                   "letters, scribbles and shapes finds it unlike the digits. The bars show "
                   "what the model would answer anyway.", icon=":material/help:")
    top.caption(f"preprocess + predict: {server_ms:.1f} ms")
    chart.plotly_chart(figures.probability_bars(probabilities), key=f"{key}_bars",
                       width="stretch")
    if st.button("Look inside the network", key=f"{key}_inside", icon=":material/neurology:",
                 help="Why it reads this digit as it does: saliency, activations, ..."):
        st.session_state[state.LAST_DIGIT] = Digit(prepared.image, name)
        st.session_state["i_source"] = SOURCE_DRAWN
        visitors.switch_page("pages/4_inside.py",
                             view=st.session_state.get("i_view") or "layers")
    _steps(prepared, step_readings(active.model, prepared))
    _other_engines(prepared, key)
    intended = _save_form(picture, best, key)
    why_panel(active.model, prepared.image, best, intended, key=key,
              save=lambda: _save(picture, intended))


def _steps(prepared: PreparedDigit, readings: list[tuple[int, float]]) -> None:
    with st.expander("Preprocessing steps", expanded=True):
        st.caption("Under each step, what the model reads when given that picture shrunk "
                   "to 28 x 28 as it stands, as many demos do. Try a small, off-centre or "
                   "dark-on-light digit to see what each step is for.")
        # Rows of four: eight steps in one row leave each note a few letters wide.
        for first in range(0, len(prepared.steps), STEPS_PER_ROW):
            columns = st.columns(STEPS_PER_ROW)
            row = zip(columns, prepared.steps[first:first + STEPS_PER_ROW],
                      readings[first:first + STEPS_PER_ROW])
            for column, step, (digit, probability) in row:
                column.image(figures.square(np.clip(step.image, 0, 1)), caption=step.name,
                             width=96, clamp=True)
                column.caption(f"reads **{digit}** ({probability:.0%})  \n{step.note}")


def _other_engines(prepared: PreparedDigit, key: str) -> None:
    # The toggle is not drawn while the canvas is empty, and Streamlit then forgets its
    # state: a key of our own keeps the choice across Clear and page switches.
    toggle_key = f"{key}_both"
    if toggle_key not in st.session_state:
        st.session_state[toggle_key] = st.session_state.get(BOTH_ENGINES_KEPT, False)
    both = st.toggle("Both engines side by side", key=toggle_key,
                     help="Also ask the shipped NumPy MLP and Keras CNN")
    st.session_state[BOTH_ENGINES_KEPT] = both
    if not both:
        return
    from engine import registry

    by_model = {}
    for name in cache.SHIPPED_MODELS:
        shipped, error = cache.saved_model(registry.models_dir() / name)
        if shipped is None:
            st.caption(f"{name}: {error}")
            continue
        label = f"{state.ENGINE_NAMES[shipped.engine]} ({name})"
        by_model[label] = shipped.model.predict_proba(prepared.image[None])[0]
    if by_model:
        st.plotly_chart(figures.engines_probability_bars(by_model), key=f"{key}_engines",
                        width="stretch")


def _save_form(picture: np.ndarray, predicted: int, key: str) -> int:
    """The label box and save button; returns the label the visitor gives."""
    label_column, button_column = st.columns([2, 1], vertical_alignment="bottom")
    label_key = f"{key}_label"
    # A keyed box keeps its value when `index` changes, so a new drawing would inherit
    # the last label: seed it with each new prediction (a correction stays until then).
    if label_key not in st.session_state or \
            st.session_state.get(f"{label_key}_seed") != predicted:
        st.session_state[label_key] = predicted
        st.session_state[f"{label_key}_seed"] = predicted
    label = label_column.selectbox("The digit really is", list(range(10)), key=label_key)
    if button_column.button("Add to custom digits", key=f"{key}_save",
                            icon=":material/add_photo_alternate:"):
        _save(picture, label)
    # A box whose key moved on to another picture answers None for one run.
    return predicted if label is None else int(label)


def _save(picture: Any, label: int) -> None:
    try:
        path = save_custom_digit(picture, label)
    except (NoDigitFound, UnreadableImage, ValueError) as error:
        st.error(f"Not saved: {error}")
    except OSError as error:
        st.error(f"Not saved: the folder {custom_dir()} cannot be written ({error.strerror}).")
    else:
        st.success(f"Saved as `{path.parent.name}/{path.name}`.", icon=":material/check:")
