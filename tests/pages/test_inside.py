"""The Inside page through AppTest: every view for a model of each engine, each digit
source (a test digit by link, a random misread one, an upload from Draw & test), and the
links that lead here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine import registry
from tests.pages.test_draw import png_bytes, upscaled
from ui import state
from ui.inside_view import SOURCE_DRAWN, VIEWS
from ui.training_figures import NO_STATISTICS

INSIDE = "pages/4_inside.py"


def open_with_model(dashboard, name: str, **query: str):
    """Inside with the shipped model `name` made active on Models first."""
    at = dashboard.open("pages/7_models.py")
    at.selectbox(key="models_chosen").select(name).run()
    if name != "default-mlp":
        dashboard.click(at, "Make active")
    assert at.session_state[state.ACTIVE_MODEL].name == name
    for key, value in query.items():
        at.query_params[key] = value
    return dashboard.go(at, INSIDE)


def show(dashboard, at, view: str):
    at.segmented_control(key="i_view").set_value(view).run()
    dashboard.assert_ok(at)
    return at


def digit_caption(at) -> str:
    return next(caption for image in at.image for caption in image.captions)


@pytest.mark.parametrize("model_name", ["default-mlp", "default-cnn"])
def test_every_view_draws_for_a_model_of_each_engine(dashboard, mnist, model_name):
    at = open_with_model(dashboard, model_name, index="1234")
    assert dashboard.texts(at.title) == ["Inside the network"]
    assert digit_caption(at) == "test digit #1234"
    label = int(mnist.test_labels[1234])
    assert at.selectbox(key="i_class").value == label
    for view in VIEWS:
        show(dashboard, at, view)
        assert dashboard.page_params(at) == {"index": "1234", "view": view}
        drawn = at.get("plotly_chart")
        # Every view draws at least one figure besides the probability bars.
        assert len(drawn) >= 2 or view == "dream", (view, len(drawn))
    assert not at.error and not at.warning


def test_a_model_saved_before_the_statistics_says_so(dashboard):
    """The shipped models carry their fine-tune's statistics; a copy whose meta.json has
    none, as models saved before they were recorded, gets the note instead of figures."""
    old = dashboard.models_dir / "old-mlp"
    shutil.copytree(dashboard.models_dir / "default-mlp", old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["history"]["training_stats"]
    meta["name"] = "old-mlp"
    (old / "meta.json").write_text(json.dumps(meta))
    at = open_with_model(dashboard, "old-mlp", index="1234")
    show(dashboard, at, "training")
    assert NO_STATISTICS in dashboard.texts(at.caption)


def test_integrated_gradients_shows_its_completeness_check(dashboard):
    at = open_with_model(dashboard, "default-mlp", view="integrated")
    metrics = {metric.label: metric.value for metric in at.metric}
    total = float(metrics["Sum of the attributions"])
    change = float(metrics["Score at the digit minus at black"])
    assert abs(total - change) <= 0.01 * abs(change) + 1e-3
    assert float(metrics["Gap"].rstrip("%")) < 1.0


def test_a_bad_index_in_the_link_is_ignored_with_a_note(dashboard):
    at = open_with_model(dashboard, "default-mlp", index="99999")
    assert any("Ignored ?index=99999" in text for text in dashboard.texts(at.caption))
    assert digit_caption(at).startswith("test digit #")


def test_a_random_misread_one_is_misread(dashboard, mnist):
    at = open_with_model(dashboard, "default-mlp")
    model = registry.load(dashboard.models_dir / "default-mlp")
    dashboard.click(at, "Random misread")
    index = int(digit_caption(at).split("#")[1])
    assert model.predict(mnist.test_images[index:index + 1])[0] != mnist.test_labels[index]
    assert dashboard.page_params(at)["index"] == str(index)
    assert any("✗" in text for text in dashboard.texts(at.markdown))


def test_an_upload_on_draw_opens_here_and_nothing_drawn_says_where_to_draw(dashboard, mnist):
    at = open_with_model(dashboard, "default-mlp")
    at.radio(key="i_source").set_value(SOURCE_DRAWN).run()
    assert any("Nothing drawn or uploaded" in text for text in dashboard.texts(at.info))

    dashboard.go(at, "pages/3_draw.py")
    index = int(np.flatnonzero(mnist.test_labels == 3)[0])
    at.file_uploader(key="d_uploads").set_value(
        [("three.png", png_bytes(upscaled(mnist.test_images[index])), "image/png")]).run()
    at.selectbox(key="d_upload_detail").select("1. three.png").run()
    dashboard.click(at, "Look inside the network")
    assert dashboard.texts(at.title) == ["Inside the network"]
    assert digit_caption(at) == "three.png"
    assert "index" not in dashboard.page_params(at)
    # AppTest reruns the page it last switched to itself, not one st.switch_page opened.
    dashboard.go(at, INSIDE)
    assert digit_caption(at) == "three.png"
    show(dashboard, at, "saliency")
    assert len(at.get("plotly_chart")) >= 2


def test_each_mistakes_tile_links_to_inside_with_its_index(dashboard):
    at = dashboard.open("pages/5_mistakes.py")
    links = [link for link in at.main.get("page_link") if link.proto.label == "Inside"]
    indices = [int(image.captions[0].split(":")[0][1:]) for image in at.image]
    assert len(links) == len(indices) > 0
    assert [link.proto.query_string for link in links] == [f"index={i}" for i in indices]
    assert all(link.proto.page == "inside" for link in links), links[0].proto.page


def test_a_model_trained_here_shows_its_weights_and_gradients_over_training(dashboard):
    at = dashboard.open("pages/1_train.py")
    dashboard.train(at)
    assert at.session_state[state.ACTIVE_MODEL].origin == "trained here"
    at.query_params["view"] = "training"
    dashboard.go(at, INSIDE)
    assert at.session_state["i_view"] == "training"
    keys = {chart.key for chart in at.get("plotly_chart")}
    assert {"inside_weights", "inside_gradients", "inside_dead_units"} <= keys


@pytest.mark.parametrize("model_name", ["default-mlp", "default-cnn"])
def test_activation_maximisation_of_a_hidden_unit(dashboard, model_name):
    at = open_with_model(dashboard, model_name, view="dream")
    at.radio(key="i_dream_kind").set_value("a hidden unit").run()
    dashboard.assert_ok(at)
    (figure,) = [chart for chart in at.get("plotly_chart") if chart.key == "i_dream_scores"]
    caption = [text for image in at.image for text in image.captions
               if text.startswith("What raises unit")]
    assert caption, [text for image in at.image for text in image.captions]

