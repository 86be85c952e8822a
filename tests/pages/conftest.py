"""Shared fixtures for the dashboard's AppTest tests: each test gets its own copy of the
models folder and of a custom-digits folder, and a `dashboard` helper that opens pages
the way a visitor does (Home first, then a page switch) and drives the sidebar."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ui import jobs, state

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = str(REPO / "dashboard.py")
RUN_TIMEOUT = 120       # seconds for one script run (the first Keras build is slow)
JOB_TIMEOUT = 180       # seconds for a tiny training run on a loaded 2-core machine
TINY = {"train_size": 1000, "hidden_sizes": "32", "epochs": 2, "batch_size": 64}
CUSTOM_PER_LABEL = 2


def upscaled_picture(image: np.ndarray, *, scale: int = 4) -> np.ndarray:
    """An MNIST digit as a person's picture: larger, and dark ink on light paper."""
    from PIL import Image

    big = Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    return 255 - np.asarray(big)


@pytest.fixture(scope="session")
def custom_digits_source(tmp_path_factory, mnist) -> Path:
    """The repository's custom digits if it has any, else a few real test digits."""
    from engine.custom import count_by_label, save_custom_digit

    folder = tmp_path_factory.mktemp("custom-digits") / "digits"
    repo_digits = REPO / "custom_digits"
    if repo_digits.is_dir() and sum(count_by_label(repo_digits)):
        shutil.copytree(repo_digits, folder)
        return folder
    for label in range(10):
        for index in np.flatnonzero(mnist.test_labels == label)[:CUSTOM_PER_LABEL]:
            save_custom_digit(upscaled_picture(mnist.test_images[index]), label, folder)
    return folder


def assert_ok(at: AppTest) -> None:
    """The run raised nothing (a visitor would have seen a traceback)."""
    assert not at.exception, [exception.value for exception in at.exception]


class Dashboard:
    """Opens the app in AppTest sessions and drives it; remembers them to clean up."""

    def __init__(self, models_dir: Path, custom_dir: Path) -> None:
        self.models_dir, self.custom_dir = models_dir, custom_dir
        self.apps: list[AppTest] = []
        self.assert_ok = assert_ok

    def open(self, page: str | None = None, *, query: dict[str, str] | None = None
             ) -> AppTest:
        """A new visitor: Home first (as the browser does), then `page` if given."""
        at = AppTest.from_file(DASHBOARD, default_timeout=RUN_TIMEOUT)
        for key, value in (query or {}).items():
            at.query_params[key] = value
        self.apps.append(at)
        at.run()
        assert_ok(at)
        if page is not None:
            at.switch_page(page).run()
            assert_ok(at)
        return at

    @staticmethod
    def page_params(at: AppTest) -> dict[str, str]:
        """The page's own query parameters, without the visitor token every page keeps."""
        from ui.visitors import QUERY_KEY
        return {key: value for key, value in at.query_params.items() if key != QUERY_KEY}

    @staticmethod
    def texts(elements: Any) -> list[str]:
        """The text of each element of an AppTest list (errors, captions, ...)."""
        return [element.value for element in elements]

    def go(self, at: AppTest, page: str) -> AppTest:
        at.switch_page(page).run()
        assert_ok(at)
        return at

    def open_tab(self, at: AppTest, key: str, label: str) -> AppTest:
        """Select tab `label` of the stateful st.tabs under `key` (AppTest cannot click a
        tab; a visitor's click sets the same state) and rerun: only an open tab is drawn."""
        at.session_state[key] = label
        at.run()
        assert_ok(at)
        return at

    @staticmethod
    def button(at: AppTest, label: str) -> Any:
        matches = [button for button in at.button if button.label == label]
        assert matches, f"no button {label!r}: {[button.label for button in at.button]}"
        return matches[0]

    def click(self, at: AppTest, label: str) -> AppTest:
        self.button(at, label).click().run()
        assert_ok(at)
        return at

    @staticmethod
    def configure(at: AppTest, **values: Any) -> AppTest:
        """Set sidebar widgets (`w_<field>`) through the widget API, then run once."""
        for name, value in values.items():
            key = f"w_{name}"
            for kind in ("slider", "select_slider", "number_input", "text_input", "selectbox",
                         "radio"):
                widgets = [widget for widget in getattr(at, kind) if widget.key == key]
                if widgets:
                    widget = widgets[0]
                    widget.input(value) if kind == "text_input" else widget.set_value(value)
                    break
            else:
                raise AssertionError(f"no sidebar widget {key}")
        at.run()
        assert_ok(at)
        return at

    def train(self, at: AppTest, **values: Any) -> Any:
        """Set a tiny config (plus `values`), press Train, wait for the run, rerun."""
        self.configure(at, **{**TINY, **values})
        self.click(at, "Train")
        job = at.session_state[state.JOB]
        assert job is not None, [warning.value for warning in at.warning]
        return self.finish(at, state.JOB)

    def finish(self, at: AppTest, key: str) -> Any:
        """Wait for the session's job under `key` and rerun, as the live fragment would."""
        job = at.session_state[key]
        job.join(JOB_TIMEOUT)
        done = job.finished if hasattr(job, "jobs") else job.snapshot().finished
        assert done, f"{key} did not finish within {JOB_TIMEOUT} s"
        at.run()
        assert_ok(at)
        return job

    def close(self) -> None:
        for at in self.apps:
            for key in (state.JOB, state.COMPARE_JOB):
                job = at.session_state[key] if key in at.session_state else None
                if job is not None:
                    job.stop()
                    job.join(JOB_TIMEOUT)


@pytest.fixture
def app_env(tmp_path, monkeypatch, custom_digits_source) -> tuple[Path, Path]:
    """Private models and custom-digits folders, a fresh run limit, empty st caches."""
    models_dir, custom_dir = tmp_path / "models", tmp_path / "custom_digits"
    # Dot entries are locks and half-written saves (another process may be saving now).
    shutil.copytree(REPO / "models", models_dir, ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(custom_digits_source, custom_dir)
    monkeypatch.setenv("DIGIT_LAB_MODELS", str(models_dir))
    monkeypatch.setenv("DIGIT_LAB_CUSTOM_DIR", str(custom_dir))
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "8")
    monkeypatch.setattr(jobs, "_slots", None)
    st.cache_data.clear()
    st.cache_resource.clear()
    return models_dir, custom_dir


@pytest.fixture
def dashboard(app_env):
    helper = Dashboard(*app_env)
    yield helper
    helper.close()


BUSY = "as many models as it allows at once (1)"      # what a refused run says


@pytest.fixture
def busy_server(app_env, monkeypatch):
    """A server allowing one run at a time, whose slot another visitor's run holds."""
    monkeypatch.setenv("DIGIT_LAB_MAX_CONCURRENT_RUNS", "1")
    from ui import jobs
    monkeypatch.setattr(jobs, "_slots", None)
    jobs._run_slots().acquire()
    yield
    jobs._run_slots().release()
