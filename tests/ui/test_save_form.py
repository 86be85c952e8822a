"""The save form keeps what the visitor typed even when its suggested name changes between
runs (it holds the minute), and saves under that name."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _form_whose_default_changes_every_run() -> None:
    import streamlit as st

    from engine.config import TrainConfig
    from engine.numpy_nn.network import NumpyNetwork
    from ui.train_view import save_form

    if "model" not in st.session_state:
        st.session_state.model = NumpyNetwork(TrainConfig(hidden_sizes=(8,), epochs=1))
        st.session_state.runs = 0
    st.session_state.runs += 1
    save_form("save_model", "**Save**", st.session_state.model,
              default_name=f"numpy-mlp-minute-{st.session_state.runs}", metrics=None,
              command="test")


def test_a_typed_name_survives_a_changed_default(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIT_LAB_MODELS", str(tmp_path))
    at = AppTest.from_function(_form_whose_default_changes_every_run, default_timeout=30)
    at.run()
    (name_box,) = at.text_input
    assert name_box.value == "numpy-mlp-minute-1"
    name_box.input("my-model")
    at.button[0].click().run()          # this run's default is "...-minute-2"
    assert [success.value for success in at.success] == ["Saved as **my-model**."]
    assert (tmp_path / "my-model" / "meta.json").is_file()
    assert not any(tmp_path.glob("numpy-mlp-minute-*"))
