"""The Inside and Sweep pages in a real browser: a drawn digit's saliency map changes with
the digit, and a tiny sweep runs and hands its best settings to the sidebar."""

from __future__ import annotations

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e.moves import clear_canvas, shown_prediction
from tests.support.handwriting import NEAT_HAND, digit_strokes
from tests.support.liveserver import (CANVAS_SELECTOR, ERROR_SELECTOR, draw_strokes,
                                      finished_runs, open_page, wait_for_run)

pytestmark = pytest.mark.e2e


def click_and_wait(page, locator, *, timeout: float = 60.0, quiet: float = 0.5) -> None:
    before = finished_runs(page)
    locator.click()
    wait_for_run(page, before, timeout=timeout, quiet=quiet)


def saliency_map(page) -> np.ndarray:
    """The saliency overlay's values, read from the figure Plotly drew."""
    chart = page.locator("[data-testid=stPlotlyChart]").filter(has_text="Saliency of")
    chart.locator(".js-plotly-plot").wait_for()
    values = chart.locator(".js-plotly-plot").evaluate(
        "graph => graph._fullData[1].z.map(row => Array.from(row))")
    return np.asarray(values, dtype=float)


def look_inside_at_saliency(page) -> np.ndarray:
    click_and_wait(page, page.get_by_role("button", name="Look inside the network"))
    expect(page.locator("[data-testid=stMain] h1")).to_have_text("Inside the network")
    views = page.locator("[data-testid=stMain] [data-testid=stButtonGroup]")
    click_and_wait(page, views.get_by_text("Saliency", exact=True))
    return saliency_map(page)


def test_the_saliency_map_of_a_drawn_digit_changes_with_the_digit(app, page):
    rng = np.random.default_rng(11)
    maps = {}
    for digit, style in ((3, "round"), (7, "plain")):
        open_page(page, f"{app.url}/draw")
        page.locator(CANVAS_SELECTOR).wait_for()
        clear_canvas(page)
        draw_strokes(page, digit_strokes(digit, rng, style, NEAT_HAND))
        assert shown_prediction(page) == digit
        maps[digit] = look_inside_at_saliency(page)
        assert maps[digit].shape == (28, 28) and np.abs(maps[digit]).max() > 0
        assert page.locator(ERROR_SELECTOR).count() == 0
    # Different digits, different reasons: the maps differ far beyond rounding.
    difference = np.abs(maps[3] - maps[7]).max()
    assert difference > 0.1 * max(np.abs(maps[3]).max(), np.abs(maps[7]).max())


def test_a_tiny_sweep_runs_and_its_best_settings_reach_the_sidebar(app, page):
    open_page(page, f"{app.url}/sweep")
    main = page.locator("[data-testid=stMain]")
    # Vary the learning rate alone: remove hidden_sizes from the chosen parameters.
    chips = main.locator("[data-testid=stMultiSelect]").filter(has_text="Parameters to vary")
    before = finished_runs(page)
    chips.locator("span", has_text="hidden_sizes").locator("xpath=..").get_by_role(
        "button").last.click()
    wait_for_run(page, before, quiet=0.5)
    for label, value in (("learning_rate: values to try", "learning_rate=3e-3|1e-2"),
                         ("Trials", "2"),
                         ("Training images", "1000"), ("Epochs per trial", "1")):
        box = main.get_by_label(label, exact=True)
        before = finished_runs(page)
        box.fill(value)
        box.press("Enter")
        wait_for_run(page, before, quiet=0.5)
    click_and_wait(page, main.get_by_role("button", name="Run sweep"))
    expect(main.get_by_text("The best trial")).to_be_visible(timeout=180_000)
    best_line = main.locator("[data-testid=stMarkdownContainer]").filter(
        has_text="validation accuracy with").inner_text()
    best_rate = best_line.split("learning_rate=")[1].split()[0].strip("`,")
    click_and_wait(page, main.get_by_role("button", name="Use best settings"))
    sidebar = page.locator("[data-testid=stSidebar]")
    expander = sidebar.get_by_text("Hyperparameters")
    expander.click()
    rate = sidebar.locator("[data-testid=stSlider]").filter(has_text="Learning rate")
    shown = rate.locator("[data-testid=stSliderThumbValue]")
    expect(shown).to_be_visible()
    assert float(shown.inner_text()) == pytest.approx(float(best_rate))
    assert page.locator(ERROR_SELECTOR).count() == 0


def test_a_click_on_the_hidden_space_opens_that_digit(app, page):
    open_page(page, f"{app.url}/inside?index=1234&view=space", timeout=90)
    plot = page.locator("[data-testid=stPlotlyChart]").filter(
        has_text="component 1").locator(".js-plotly-plot")
    plot.wait_for()
    plot.scroll_into_view_if_needed()
    # A misread digit's marker (drawn larger, on top), and its place in page pixels: the
    # one farthest from any other marker, so the click can only mean it.
    point = plot.evaluate("""graph => {
        const {xaxis, yaxis} = graph._fullLayout, box = graph.getBoundingClientRect();
        const place = (trace, i) => [box.left + xaxis._offset + xaxis.d2p(trace.x[i]),
                                     box.top + yaxis._offset + yaxis.d2p(trace.y[i])];
        const everyone = graph._fullData.flatMap(
            trace => Array.from(trace.x || [], (_, i) => place(trace, i)));
        const misread = graph._fullData.find(t => t.name && t.name.endsWith('misread'));
        let best = null;
        for (let i = 0; i < misread.x.length; i++) {
            const [x, y] = place(misread, i);
            const nearest = Math.min(...everyone.map(([u, v]) => Math.hypot(u - x, v - y))
                                               .filter(d => d > 0.01));
            if (best === null || nearest > best.nearest)
                best = {index: misread.customdata[i][0], x, y, nearest};
        }
        return best; }""")
    before = finished_runs(page)
    page.mouse.click(point["x"], point["y"])
    wait_for_run(page, before, timeout=60, quiet=1.0)
    caption = page.locator("[data-testid=stMain] [data-testid=stImageCaption]").first
    expect(caption).to_have_text(f"test digit #{int(point['index'])}")
    assert page.locator(ERROR_SELECTOR).count() == 0
    assert page.locator("[data-testid=stException]").count() == 0
