"""ui.page's favicon: each page's emoji as an inline SVG that stays ASCII."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from ui.page import emoji_favicon


@pytest.mark.parametrize("emoji", ["🔢", "🏋️", "✏️", "⚖️"])
def test_the_favicon_is_ascii_svg_showing_the_emoji(emoji):
    svg = emoji_favicon(emoji)
    # Streamlit looks a non-ASCII icon up in its emoji catalogue (0.2 s to import).
    assert svg.isascii() and svg.startswith("<svg ")
    text = ElementTree.fromstring(svg).find("{http://www.w3.org/2000/svg}text")
    assert text.text == emoji          # variation selectors kept


def test_a_page_setup_leaves_the_emoji_catalogue_unimported():
    # Streamlit's bare mode runs the page's Python without a server: enough to see what
    # set_page_config imported.
    script = ("import sys, streamlit\n"
              "from ui import page\n"
              "page.setup('Home')\n"
              "print('streamlit.emojis' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_long_lived_objects_are_frozen_once_per_new_set_of_modules(monkeypatch):
    import gc
    import types

    from ui import page

    monkeypatch.setattr(page, "_modules_when_frozen", 0)
    try:
        page._freeze_new_modules()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        page._freeze_new_modules()            # nothing imported since: nothing more
        assert gc.get_freeze_count() == frozen
        module = types.ModuleType("digit_lab_test_module")
        module.table = [[index] for index in range(1000)]    # lists are always tracked
        monkeypatch.setitem(sys.modules, module.__name__, module)
        page._freeze_new_modules()            # a page imported something new
        assert gc.get_freeze_count() >= frozen + 1000
    finally:
        gc.unfreeze()

