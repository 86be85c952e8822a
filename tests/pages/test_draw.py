"""The Draw & test page through AppTest: uploads (the canvas cannot be drawn here; the
browser tests draw on it) and the digit report the canvas shares with them."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from engine import registry
from engine.images.preprocess import prepare_digit

DRAW = "pages/3_draw.py"


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def upscaled(image: np.ndarray, scale: int = 5) -> np.ndarray:
    """A test digit as a person's picture: larger, dark ink on light paper."""
    big = Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    return 255 - np.asarray(big)


def test_draw_page_shows_the_canvas_and_the_uploader(dashboard):
    at = dashboard.open(DRAW)
    assert dashboard.texts(at.title) == ["Draw & test"]
    assert dashboard.texts(at.caption)[0].startswith("Predictions by default-mlp (shipped)")
    assert [tab.label for tab in at.tabs] == ["Draw", "Upload pictures"]
    assert at.slider(key="d_stroke").value == 18
    assert dashboard.button(at, "Clear").key == "d_clear"
    (uploader,) = at.file_uploader
    assert uploader.accept_multiple_files and ".png" in uploader.allowed_type
    assert any("Draw a digit" in text for text in dashboard.texts(at.info))


def test_the_stroke_width_survives_a_page_switch(dashboard):
    at = dashboard.open(DRAW)
    at.slider(key="d_stroke").set_value(30).run()
    dashboard.go(at, "pages/1_train.py")
    dashboard.go(at, DRAW)
    assert at.slider(key="d_stroke").value == 30


def test_uploads_are_read_in_a_compact_grid_and_each_opens_in_full(dashboard, mnist):
    at = dashboard.open(DRAW)
    model = registry.load(dashboard.models_dir / "default-mlp")
    chosen = [int(np.flatnonzero(mnist.test_labels == digit)[0]) for digit in (7, 2)]
    pictures = [upscaled(mnist.test_images[index]) for index in chosen]
    expected = [int(np.argmax(model.predict_proba(prepare_digit(picture).image[None])))
                for picture in pictures]
    at.file_uploader(key="d_uploads").set_value(
        [("seven.png", png_bytes(pictures[0]), "image/png"),
         ("notes.png", b"shopping list: milk", "image/png"),
         ("two.png", png_bytes(pictures[1]), "image/png")]).run()
    dashboard.assert_ok(at)
    summary = [text for text in dashboard.texts(at.markdown) if text.startswith("**3 files**")]
    assert summary and "2 read as digits" in summary[0] and "1 with no digit found" in summary[0]
    tiles = [text for text in dashboard.texts(at.caption) if text.startswith(("seven", "two",
                                                                              "notes"))]
    assert tiles[0].startswith("seven.png") and f"**{expected[0]}**" in tiles[0]
    assert "no reading" in tiles[1] and f"**{expected[1]}**" in tiles[2]
    assert not [metric for metric in at.metric if metric.label == "Prediction"]
    # One file's full report on demand: steps, prediction, save form.
    at.selectbox(key="d_upload_detail").select("1. seven.png").run()
    dashboard.assert_ok(at)
    predictions = [metric.value for metric in at.metric if metric.label == "Prediction"]
    assert predictions == [str(expected[0])]
    readings = [text for text in dashboard.texts(at.caption) if text.startswith("reads **")]
    steps = len(prepare_digit(pictures[0]).steps)
    assert len(readings) == steps and readings[-1].startswith(f"reads **{expected[0]}**")
    at.selectbox(key="d_upload_detail").select("2. notes.png").run()
    (error,) = at.error
    assert error.value.startswith("notes.png: ") and "not a picture" in error.value


def test_many_uploads_are_paged_not_cut_off(dashboard, mnist):
    at = dashboard.open(DRAW)
    files = [(f"digit{number:02d}.png", png_bytes(upscaled(mnist.test_images[number])),
              "image/png") for number in range(30)]
    at.file_uploader(key="d_uploads").set_value(files).run()
    dashboard.assert_ok(at)

    def tiles():
        return [text for text in dashboard.texts(at.caption) if text.startswith("digit")]
    assert len(tiles()) == 24 and tiles()[0].startswith("digit00.png")
    assert any(text.startswith("**30 files**") for text in dashboard.texts(at.markdown))
    at.number_input(key="d_upload_page").set_value(2).run()
    assert [tile.split()[0] for tile in tiles()] == [f"digit{n}.png" for n in range(24, 30)]
    # Every file, the 30th too, can be opened in full.
    at.selectbox(key="d_upload_detail").select("30. digit29.png").run()
    dashboard.assert_ok(at)
    assert [metric for metric in at.metric if metric.label == "Prediction"]


def test_an_upload_can_be_added_to_the_custom_digits(dashboard, mnist):
    at = dashboard.open(DRAW)
    index = int(np.flatnonzero(mnist.test_labels == 5)[0])
    at.file_uploader(key="d_uploads").set_value(
        ("five.png", png_bytes(upscaled(mnist.test_images[index])), "image/png")).run()
    at.selectbox(key="d_upload_detail").select("1. five.png").run()
    before = set(dashboard.custom_dir.glob("*/*.png"))
    (label_box,) = [box for box in at.selectbox if box.key.endswith("_label")]
    label_box.select(5).run()
    (save,) = [button for button in at.button if button.label == "Add to custom digits"]
    save.click().run()
    dashboard.assert_ok(at)
    added = set(dashboard.custom_dir.glob("*/*.png")) - before
    assert len(added) == 1 and next(iter(added)).parent.name == "5"
    assert any("Saved as `5/" in text for text in dashboard.texts(at.success))


def report_app() -> AppTest:
    """The canvas's half of the page: digit_report on a picture held in session state."""
    def script():
        import streamlit as st

        from ui import draw_view

        draw_view.digit_report(st.session_state["picture"], key="canvas", ink="light",
                               name="your drawing")

    return AppTest.from_function(script, default_timeout=60)


def canvas_picture(image: np.ndarray) -> np.ndarray:
    """An MNIST digit as st_canvas returns a drawing: 280 x 280 RGBA, white ink on black."""
    grey = np.asarray(Image.fromarray(image).resize((280, 280), Image.Resampling.BILINEAR))
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


def test_the_label_box_follows_each_new_drawing(app_env, mnist):
    at = report_app()
    model = registry.load(app_env[0] / "default-mlp")
    digits = {}
    for digit in (3, 8, 1, 0, 6):       # keyed by what the model reads: two differ
        index = int(np.flatnonzero(mnist.test_labels == digit)[0])
        picture = canvas_picture(mnist.test_images[index])
        digits[int(np.argmax(model.predict_proba(prepare_digit(picture, ink="light")
                                                 .image[None])))] = picture
    first, second = list(digits.values())[:2]
    at.session_state["picture"] = first
    at.run()
    assert not at.exception
    label = at.selectbox(key="canvas_label")
    predicted_first = int(at.metric[0].value)
    assert label.value == predicted_first
    label.select((predicted_first + 1) % 10).run()   # the visitor corrects it
    assert at.selectbox(key="canvas_label").value == (predicted_first + 1) % 10
    at.session_state["picture"] = second              # ... then draws another digit
    at.run()
    predicted_second = int(at.metric[0].value)
    assert predicted_second != predicted_first
    assert at.selectbox(key="canvas_label").value == predicted_second


def test_both_engines_stays_on_when_the_digit_goes_and_comes_back(app_env, mnist):
    at = report_app()
    index = int(np.flatnonzero(mnist.test_labels == 5)[0])
    at.session_state["picture"] = canvas_picture(mnist.test_images[index])
    at.run()
    at.toggle(key="canvas_both").set_value(True).run()
    at.session_state["picture"] = np.zeros((280, 280, 4), np.uint8)   # Clear: no report
    at.run()
    assert not at.toggle
    at.session_state["picture"] = canvas_picture(mnist.test_images[index])
    at.run()
    assert not at.exception
    assert at.toggle(key="canvas_both").value


def test_both_engines_side_by_side_asks_each_shipped_model(dashboard, mnist):
    at = dashboard.open(DRAW)
    index = int(np.flatnonzero(mnist.test_labels == 4)[0])
    at.file_uploader(key="d_uploads").set_value(
        ("four.png", png_bytes(upscaled(mnist.test_images[index])), "image/png")).run()
    at.selectbox(key="d_upload_detail").select("1. four.png").run()
    (toggle,) = [toggle for toggle in at.toggle if toggle.key.endswith("_both")]
    toggle.set_value(True).run()
    dashboard.assert_ok(at)
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    (engines,) = [figure for figure in figures if figure["layout"].get("barmode") == "group"]
    shipped = [name for name in ("default-mlp", "default-cnn")
               if (dashboard.models_dir / name).is_dir()]
    expected = {"default-mlp": "NumPy (default-mlp)", "default-cnn": "Keras (default-cnn)"}
    assert [trace["name"] for trace in engines["data"]] == [expected[name] for name in shipped]
    missing = {"default-mlp", "default-cnn"} - set(shipped)
    for name in missing:               # a shipped model that is not there is named, not fatal
        assert any(text.startswith(f"{name}: ") for text in dashboard.texts(at.caption))


def test_why_did_it_fail_compares_with_mnist_and_saves_in_one_click(app_env, mnist):
    at = report_app()
    index = int(np.flatnonzero(mnist.test_labels == 7)[0])
    at.session_state["picture"] = canvas_picture(mnist.test_images[index])
    at.run()
    predicted = int(at.metric[0].value)
    intended = (predicted + 1) % 10
    at.selectbox(key="canvas_label").select(intended).run()
    assert not at.exception
    (panel,) = [box for box in at.expander if box.label == "Why did it fail?"]
    table = at.dataframe[0].value
    assert list(table["measure"]) == ["centre x", "centre y", "height", "width", "slant",
                                      "stroke"]
    assert {f"percentile among {predicted}s", f"percentile among {intended}s"} <= set(table)
    curves = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    sensitivity = [figure for figure in curves if len(figure["data"]) == 4]
    assert sensitivity and sensitivity[0]["layout"]["yaxis"]["title"]["text"] == f"P({intended})"
    assert any(text.startswith("**Try:**") for text in [m.value for m in at.markdown])
    before = set(app_env[1].glob("*/*.png"))
    (save,) = [button for button in at.button if button.key == "canvas_why_save"]
    save.click().run()
    added = set(app_env[1].glob("*/*.png")) - before
    assert len(added) == 1 and next(iter(added)).parent.name == str(intended)


def test_a_scribble_is_answered_not_a_digit(app_env):
    from tests.support.not_digits import _drawn, _scribble

    rng = np.random.default_rng(5)
    coverage = _drawn(_scribble(rng), 200, rng)
    picture = np.zeros((280, 280, 4), np.uint8)
    picture[..., 3] = 255
    height, width = coverage.shape
    picture[40:40 + height, 40:40 + min(width, 220), :3] = (
        coverage[:, :220, None] * 255).astype(np.uint8)
    at = report_app()
    at.session_state["picture"] = picture
    at.run()
    assert not at.exception
    assert at.metric[0].value == "not a digit?"
    assert any("does not look like a digit" in warning.value for warning in at.warning)


def test_a_missing_detector_file_is_said_on_the_page_not_raised(app_env, mnist, monkeypatch,
                                                                  tmp_path):
    from engine import novelty

    monkeypatch.setattr(novelty, "DETECTOR_PATH", tmp_path / "gone.npz")
    novelty.shipped_detector.cache_clear()
    try:
        at = report_app()
        at.session_state["picture"] = canvas_picture(mnist.test_images[0])
        at.run()
    finally:
        novelty.shipped_detector.cache_clear()
    assert not at.exception
    assert any("digit detector" in error.value and "train_detector.py" in error.value
               for error in at.error)
    # No claim either way: the reading is shown as a digit.
    assert at.metric[0].value == str(mnist.test_labels[0])
