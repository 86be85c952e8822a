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
