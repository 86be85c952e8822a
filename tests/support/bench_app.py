"""How fast the dashboard feels, measured in Debian's chromium; prints ONE JSON line.

    python -m tests.support.bench_app [--starts 3] [--strokes 10]

- home: seconds from `streamlit run` starting to the Home page rendered in the browser
  (title "Digit Lab" visible, script idle), a new server process each time; the median.
- evaluate_first_visit: seconds from clicking Evaluate in the sidebar, right after Home on
  that fresh server, to its first chart drawn and the script idle (the shipped MLP
  active): the first visit computes the model's test predictions.
- empty_app: the same for a page with only the title, config and theme: what Streamlit and
  the browser cost on this machine before the dashboard does anything.
- tensorflow_imported_by_home: whether the server had TensorFlow loaded once Home was
  rendered. Read from the real server's /proc/<pid>/maps: importing TensorFlow always maps
  its shared libraries, and nothing in the app has to change for the check.
- stroke: for single canvas strokes on Draw & test, the server's own time (the page's
  "preprocess + predict" caption) and the browser's round trip from mouse-up to the
  prediction changing on screen (both clocks are the page's `performance.now()`).

A benchmark, not a test: the numbers go beside their targets and nothing is asserted.
Strokes come from tests/support/handwriting.py, so run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.support.liveserver import (ROOT, draw_strokes, finished_runs, launch_chromium,
                                      loaded_libraries, open_page, streamlit_server,
                                      wait_for_run)

TARGETS = {"home_seconds": 2.0, "stroke_server_ms": 100.0, "evaluate_first_visit_seconds": 2.0}
# The floor under the Home figure: Streamlit, the theme and the browser, no dashboard.
EMPTY_APP = """import streamlit as st

st.set_page_config(page_title="Home · Digit Lab", layout="wide")
st.title("Digit Lab")
"""
# Notes when the prediction's caption or value last changed after a mouse-up.
_WATCH_PREDICTION = """() => {
  if (window.__stroke) return;
  const log = window.__stroke = {mouseUpAt: null, changedAt: null, shown: null};
  const shown = () => [...document.querySelectorAll(
      '[data-testid=stMetric], [data-testid=stCaptionContainer]')]
      .map(element => element.textContent).filter(text => /Prediction|preprocess/.test(text))
      .join('|');
  document.addEventListener('mouseup', () => {
    log.mouseUpAt = performance.now(); log.changedAt = null; }, true);
  new MutationObserver(() => {
    const now = shown();
    if (now !== log.shown) {
      log.shown = now;
      if (log.mouseUpAt !== null && log.changedAt === null) log.changedAt = performance.now();
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3, help="server starts to time")
    parser.add_argument("--strokes", type=int, default=10, help="canvas strokes to time")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as custom_dir, sync_playwright() as playwright:
        env = {"DIGIT_LAB_CUSTOM_DIR": custom_dir}
        browser = launch_chromium(playwright)
        empty_app = Path(custom_dir) / "empty_app.py"
        empty_app.write_text(EMPTY_APP)
        home_seconds, healthy_seconds, tensorflow_loaded, empty_seconds = [], [], [], []
        evaluate_seconds = []
        for _ in range(args.starts):    # interleaved, so both see the same machine
            seconds, healthy, loaded, evaluate = _time_home(browser, env, then_evaluate=True)
            home_seconds.append(seconds)
            healthy_seconds.append(healthy)
            tensorflow_loaded.append(loaded)
            evaluate_seconds.append(evaluate)
            empty_seconds.append(_time_home(browser, env, script=empty_app)[0])
        with streamlit_server(env) as server:
            server_ms, round_trip_ms = _time_strokes(browser, server.url, args.strokes)
        browser.close()
    result = {
        "home_seconds_median": _median(home_seconds),
        "home_seconds": [round(value, 3) for value in home_seconds],
        "home_target_seconds": TARGETS["home_seconds"],
        # of which: until the server answered its health check (before any page ran)
        "home_server_healthy_seconds": [round(value, 3) for value in healthy_seconds],
        "home_to_empty_app_ratio": round(_median(home_seconds) / _median(empty_seconds), 3),
        "evaluate_first_visit_seconds_median": _median(evaluate_seconds),
        "evaluate_first_visit_seconds": [round(value, 3) for value in evaluate_seconds],
        "evaluate_first_visit_target_seconds": TARGETS["evaluate_first_visit_seconds"],
        "empty_app_seconds_median": _median(empty_seconds),
        "empty_app_seconds": [round(value, 3) for value in empty_seconds],
        "tensorflow_imported_by_home": any(tensorflow_loaded),
        "stroke_server_ms_median": _median(server_ms),
        "stroke_server_target_ms": TARGETS["stroke_server_ms"],
        "stroke_round_trip_ms_median": _median(round_trip_ms),
        "strokes": len(server_ms),
        "stroke_server_ms": [round(value, 1) for value in server_ms],
        "stroke_round_trip_ms": [round(value) for value in round_trip_ms],
    }
    print(json.dumps(result))
    return 0


def _time_home(browser, env: dict[str, str], *, script: Path = ROOT / "dashboard.py",
               then_evaluate: bool = False) -> tuple[float, float, bool, float | None]:
    """Seconds from `streamlit run` to Home rendered and to the server being healthy,
    whether TensorFlow was loaded by then, and (`then_evaluate`) seconds from clicking
    Evaluate to its first chart."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        with streamlit_server(env, script=script) as server:
            healthy_at = time.perf_counter()
            open_page(page, server.url)
            page.locator("[data-testid=stMain] h1", has_text="Digit Lab").wait_for()
            seconds = server.seconds_to_healthy + time.perf_counter() - healthy_at
            libraries = loaded_libraries(server.pid)
            if not libraries:
                raise RuntimeError("cannot read the server's /proc/<pid>/maps (Linux only)")
            evaluate = _time_evaluate(page) if then_evaluate else None
            return (seconds, server.seconds_to_healthy,
                    any("tensorflow" in name for name in libraries), evaluate)
    finally:
        context.close()


def _time_evaluate(page) -> float:
    """Seconds from a click on Evaluate in the sidebar to its first chart, script idle."""
    before = finished_runs(page)
    clicked_at = time.perf_counter()
    page.locator("[data-testid=stSidebar]").get_by_role("link", name="Evaluate", exact=True).click()
    page.locator("[data-testid=stMain] h1", has_text="Evaluate").wait_for(timeout=60_000)
    page.locator("[data-testid=stMain] .js-plotly-plot").first.wait_for(timeout=60_000)
    wait_for_run(page, before, timeout=60)
    return time.perf_counter() - clicked_at


def _time_strokes(browser, url: str, count: int) -> tuple[list[float], list[float]]:
    import numpy as np

    from tests.e2e.moves import clear_canvas, server_milliseconds
    from tests.support.handwriting import NEAT_HAND, digit_strokes

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    open_page(page, f"{url}/draw")
    page.evaluate(_WATCH_PREDICTION)
    rng = np.random.default_rng(0)
    server_ms, round_trip_ms, digit = [], [], 0
    while len(server_ms) < count:
        for stroke in digit_strokes(digit % 10, rng, None, NEAT_HAND):
            draw_strokes(page, [stroke])
            server_ms.append(server_milliseconds(page))
            log = page.evaluate("window.__stroke")
            if log["changedAt"] is not None:
                round_trip_ms.append(log["changedAt"] - log["mouseUpAt"])
        clear_canvas(page)
        digit += 1
    context.close()
    return server_ms[:count], round_trip_ms[:count]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


if __name__ == "__main__":
    sys.exit(main())
