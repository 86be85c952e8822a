"""The sidebar every page draws, through AppTest: invalid values get a message under the
widget and disable Train, presets apply, settings survive page switches, and configs come
in from JSON and from the page's URL (and go out to it)."""

from __future__ import annotations

import json

import pytest

from engine.config import PRESETS, TrainConfig
from tests.pages.conftest import Dashboard
from ui import state
from ui.sidebar import host_problem

TRAIN = "pages/1_train.py"


def in_order(block):
    """Every element under `block`, in the order the page shows them."""
    for index in sorted(block.children):
        child = block.children[index]
        if hasattr(child, "children"):
            yield from in_order(child)
        else:
            yield child


def message_under(at, key: str) -> str | None:
    """The error drawn right under the sidebar widget `key`, if any."""
    elements = list(in_order(at.sidebar))
    position = next(i for i, element in enumerate(elements) if element.key == key)
    following = elements[position + 1] if position + 1 < len(elements) else None
    return following.value if following is not None and following.type == "error" else None


def train_enabled(at) -> bool:
    return not Dashboard.button(at, "Train").disabled


@pytest.mark.parametrize("values, key, words", [
    ({"hidden_sizes": "abc"}, "w_hidden_sizes", "hidden_sizes must be a list of integers"),
    ({"hidden_sizes": "0"}, "w_hidden_sizes", "hidden_sizes must hold sizes in [1, 2048]"),
    ({"train_size": 1000, "batch_size": 1024}, "w_batch_size",
     "batch_size must be at most the 900 training images"),
    ({"hidden_sizes": "", "dropout": 0.2}, "w_dropout", "dropout needs at least one hidden"),
])
def test_an_invalid_value_gets_a_message_under_its_widget_and_disables_train(
        dashboard, values, key, words):
    at = dashboard.open(TRAIN)
    assert train_enabled(at) and not at.sidebar.error
    dashboard.configure(at, **values)
    message = message_under(at, key)
    assert message is not None and words in message, dashboard.texts(at.sidebar.error)
    assert len(at.sidebar.error) == 1
    assert not train_enabled(at)
    assert at.session_state[state.SETTINGS][key[2:]] == values[key[2:]]


def test_fixing_the_value_enables_train_again(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, hidden_sizes="64, x")
    assert not train_enabled(at)
    dashboard.configure(at, hidden_sizes="64, 32")
    assert train_enabled(at) and not at.sidebar.error
    assert dashboard.texts(at.caption)[0].startswith("NumPy: MLP 784-64-32-10")


def test_cnn_on_keras_is_valid_and_shows_the_conv_filters(dashboard):
    at = dashboard.open(TRAIN)
    assert not [box for box in at.text_input if box.key == "w_conv_filters"]
    dashboard.configure(at, engine="keras", architecture="cnn")
    assert at.text_input(key="w_conv_filters").value == "32, 64"
    assert train_enabled(at)
    assert dashboard.texts(at.caption)[0].startswith("Keras: CNN conv 32-64")


@pytest.mark.parametrize("name", ["quick", "strong-mlp"])
def test_a_preset_applies_every_field(dashboard, name):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, epochs=4, hidden_sizes="7")
    at.selectbox(key="w_preset").select(name).run()     # a preset applies when picked
    preset = PRESETS[name]
    assert at.slider(key="w_epochs").value == preset.epochs
    assert at.slider(key="w_train_size").value == preset.train_size
    assert at.text_input(key="w_hidden_sizes").value == \
        ", ".join(map(str, preset.hidden_sizes))
    assert at.selectbox(key="w_augmentation").value == preset.augmentation
    assert at.slider(key="w_dropout").value == pytest.approx(preset.dropout)
    settings = at.session_state[state.SETTINGS]
    assert TrainConfig.from_dict({key: settings[key] for key in preset.to_dict()}) == preset


def test_settings_survive_a_page_switch(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, epochs=7, learning_rate=0.005, optimizer="momentum",
                        hidden_sizes="48")
    dashboard.go(at, "pages/2_evaluate.py")
    # Folded there, so not drawn at all (ui.sidebar draws the panel only while open) ...
    assert not [slider for slider in at.slider if slider.key == "w_epochs"]
    dashboard.go(at, TRAIN)
    assert at.slider(key="w_epochs").value == 7
    assert at.select_slider(key="w_learning_rate").value == pytest.approx(0.005)
    assert at.selectbox(key="w_optimizer").value == "momentum"
    assert at.slider(key="w_momentum").value == pytest.approx(0.9)   # shown for momentum
    assert at.text_input(key="w_hidden_sizes").value == "48"
    assert dashboard.texts(at.caption)[0].startswith("NumPy: MLP 784-48-10, relu, momentum")


def test_import_json_updates_the_widgets_at_once(dashboard):
    at = dashboard.open(TRAIN)
    config = {"engine": "numpy", "hidden_sizes": [16], "epochs": 3, "train_size": 2000}
    at.text_area(key="w_import_text").input(json.dumps(config)).run()
    dashboard.click(at, "Import")
    assert at.text_input(key="w_hidden_sizes").value == "16"
    assert at.slider(key="w_epochs").value == 3
    assert dashboard.texts(at.caption)[0] == (
        "NumPy: MLP 784-16-10, relu, adam 0.001, 3 epochs on 2,000 images. "
        "Change it in the sidebar.")


def test_an_import_keeps_what_it_does_not_name_and_takes_a_models_meta_json(dashboard):
    at = dashboard.open(TRAIN)
    dashboard.configure(at, hidden_sizes="48", epochs=7)
    at.text_area(key="w_import_text").input('{"epochs": 4}').run()
    dashboard.click(at, "Import")
    assert at.slider(key="w_epochs").value == 4
    assert at.text_input(key="w_hidden_sizes").value == "48"      # kept, not reset
    meta = (dashboard.models_dir / "default-cnn" / "meta.json").read_text()
    at.text_area(key="w_import_text").input(meta).run()
    dashboard.click(at, "Import")
    assert at.radio(key="w_engine").value == "keras"
    assert list(at.session_state[state.SETTINGS]["conv_filters"]) == [16, 32, 64]
    assert dashboard.texts(at.caption)[0].startswith("Keras: CNN")


@pytest.mark.parametrize("text, words", [
    ("{not json", "this is not JSON (line 1, column 2"),
    ('{"epochs": 0}', "epochs must be in [1, 200]"),
    ('{"colour": "red"}', "unknown field(s): colour"),
    ('{"engine": "torch"}', "engine must be numpy or keras"),
    ("[1, 2]", "a config is a JSON object"),
])
def test_a_bad_import_says_why_and_changes_nothing(dashboard, text, words):
    at = dashboard.open(TRAIN)
    before = dict(at.session_state[state.SETTINGS])
    at.text_area(key="w_import_text").input(text).run()
    dashboard.click(at, "Import")
    (error,) = [error for error in at.sidebar.error]
    assert error.value.startswith("Not imported: ") and words in error.value
    assert at.session_state[state.SETTINGS] == before


def test_a_config_in_the_url_is_imported_and_the_url_button_round_trips(dashboard):
    config = {"engine": "keras", "architecture": "mlp", "hidden_sizes": [40, 20],
              "optimizer": "sgd", "epochs": 5}
    at = dashboard.open(TRAIN, query={"config": json.dumps(config)})
    assert at.radio(key="w_engine").value == "keras"
    assert at.text_input(key="w_hidden_sizes").value == "40, 20"
    assert at.slider(key="w_epochs").value == 5
    dashboard.configure(at, epochs=6)                  # later changes are not undone
    assert at.slider(key="w_epochs").value == 6
    # The address now mirrors the settings as they change (what differs from the preset).
    assert at.query_params["epochs"] == "6" and at.query_params["engine"] == "keras"
    assert at.query_params["hidden_sizes"] == "40,20"
    (link,) = [code.value for code in at.code if "epochs=6" in code.value]
    assert "visitor=" not in link                      # the token stays with its owner
    assert "visitor" in at.query_params
    shared = {key: value for key, value in at.query_params.items()
              if key not in ("visitor", "config")}
    visitor = dashboard.open(TRAIN, query=shared)
    settings = visitor.session_state[state.SETTINGS]
    assert settings["engine"] == "keras" and settings["hidden_sizes"] == (40, 20)
    assert settings["optimizer"] == "sgd" and visitor.slider(key="w_epochs").value == 6


def test_a_bad_config_in_the_url_is_ignored_with_a_note(dashboard):
    at = dashboard.open(query={"config": '{"learning_rate": 7}'})     # lands on Home
    (toast,) = at.toast
    assert toast.value.startswith("The settings in the link were not used: "
                                  "learning_rate must be in (0, 1]")
    dashboard.go(at, TRAIN)
    assert at.session_state[state.SETTINGS] == state.default_settings()
    assert train_enabled(at)


def test_epochs_over_the_host_limit_get_a_message_not_a_crash(dashboard, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_EPOCHS", "20")
    at = dashboard.open(TRAIN, query={"config": '{"epochs": 30}'})
    assert at.slider(key="w_epochs").value == 30 and at.slider(key="w_epochs").max == 30
    assert message_under(at, "w_epochs") == "epochs must be at most 20 on this server"
    assert not train_enabled(at)
    dashboard.configure(at, epochs=20)
    assert train_enabled(at)
    assert at.slider(key="w_epochs").max == 20         # the host's limit, once within it


def test_host_problem_reads_the_limits(monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MAX_HIDDEN_WIDTH", "64")
    monkeypatch.setenv("DIGIT_LAB_MAX_CONV_FILTERS", "16")
    monkeypatch.setenv("DIGIT_LAB_MAX_EPOCHS", "5")
    assert host_problem("numpy", TrainConfig(hidden_sizes=(64,), epochs=5)) is None
    assert "at most 64 units" in host_problem("numpy", TrainConfig(hidden_sizes=(65,),
                                                                   epochs=5))
    assert "epochs must be at most 5" in host_problem("numpy", TrainConfig(
        hidden_sizes=(8,), epochs=6))
    cnn = TrainConfig(architecture="cnn", hidden_sizes=(8,), conv_filters=(32,), epochs=1)
    assert "conv_filters must be at most 16" in host_problem("keras", cnn)
    assert "conv_filters must be at most 16" in host_problem("numpy", cnn)


def test_the_address_follows_the_settings_and_a_link_restores_them(dashboard):
    at = dashboard.open(TRAIN)
    assert "learning_rate" not in at.query_params          # the preset's value
    at.select_slider(key="w_learning_rate").set_value(0.0003).run()
    assert at.query_params["learning_rate"] == "0.0003"
    at.selectbox(key="w_preset").select("quick").run()
    params = dashboard.page_params(at)
    assert params == {"preset": "quick"}                   # the preset's own values
    visitor = dashboard.open(TRAIN, query={"preset": "quick", "learning_rate": "0.01",
                                           "dropout": "0.2"})
    settings = visitor.session_state[state.SETTINGS]
    assert (settings["preset"], settings["learning_rate"], settings["dropout"]) == \
        ("quick", 0.01, 0.2)
    assert settings["epochs"] == PRESETS["quick"].epochs
    assert not visitor.sidebar.caption or "Ignored" not in visitor.sidebar.caption[0].value


def test_a_link_with_unknown_settings_or_values_names_what_it_ignored(dashboard):
    at = dashboard.open(query={"learning_rate": "7", "colour": "red", "epochs": "five",
                               "dropout": "0.3"})          # the page it lands on says so
    note = dashboard.texts(at.sidebar.caption)[0]
    assert note.startswith("Ignored from the link: ")
    assert "learning_rate=7 (must be in (0, 1], got 7)" in note
    assert "colour (no such setting)" in note and "epochs=five" in note
    assert any(toast.value == note for toast in at.toast)   # on the page too (phones)
    assert "colour" not in at.query_params                   # the ignored part is dropped
    dashboard.go(at, TRAIN)
    assert "Ignored" not in " ".join(dashboard.texts(at.sidebar.caption))    # said once
    settings = at.session_state[state.SETTINGS]
    assert settings["dropout"] == 0.3                      # the valid part is kept
    assert settings["learning_rate"] == state.default_settings()["learning_rate"]


def test_a_teachers_link_hides_controls_and_pages(dashboard):
    at = dashboard.open(TRAIN, query={"hide": "optimizer,dropout,preset",
                                      "pages": "train,evaluate"})
    keys = {widget.key for kind in ("selectbox", "slider", "select_slider")
            for widget in getattr(at.sidebar, kind)}
    assert "w_optimizer" not in keys and "w_dropout" not in keys and "w_preset" not in keys
    assert "w_activation" in keys
    assert dashboard.texts(at.sidebar.get("page_link")) == ["Home", "Train", "Evaluate"]
    assert at.query_params["hide"] == "optimizer,dropout,preset"
    dashboard.go(at, "pages/2_evaluate.py")                # it holds on every page
    assert dashboard.texts(at.sidebar.get("page_link")) == ["Home", "Train", "Evaluate"]
    assert at.query_params["pages"] == "train,evaluate"


def test_the_learning_rate_reads_plainly_on_a_log_scale():
    from ui.sidebar import log_choices, readable_number

    choices = log_choices("learning_rate", 0.001)
    assert choices[0] == 1e-6 and choices[-1] == 1.0 and 0.0003 in choices
    assert [readable_number(value) for value in (1e-6, 5e-5, 0.0003, 0.001, 0.5, 1.0)] == \
        ["1e-6", "5e-5", "0.0003", "0.001", "0.5", "1"]
    assert 0.0007 in log_choices("learning_rate", 0.0007)  # a value a link set stays
    assert log_choices("l2", 0.0)[0] == 0.0


def test_an_out_of_range_number_is_explained_not_dropped(dashboard):
    at = dashboard.open(TRAIN)
    at.number_input(key="w_batch_size").set_value(10_000).run()
    assert message_under(at, "w_batch_size").startswith("batch_size must be in [1, 4096]")
    assert not train_enabled(at)


def test_the_preset_box_says_what_was_changed_from_it(dashboard):
    at = dashboard.open(TRAIN)
    assert not [text for text in dashboard.texts(at.sidebar.caption) if "Changed from" in text]
    dashboard.configure(at, epochs=4, optimizer="sgd")
    (said,) = [text for text in dashboard.texts(at.sidebar.caption) if "Changed from" in text]
    assert said == "Changed from default: optimizer, epochs"
