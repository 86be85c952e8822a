"""Models: saved models with what made them; activate, rename, delete, download."""

import pandas as pd
import streamlit as st

from engine import registry
from ui import cache, models_view, page, state

page.setup("Models", icon="📦")

st.title("Models")
st.caption(f"Saved in `{registry.models_dir()}`. On Streamlit Community Cloud this folder is "
           "emptied when the app restarts: download what you want to keep.")
if registry.shared_deployment():
    st.caption("This server is shared: you can use every model, and rename or delete the "
               "ones you saved.")

infos = registry.list_models()
if not infos:
    st.info("No saved models yet. Train one on **Train** and save it.")
    st.stop()

table = pd.DataFrame([models_view.row(info) for info in infos])
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"test accuracy": st.column_config.NumberColumn(format="%.2f%%"),
                            "size (MB)": st.column_config.NumberColumn(format="%.2f")})

names = [info.name for info in infos]
models_view.choose_pending(names)
chosen_name = st.selectbox("Model", names, key=models_view.CHOSEN)
info = next(item for item in infos if item.name == chosen_name)
refusal = models_view.change_refusal(info)
locked = f"Rename and delete are off: {refusal}." if refusal else None

if info.problem:
    st.error(f"This model cannot be used: {info.problem}", icon=":material/broken_image:")
else:
    models_view.card(info)

activate, rename_column, delete_column = st.columns(3)
with activate:
    already = models_view.is_active(info.name)
    if st.button("Active" if already else "Make active", icon=":material/check_circle:",
                 disabled=bool(info.problem) or already, width="stretch"):
        active, error = cache.saved_model(info.path)
        if active is None:
            st.error(error)
        else:
            state.set_active(active)
            # Rerun so the sidebar, drawn before this click, names the new model.
            st.toast(f"**{info.name}** is now the active model.", icon=":material/check:")
            st.rerun()
with rename_column:
    # Keyed by model: an unkeyed popover stays open when the chosen model changes under
    # it (after a delete), offering to act on a model this visitor may not touch.
    with st.popover("Rename", icon=":material/edit:", width="stretch",
                    disabled=bool(refusal), help=locked, key=f"models_rename_{info.name}"):
        # Keyed by model: a key alone keeps its text when another model is chosen.
        new_name = st.text_input("New name", value=info.name,
                                 key=f"models_new_name_{info.name}")
        if st.button("Rename", key="models_rename"):
            models_view.rename(info.name, new_name)
with delete_column:
    with st.popover("Delete", icon=":material/delete:", width="stretch",
                    disabled=bool(refusal), help=locked, key=f"models_delete_{info.name}"):
        st.warning(f"Delete **{info.name}** for good?")
        if info.name in registry.SHIPPED_MODELS:
            st.caption("It ships with the app: `make models` builds it again.")
        if st.button("Yes, delete it", type="primary", key="models_delete"):
            models_view.delete(info.name)

if locked:
    st.caption(locked)
if not info.problem:
    models_view.downloads(info)
