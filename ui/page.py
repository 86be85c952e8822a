"""What every page does first: page config, the sidebar, and the data and model it needs,
with a message for people (never a traceback) when one is missing."""

from __future__ import annotations

import gc
import sys
from typing import Any

import streamlit as st

from ui import cache, state
from ui.active import ActiveModel
from ui.sidebar import Settings, render_sidebar

# Streamlit's first element in a process checks whether it runs in a Python REPL, to print a
# "use streamlit run" hint, by inspect.stack(): that reads the source of every frame and
# resolves the path of every loaded module, 60 ms of a fresh server's first page here
# (measured with cProfile in the server). Pages only ever run under `streamlit run`, so the
# hint is marked as given. A Streamlit without this flag simply keeps its check.
_STREAMLIT_USE_HINT_GIVEN = "_use_warning_has_been_displayed"


def _skip_streamlit_repl_check() -> None:
    """Mark Streamlit's once-per-process REPL hint as given, if Streamlit has the flag."""
    from streamlit import delta_generator

    if hasattr(delta_generator, _STREAMLIT_USE_HINT_GIVEN):
        setattr(delta_generator, _STREAMLIT_USE_HINT_GIVEN, True)


_skip_streamlit_repl_check()


def setup(title: str, *, icon: str = "🔢", settings_expanded: bool = False) -> Settings:
    cache.prefetch_mnist()
    st.set_page_config(page_title=f"{title} · Digit Lab", page_icon=emoji_favicon(icon),
                       layout="wide")
    _freeze_new_modules()
    return render_sidebar(settings_expanded=settings_expanded)


def emoji_favicon(emoji: str) -> str:
    """`emoji` as a small SVG drawn by the browser itself.

    Not the emoji string: Streamlit checks a non-ASCII icon against its emoji catalogue,
    whose import takes 0.2 s, a fifth of a fresh server's first page. Not a
    ":material/...:" icon: those favicons come from a font CDN, which fails offline. The
    emoji is written as character references so the SVG stays ASCII."""
    references = "".join(f"&#x{ord(char):x};" for char in emoji)
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">'
            f'<text y=".9em" font-size="90">{references}</text></svg>')


_modules_when_frozen = 0


def _freeze_new_modules() -> None:
    """Freeze (gc.freeze) whatever is alive when a page has brought new modules, so the
    full collection Streamlit runs after every script stops walking them."""
    # That walk cost Evaluate's first visit 0.3 s once pandas and Plotly were in, and
    # every run 0.2 s once Keras was (TensorFlow's ~250,000 objects). Pages import before
    # they call setup(), so the freeze lands before this run's collection. No collection
    # first: the last run's just ran; what garbage is frozen with the rest is still freed
    # by reference counting, only not by the cycle collector.
    global _modules_when_frozen
    if len(sys.modules) != _modules_when_frozen:
        _modules_when_frozen = len(sys.modules)
        gc.freeze()


def require_mnist() -> Any:
    """MNIST, or an error for people and the end of this page's run."""
    data, error = cache.mnist()
    if data is None:
        st.error(f"MNIST could not be loaded.\n\n{error}", icon=":material/cloud_off:")
        st.stop()
    return data


def require_model() -> ActiveModel:
    """The active model, or a pointer to where to get one and the end of this run."""
    active = state.active_model()
    if active is None:
        st.info("No model is active yet. Train one on **Train**, or pick a saved one on "
                "**Models**.", icon=":material/info:")
        st.page_link("pages/1_train.py", label="Train a model", icon=":material/model_training:")
        st.page_link("pages/7_models.py", label="Pick a saved model", icon=":material/inventory_2:")
        st.stop()
    return active
