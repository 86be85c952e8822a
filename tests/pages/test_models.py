"""The Models page through AppTest, on a private copy of models/: the listing and card,
activate, rename, delete with confirmation, and broken models listed with their reason
while the others still load."""

from __future__ import annotations

import shutil

import pytest

from ui import state

MODELS = "pages/7_models.py"


@pytest.fixture
def second_model(dashboard):
    """A second, healthy model: a copy of the shipped default-mlp."""
    shutil.copytree(dashboard.models_dir / "default-mlp", dashboard.models_dir / "second")
    return "second"


def names_listed(at) -> list[str]:
    return list(at.dataframe[0].value["name"])


def choose(at, name: str) -> None:
    at.selectbox(key="models_chosen").select(name).run()


def test_models_lists_the_shipped_model_with_its_card(dashboard):
    at = dashboard.open(MODELS)
    assert dashboard.texts(at.title) == ["Models"]
    assert str(dashboard.models_dir) in dashboard.texts(at.caption)[0]
    table = at.dataframe[0].value
    on_disk = sorted(path.name for path in dashboard.models_dir.iterdir()
                     if path.is_dir() and not path.name.startswith("."))
    assert sorted(table["name"]) == on_disk and set(table["status"]) == {"ok"}
    choose(at, "default-mlp")
    card = " ".join(dashboard.texts(at.markdown))
    assert "**default-mlp**: numpy MLP 784-" in card
    assert [button.label for button in at.get("download_button")][:2] == [
        "Download model.npz", "Download model card (meta.json)"]


def test_make_active_switches_the_model_every_page_uses(dashboard, second_model):
    at = dashboard.open(MODELS)
    choose(at, second_model)
    dashboard.click(at, "Make active")
    active = at.session_state[state.ACTIVE_MODEL]
    assert active.name == "second" and active.origin == "saved"
    assert any("second (saved)" in text for text in dashboard.texts(at.sidebar.caption))
    dashboard.go(at, "pages/2_evaluate.py")
    assert dashboard.texts(at.caption)[0].startswith("second (saved)")


def test_rename_moves_the_folder_and_keeps_it_selected_and_active(dashboard, second_model):
    at = dashboard.open(MODELS)
    choose(at, second_model)
    dashboard.click(at, "Make active")
    # Each model's rename box starts from its own name.
    assert at.text_input(key="models_new_name_second").value == "second"
    choose(at, "default-mlp")
    assert at.text_input(key="models_new_name_default-mlp").value == "default-mlp"
    choose(at, "second")
    at.text_input(key="models_new_name_second").input("renamed").run()
    at.button(key="models_rename").click().run()
    dashboard.assert_ok(at)
    assert not (dashboard.models_dir / "second").exists()
    assert (dashboard.models_dir / "renamed" / "meta.json").is_file()
    assert "renamed" in names_listed(at) and "second" not in names_listed(at)
    assert at.selectbox(key="models_chosen").value == "renamed"
    active = at.session_state[state.ACTIVE_MODEL]
    assert active is not None and active.name == "renamed"
    dashboard.go(at, "pages/2_evaluate.py")
    assert dashboard.texts(at.caption)[0].startswith("renamed (saved)")


def test_rename_to_a_taken_or_bad_name_says_why(dashboard, second_model):
    at = dashboard.open(MODELS)
    choose(at, second_model)
    for bad_name, reason in (("default-mlp", "already exists"),
                             ("../escape", "is not a model name")):
        at.text_input(key="models_new_name_second").input(bad_name).run()
        at.button(key="models_rename").click().run()
        dashboard.assert_ok(at)
        (error,) = at.error
        assert reason in error.value
        assert (dashboard.models_dir / "second").is_dir()


def test_delete_asks_first_then_removes_the_model(dashboard, second_model):
    at = dashboard.open(MODELS)
    choose(at, second_model)
    dashboard.click(at, "Make active")
    assert any("Delete **second** for good?" in text for text in dashboard.texts(at.warning))
    assert (dashboard.models_dir / "second").is_dir()   # drawing the question deletes nothing
    at.button(key="models_delete").click().run()
    dashboard.assert_ok(at)
    assert not (dashboard.models_dir / "second").exists()
    assert "second" not in names_listed(at)
    # The deleted model was the active one: the shipped default takes over, and says so.
    assert at.session_state[state.ACTIVE_MODEL].name == "default-mlp"
    assert any("default-mlp** is active again" in toast.value for toast in at.toast)
    dashboard.go(at, "pages/2_evaluate.py")
    assert dashboard.texts(at.caption)[0].startswith("default-mlp (shipped)")


def test_deleting_the_active_default_leaves_no_model(dashboard):
    at = dashboard.open(MODELS)
    choose(at, "default-mlp")
    at.button(key="models_delete").click().run()
    dashboard.assert_ok(at)
    assert at.session_state[state.ACTIVE_MODEL] is None
    dashboard.go(at, "pages/2_evaluate.py")
    assert any("No model is active yet" in text for text in dashboard.texts(at.info))


def test_a_broken_model_is_listed_with_its_reason_and_the_rest_still_load(dashboard,
                                                                          second_model):
    weights = dashboard.models_dir / "second" / "model.npz"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF                       # one flipped byte
    weights.write_bytes(bytes(data))
    shutil.copytree(dashboard.models_dir / "default-mlp", dashboard.models_dir / "no-meta")
    (dashboard.models_dir / "no-meta" / "meta.json").write_text("{not json")
    at = dashboard.open(MODELS)
    table = at.dataframe[0].value
    status = dict(zip(table["name"], table["status"]))
    assert status["second"] == "broken" and status["no-meta"] == "broken"
    assert status["default-mlp"] == "ok"
    choose(at, "second")
    (error,) = at.error
    assert error.value.startswith("This model cannot be used: second: model.npz does not "
                                  "match the hash")
    assert dashboard.button(at, "Make active").disabled
    assert not [button for button in at.get("download_button")
                if button.label.startswith("Download model")]
    choose(at, "no-meta")
    assert "meta.json is unreadable" in at.error[0].value
    choose(at, "default-mlp")
    assert not at.error
    assert dashboard.button(at, "Active").disabled      # the default, and it loads
    assert at.session_state[state.ACTIVE_MODEL].name == "default-mlp"
    dashboard.go(at, "pages/2_evaluate.py")
    assert {metric.label for metric in at.metric} >= {"Test accuracy", "Macro F1"}


def test_an_empty_models_folder_says_how_to_get_one(dashboard):
    for folder in dashboard.models_dir.iterdir():
        shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
    at = dashboard.open(MODELS)
    assert any("No saved models yet" in text for text in dashboard.texts(at.info))
    assert not at.dataframe


def popovers(at) -> dict:
    return {block.proto.popover.label: block.proto.popover for block in at.get("popover")}


def test_locally_one_person_manages_every_model(dashboard, second_model, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_SHARED", "0")
    at = dashboard.open(MODELS)
    assert at.selectbox(key="models_chosen").value == "default-mlp"    # the active one
    assert dashboard.button(at, "Active").disabled                    # nothing to make
    assert not popovers(at)["Rename"].disabled and not popovers(at)["Delete"].disabled
    assert any("`make models` builds it again" in text for text in dashboard.texts(at.caption))
    assert not any("shared" in text for text in dashboard.texts(at.caption))


def test_on_a_shared_server_a_visitor_changes_only_what_they_saved(dashboard, second_model,
                                                                    monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_SHARED", "1")
    alice = dashboard.open("pages/1_train.py")
    dashboard.train(alice)
    [box for box in alice.text_input if box.label == "Name"][0].input("alices")
    dashboard.click(alice, "Save")
    dashboard.go(alice, MODELS)
    assert any("This server is shared" in text for text in dashboard.texts(alice.caption))
    for name, reason in (("default-mlp", "ships with the app"),
                         (second_model, "records no owner")):
        choose(alice, name)
        assert popovers(alice)["Rename"].disabled and popovers(alice)["Delete"].disabled
        assert reason in popovers(alice)["Delete"].help
        assert any(reason in text for text in dashboard.texts(alice.caption))  # said aloud
        assert not dashboard.button(alice, "Make active").disabled          # still usable
    choose(alice, "alices")
    assert not popovers(alice)["Rename"].disabled and not popovers(alice)["Delete"].disabled

    # Another visitor uses Alice's model but cannot change it.
    bob = dashboard.open(MODELS)
    choose(bob, "alices")
    assert popovers(bob)["Delete"].disabled
    assert "another visitor saved it" in popovers(bob)["Delete"].help
    dashboard.click(bob, "Make active")
    assert bob.session_state[state.ACTIVE_MODEL].name == "alices"

    # Alice, back after a reload (same token in the URL), still owns it and renames it.
    token = alice.query_params["visitor"]
    again = dashboard.open(MODELS, query={"visitor": token})
    choose(again, "alices")
    [box for box in again.text_input if box.label == "New name"][0].input("alices-best")
    dashboard.click(again, "Rename")
    assert "alices-best" in names_listed(again)
    choose(again, "alices-best")
    dashboard.click(again, "Yes, delete it")
    assert "alices-best" not in names_listed(again)