"""Screenshots of the real app for the README, into docs/screenshots/ at 1400x900. Only
with DIGIT_LAB_SCREENSHOTS=1 (otherwise deselected, so CI never rewrites them):

    DIGIT_LAB_SCREENSHOTS=1 .venv/bin/python -m pytest tests/e2e/test_screenshots.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import App, app_env
from tests.e2e.moves import set_hyperparameters
from tests.support.handwriting import NEAT_HAND, digit_strokes
from tests.support.liveserver import (CANVAS_SELECTOR, ERROR_SELECTOR, ROOT, draw_strokes,
                                      finished_runs, open_page, streamlit_server, wait_for_run)

pytestmark = [pytest.mark.e2e, pytest.mark.screenshots]
SHOTS = ROOT / "docs" / "screenshots"
# Plotly draws after Streamlit's run ends; charts get this long to settle.
CHART_SETTLE_MS = 1500


@pytest.fixture(scope="module")
def app(browser):
    """This module's server, on a folder whose name reads well on the Models page."""
    folder = Path(tempfile.gettempdir()) / "digit-lab"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    env = app_env(folder)
    with streamlit_server(env) as server:
        yield App(server.url, server.pid, Path(env["DIGIT_LAB_MODELS"]),
                  Path(env["DIGIT_LAB_CUSTOM_DIR"]))
    shutil.rmtree(folder, ignore_errors=True)


def shoot(page, name: str, *, scroll_to=None) -> None:
    # Setting sliders scrolls the sidebar; show its top, as a visitor first sees it.
    page.locator("[data-testid=stSidebar] *").evaluate_all(
        "elements => elements.forEach(element => { element.scrollTop = 0; })")
    if scroll_to is not None:
        scroll_to.scroll_into_view_if_needed()
    page.wait_for_timeout(CHART_SETTLE_MS)
    assert page.locator(ERROR_SELECTOR).count() == 0, f"{name} shows an error"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / name)


def test_screenshots_for_the_readme(app, page):
    main = page.locator("[data-testid=stMain]")
    open_page(page, app.url)
    expect(main.locator("[data-testid=stImage]").first).to_be_visible()
    shoot(page, "home.png")

    open_page(page, f"{app.url}/draw")
    page.locator(CANVAS_SELECTOR).wait_for()
    draw_strokes(page, digit_strokes(5, np.random.default_rng(4), "two-strokes", NEAT_HAND))
    expect(main.get_by_text("Preprocessing steps")).to_be_visible()
    shoot(page, "draw.png", scroll_to=main.get_by_text("Preprocessing steps"))

    for path, name in (("evaluate", "evaluate.png"), ("mistakes", "mistakes.png")):
        open_page(page, f"{app.url}/{path}")
        expect(main.locator("[data-testid=stPlotlyChart], [data-testid=stImage]").first
               ).to_be_visible()
        shoot(page, name)

    # A short run, so the curves have a few epochs; it becomes the session's model.
    open_page(page, f"{app.url}/train")
    set_hyperparameters(page, "256, 128", train_size=10_000, epochs=6)
    main.get_by_role("button", name="Train", exact=True).click()
    expect(page.locator("[data-testid=stAlertContentSuccess]")).to_contain_text(
        "Training finished.", timeout=180_000)
    shoot(page, "train.png", scroll_to=main.locator("[data-testid=stPlotlyChart]").first)
    # Saved, so Models lists two.
    form = main.locator("[data-testid=stForm]")
    form.get_by_role("textbox", name="Name").fill("mlp-256-128")
    form.get_by_role("button", name="Save").click()
    expect(main.get_by_text("Saved as")).to_be_visible()

    open_page(page, f"{app.url}/compare")
    set_hyperparameters(page, "128", train_size=6000, epochs=4)
    before = finished_runs(page)
    main.get_by_role("button", name="Train both").click()
    wait_for_run(page, before)
    expect(main.get_by_text("NumPy needed")).to_be_visible(timeout=240_000)
    shoot(page, "compare.png", scroll_to=main.get_by_text("NumPy needed"))

    open_page(page, f"{app.url}/models")
    shoot(page, "models.png")

    open_page(page, f"{app.url}/lessons?lesson=2")
    shoot(page, "lessons.png")

    open_page(page, f"{app.url}/inside?index=1234&view=integrated")
    expect(main.get_by_text("Sum of the attributions")).to_be_visible()
    shoot(page, "inside.png", scroll_to=main.get_by_text("Integrated gradients for"))

    open_page(page, f"{app.url}/sweep")
    for label, value in (("Trials", "12"), ("Epochs per trial", "2")):
        box = main.get_by_label(label, exact=True)
        before = finished_runs(page)
        box.fill(value)
        box.press("Enter")
        wait_for_run(page, before, quiet=0.5)
    before = finished_runs(page)
    main.get_by_role("button", name="Run sweep").click()
    wait_for_run(page, before)
    expect(main.get_by_text("The best trial")).to_be_visible(timeout=300_000)
    shoot(page, "sweep.png", scroll_to=main.get_by_text("Validation accuracy of every trial"))
