"""What a person does on the dashboard, as Playwright moves: on Draw & test, set the pen
width, read the prediction and its timing caption, label and save a digit, clear the
canvas; in the sidebar, set hyperparameters. Shared by the browser tests, the seeding
script and the app benchmark; the checks are theirs."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.support.liveserver import finished_runs, ink_pixels, wait_for_run

TIMING = re.compile(r"preprocess \+ predict: ([0-9.]+) ms")


def prediction_metric(page: Any) -> Any:
    return page.locator("[data-testid=stMetric]").filter(has_text="Prediction")


def shown_prediction(page: Any) -> int:
    return int(prediction_metric(page).first.locator("[data-testid=stMetricValue]").inner_text())


def server_milliseconds(page: Any) -> float:
    """The "preprocess + predict: X ms" caption under the prediction, in ms."""
    caption = page.locator("[data-testid=stCaptionContainer]").filter(has_text=TIMING).first
    return float(TIMING.search(caption.inner_text()).group(1))


def set_stroke_width(page: Any, width_px: int) -> None:
    """Move the "Stroke width" slider, as a person can with the keyboard."""
    set_slider(page, page.locator("[data-testid=stMain]"), "Stroke width", width_px)


def set_slider(page: Any, within: Any, label: str, value: float | str) -> None:
    """Move the slider called `label` to `value` ("max" for its end) with arrow keys.
    Keys pressed while the app reruns can be lost, so it checks and goes on until the
    slider shows the value and the app is idle."""
    thumb = within.locator("[data-testid=stSlider]").filter(has_text=label).locator(
        "input[type=range]")
    step = float(thumb.get_attribute("step") or 1)
    low, high = float(thumb.get_attribute("min")), float(thumb.get_attribute("max"))
    target = high if value == "max" else float(value)
    for _ in range(5):
        current = float(thumb.input_value())
        if round(abs(target - current) / step) == 0:
            return
        # From where it is, or from an end (Home/End) if that is fewer presses.
        routes = [([], current), (["Home"], low), (["End"], high)]
        keys, start = min(routes, key=lambda route: len(route[0]) + abs(target - route[1]) / step)
        arrow = "ArrowRight" if target > start else "ArrowLeft"
        keys = keys + [arrow] * round(abs(target - start) / step)
        before = finished_runs(page)
        thumb.focus()
        for key in keys:
            page.keyboard.press(key)
        wait_for_run(page, before, quiet=0.4)
    raise RuntimeError(f"the {label} slider did not reach {value}")


def choose_option(page: Any, select: Any, option: str) -> None:
    """Open a select box and click one option (scrolled into view first: the list closes
    when the page scrolls under it)."""
    select.scroll_into_view_if_needed()
    for _ in range(3):
        select.get_by_role("button", name="Open").click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=3000)
            return
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    raise RuntimeError(f"could not choose {option!r} in the select box")


def save_with_label(page: Any, label: int) -> str:
    """Pick `label` in "The digit really is" and press "Add to custom digits"; the saved
    file's `label/name` as the app reports it."""
    select = page.locator("[data-testid=stSelectbox]").filter(has_text="The digit really is")
    if select.locator("input").input_value() != str(label):
        before = finished_runs(page)
        choose_option(page, select, str(label))
        wait_for_run(page, before)
    before = finished_runs(page)
    page.get_by_role("button", name="Add to custom digits").click()
    wait_for_run(page, before)
    message = page.locator("[data-testid=stAlertContentSuccess]").inner_text()
    found = re.search(r"Saved as\s+(\S+\.png)", message)
    if not found:
        raise RuntimeError(f"the app did not save the digit: {message!r}")
    return found.group(1)


def clear_canvas(page: Any) -> None:
    """Press Clear and wait until the canvas is empty and the prediction gone."""
    before = finished_runs(page)
    page.get_by_role("button", name="Clear").click()
    wait_for_run(page, before, quiet=0.3)
    prediction_metric(page).first.wait_for(state="detached")
    deadline = time.perf_counter() + 10
    while ink_pixels(page) and time.perf_counter() < deadline:
        page.wait_for_timeout(50)


def set_hyperparameters(page: Any, hidden_sizes: str, *, train_size: int | str,
                        epochs: int | str) -> None:
    """Type the hidden sizes and move the "Train size" and "Epochs" sliders ("max" for
    their end), in the sidebar's Hyperparameters (expanded on Train and Compare)."""
    sidebar = page.locator("[data-testid=stSidebar]")
    hidden = sidebar.get_by_role("textbox", name="Hidden sizes", exact=True)
    # The expander mounts its widgets a moment after the run ends; read a filled-in value.
    page.wait_for_function("input => input.value !== ''", arg=hidden.element_handle())
    if hidden.input_value() != hidden_sizes:
        before = finished_runs(page)
        hidden.fill(hidden_sizes)
        hidden.press("Enter")
        wait_for_run(page, before)
    set_slider(page, sidebar, "Train size", train_size)
    set_slider(page, sidebar, "Epochs", epochs)
