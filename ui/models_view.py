"""Parts of the Models page: a table row and a card per model, downloads, rename, delete."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from engine import registry
from engine.config import describe
from ui import cache, state, visitors

CHOSEN = "models_chosen"              # the Model select box
_CHOOSE_NEXT = "models_choose_next"    # a name to select on the next run


def row(info: registry.ModelInfo) -> dict[str, Any]:
    accuracy = info.test_accuracy
    return {
        "name": info.name,
        "engine": info.engine or "?",
        "architecture": info.architecture or "?",
        "test accuracy": None if accuracy is None else accuracy * 100,
        "created": (info.created or "").replace("T", " ")[:16],
        "size (MB)": info.size_bytes / 1e6,
        "status": "broken" if info.problem else "ok",
    }


def _epochs_text(epochs: list[dict]) -> str:
    """'3 epochs', or '0.64 epochs' when a stop cut one short."""
    done = sum(float(record.get("fraction", 1.0)) for record in epochs)
    if done == int(done):
        return f"{int(done)} epoch{'' if done == 1 else 's'}"
    return f"{done:.2f} epochs"


def card(info: registry.ModelInfo) -> None:
    """What made this model: config, training, data, versions, the command."""
    meta = info.meta
    config = meta["config_object"]
    history = meta.get("history") or {}
    epochs = history.get("epochs") or []
    lines = [
        f"**{info.name}**: {meta['engine']} {describe(config)}",
        f"{meta.get('parameter_count', 0):,} parameters; {_epochs_text(epochs)} "
        f"({history.get('status', '?')}) on {config.train_size:,} MNIST images",
    ]
    if info.test_accuracy is not None:
        lines.append(f"MNIST test accuracy {info.test_accuracy:.2%}")
    versions = ", ".join(f"{name} {version}" for name, version in
                         (meta.get("versions") or {}).items())
    if versions:
        lines.append(f"Made with {versions}")
    st.markdown("  \n".join(lines))
    if meta.get("command"):
        st.code(meta["command"], language="bash", wrap_lines=True)


def downloads(info: registry.ModelInfo) -> None:
    weights_file = info.meta["weights_file"]
    left, right = st.columns(2)
    left.download_button(f"Download {weights_file}", data=(info.path / weights_file).read_bytes,
                         file_name=f"{info.name}-{weights_file}", icon=":material/download:",
                         width="stretch", on_click="ignore")
    card_json = {key: value for key, value in info.meta.items() if key != "config_object"}
    right.download_button("Download model card (meta.json)",
                          data=json.dumps(card_json, indent=2),
                          file_name=f"{info.name}-meta.json", mime="application/json",
                          icon=":material/description:", width="stretch",
                          on_click="ignore")


def choose_pending(names: list[str]) -> None:
    """Select the model a rename asked for, or at first the active one; call before the
    select box is drawn (a widget's value cannot change once it is on the page)."""
    if _CHOOSE_NEXT in st.session_state:
        st.session_state[CHOSEN] = st.session_state.pop(_CHOOSE_NEXT)
    elif st.session_state.get(CHOSEN) not in names and active_name() in names:
        st.session_state[CHOSEN] = active_name()


def acting_visitor() -> str | None:
    """Whose changes this page makes: the visitor's owner id on a shared deployment; None
    locally, where one person manages every model."""
    return visitors.owner_id(visitors.token()) if registry.shared_deployment() else None


def change_refusal(info: registry.ModelInfo) -> str | None:
    """Why this visitor may not rename or delete the model; None when they may."""
    return registry.change_refusal(info.name, registry.recorded_owner(info.path),
                                   acting_visitor())


def rename(old: str, new: str) -> None:
    was_active = is_active(old)
    try:
        path = registry.rename(old, new, visitor=acting_visitor())
    except registry.ModelError as error:
        st.error(str(error))
        return
    if was_active:
        # The active model keeps its weights in memory; only its name and folder moved.
        renamed, _ = cache.saved_model(path)
        state.set_active(renamed, chosen=True)
    st.session_state[_CHOOSE_NEXT] = path.name
    st.rerun()


def delete(name: str) -> None:
    try:
        registry.delete(name, visitor=acting_visitor())
    except registry.ModelError as error:
        st.error(str(error))
        return
    _forget_active(name)
    st.rerun()


def active_name() -> str | None:
    """The registry name of the visitor's active model; None for none or one trained here."""
    active = state.active_model()
    return active.name if active is not None and active.origin != "trained here" else None


def is_active(name: str) -> bool:
    return name == active_name()


def _forget_active(name: str) -> None:
    """The deleted model was active: the shipped default takes over (every page works
    again at once), or no model when the default itself is gone."""
    if not is_active(name):
        return
    default, _ = cache.saved_model(registry.models_dir() / state.DEFAULT_MODEL_NAME)
    state.set_active(default, chosen=True)
    if default is not None:
        st.toast(f"**{name}** is deleted; the shipped **{default.name}** is active again.",
                 icon=":material/swap_horiz:")
