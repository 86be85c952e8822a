"""Home (dashboard.py) through AppTest: it renders its parts, never imports TensorFlow,
and every page says clearly when MNIST cannot be had, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import streamlit as st

from ui import state
from ui.sidebar import PAGES as SIDEBAR_PAGES

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard.py"
PAGE_FILES = ("pages/0_lessons.py", "pages/1_train.py", "pages/2_evaluate.py", "pages/3_draw.py",
              "pages/4_inside.py", "pages/5_mistakes.py", "pages/6_compare.py",
              "pages/7_models.py", "pages/8_sweep.py")


def test_home_shows_the_data_the_samples_the_model_and_the_way_in(dashboard, mnist):
    at = dashboard.open()
    assert dashboard.texts(at.title) == ["Digit Lab"]
    markdown = " ".join(dashboard.texts(at.markdown))
    assert f"{len(mnist.train_labels):,} training and {len(mnist.test_labels):,} test" \
        in markdown
    assert "**Active model:** default-mlp (shipped)" in markdown
    assert at.session_state[state.ACTIVE_MODEL] is None   # told from meta.json, not loaded
    assert not at.error
    (grid,) = at.image
    assert grid.captions == ["Eight test digits of each class, 28 x 28 pixels each"]
    main_links = dashboard.texts(at.main.get("page_link"))
    assert len(main_links) == 9 and main_links[0].startswith("**Lessons**")
    assert dashboard.texts(at.sidebar.get("page_link")) == [
        label for _, label, _ in SIDEBAR_PAGES]
    assert [path for path, _, _ in SIDEBAR_PAGES][1:] == list(PAGE_FILES)


def test_a_default_model_with_broken_weights_is_not_offered(dashboard):
    weights = dashboard.models_dir / "default-mlp" / "model.npz"
    weights.write_bytes(weights.read_bytes()[:1000])
    at = dashboard.open()
    assert "default-mlp (shipped)" in dashboard.texts(at.sidebar.caption)[0]
    dashboard.go(at, "pages/2_evaluate.py")         # needs the model: loading it fails
    assert any("No model is active" in text for text in dashboard.texts(at.info))
    assert not at.exception
    dashboard.go(at, "dashboard.py")
    assert "none yet" in dashboard.texts(at.sidebar.caption)[0]
    assert "**Active model:** none yet" in " ".join(dashboard.texts(at.markdown))


def test_every_page_renders_without_exception(dashboard):
    at = dashboard.open()
    titles = []
    for page in PAGE_FILES:
        dashboard.go(at, page)
        titles.extend(dashboard.texts(at.title))
        assert not at.error, (page, dashboard.texts(at.error))
    assert titles == ["Lessons", "Train", "Evaluate", "Draw & test", "Inside the network",
                      "Mistakes", "Compare", "Models", "Sweep"]


def test_home_does_not_import_tensorflow(app_env, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(DASHBOARD)!r}, default_timeout=120).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.title[0].value == "Digit Lab", [t.value for t in at.title]
        print("tensorflow loaded:", "tensorflow" in sys.modules, "keras loaded:",
              "keras" in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=os.environ.copy(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tensorflow loaded: False keras loaded: False" in result.stdout, result.stdout


@pytest.mark.parametrize("flag", ["as the pages leave it", "cleared"])
def test_a_fresh_processs_first_page_skips_streamlits_repl_check(app_env, tmp_path, flag):
    # ui/page.py marks Streamlit's once-per-process "use streamlit run" hint as given, so
    # its inspect.stack() (60 ms of a fresh server's first page) never runs; cleared, the
    # same run calls it, which shows the count below can see it.
    import streamlit.delta_generator

    if not hasattr(streamlit.delta_generator, "_use_warning_has_been_displayed"):
        pytest.skip("this Streamlit has no such hint: nothing to skip")
    script = textwrap.dedent(f"""
        import inspect
        import streamlit.delta_generator
        from streamlit.testing.v1 import AppTest
        import ui.page
        if {flag == "cleared"!r}:
            streamlit.delta_generator._use_warning_has_been_displayed = False
        at = AppTest.from_file({str(DASHBOARD)!r}, default_timeout=120)
        calls, real_stack = [], inspect.stack
        inspect.stack = lambda *args, **kwargs: calls.append(1) or real_stack(*args, **kwargs)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        print("stack calls:", len(calls))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(DASHBOARD.parent)},
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = "stack calls: 1" if flag == "cleared" else "stack calls: 0"
    assert expected in result.stdout, result.stdout


def test_without_mnist_every_page_says_so_and_none_raises(dashboard, tmp_path, monkeypatch):
    import engine.data

    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "empty-cache").mkdir()
    monkeypatch.setenv("DIGIT_LAB_MNIST_OFFLINE", "/nonexistent")
    monkeypatch.delenv("MNIST_PATH", raising=False)
    monkeypatch.setenv("DIGIT_LAB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("DIGIT_LAB_MNIST_URL", "http://127.0.0.1:9/x")
    monkeypatch.setattr(engine.data, "_memo", None)     # the process-wide copy
    st.cache_resource.clear()
    st.cache_data.clear()
    at = dashboard.open()
    (error,) = at.error
    assert error.value.startswith("MNIST could not be loaded")
    assert "MNIST_PATH" in error.value and "127.0.0.1:9" in error.value
    assert not at.image
    for page in PAGE_FILES:
        dashboard.go(at, page)
        errors = dashboard.texts(at.error)
        if page in ("pages/0_lessons.py", "pages/3_draw.py", "pages/7_models.py"):  # no MNIST
            assert not errors and at.title, page
        else:
            assert len(errors) == 1 and errors[0].startswith("MNIST could not be loaded"), \
                (page, errors)
            assert not at.title, page          # the page stopped after the message
    st.cache_resource.clear()     # later tests get the real MNIST again


def test_an_altered_mnist_copy_is_named_on_home_and_the_next_source_used(
        dashboard, mnist, tmp_path, monkeypatch):
    import engine.data

    altered = tmp_path / "mnist.npz"
    blanked = mnist.test_images.copy()
    blanked[17] = 0
    np.savez(altered, x_train=mnist.train_images, y_train=mnist.train_labels,
             x_test=blanked, y_test=mnist.test_labels)
    monkeypatch.setenv("MNIST_PATH", str(altered))
    monkeypatch.setattr(engine.data, "_memo", None)
    st.cache_resource.clear()
    try:
        at = dashboard.open()
        (warning,) = at.warning
        assert warning.value.startswith(f"Passed over: MNIST_PATH: {altered}: x_test does "
                                        f"not match")
        assert not at.error
        assert any("10,000 test images" in text for text in dashboard.texts(at.markdown))
    finally:
        monkeypatch.delenv("MNIST_PATH")
        monkeypatch.setattr(engine.data, "_memo", None)
        st.cache_resource.clear()     # later tests get the real MNIST again
