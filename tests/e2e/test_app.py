"""The real dashboard in a real browser: deep links, every page, drawing with the mouse,
uploads, the stroke-to-prediction round trip, and training from the Train page."""

from __future__ import annotations

import io
import re
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import VIEWPORT, app_env
from tests.e2e.moves import (choose_option, clear_canvas, prediction_metric,
                             server_milliseconds, set_hyperparameters, shown_prediction)
from tests.support.handwriting import NEAT_HAND, digit_strokes, paper_photo
from tests.support.liveserver import (CANVAS_SELECTOR, ERROR_SELECTOR, draw_strokes, finished_runs,
                                      ink_pixels, open_page, streamlit_server, wait_for_run)

pytestmark = pytest.mark.e2e

# (what the sidebar link says, the page's title)
PAGES = [("Home", "Digit Lab"), ("Lessons", "Lessons"), ("Train", "Train"),
         ("Evaluate", "Evaluate"),
         ("Draw & test", "Draw & test"), ("Inside", "Inside the network"),
         ("Mistakes", "Mistakes"), ("Compare", "Compare"), ("Models", "Models"),
         ("Sweep", "Sweep")]
PHONE = {"width": 390, "height": 844}


# A run that lasts minutes on any CPU: four layers at the host's widest (1024) cost about
# 25 GFLOP per batch of 128 (~10 s an epoch on 2 AVX-512 cores), so it is still training
# when Stop is pressed however fast the machine; its first batch still comes in a second.
LONG_HIDDEN = "1024, 1024, 1024, 1024"
EPOCH = re.compile(r"Epoch \d+ of \d+")


def errors_on(page) -> list[str]:
    return page.locator(ERROR_SELECTOR).all_inner_texts()


def title(page):
    return page.locator("[data-testid=stMain] h1")


def test_a_fresh_server_opened_on_a_deep_link_renders_that_page(browser, tmp_path):
    # Its own server: the first request it ever gets is /train, not the home page.
    with streamlit_server(app_env(tmp_path)) as server:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            open_page(page, f"{server.url}/train")
            expect(title(page)).to_have_text("Train")
            assert urlparse(page.url).path == "/train"       # (its query holds the visitor token)
            sidebar = page.locator("[data-testid=stSidebar]")
            expect(sidebar.get_by_role("link", name="Draw & test")).to_be_visible()
            expect(sidebar.get_by_text("Hyperparameters")).to_be_visible()
            expect(page.get_by_role("button", name="Train", exact=True)).to_be_enabled()
            assert errors_on(page) == []
        finally:
            context.close()


def test_every_page_renders_its_title_from_the_sidebar(app, page):
    open_page(page, app.url)
    sidebar = page.locator("[data-testid=stSidebar]")
    for link, heading in PAGES[1:] + PAGES[:1]:
        before = finished_runs(page)
        sidebar.get_by_role("link", name=link, exact=True).click()
        wait_for_run(page, before, timeout=60)
        expect(title(page)).to_have_text(heading)
        assert errors_on(page) == [], f"{link} shows an error"


def test_every_page_fits_a_phone_screen(app, browser):
    """At 390 px nothing is wider than the screen, and Mistakes keeps several digits to a
    row (columns would stack into one per row)."""
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        for path in ("", "lessons", "train", "evaluate", "draw", "inside", "mistakes", "compare",
                     "models", "sweep"):
            open_page(page, f"{app.url}/{path}", timeout=90)
            # A figure or picture may still be laying itself out after the run (on a loaded
            # machine for a second or more): judge the page once it has settled.
            scroll_width = settled(page, "() => document.documentElement.scrollWidth",
                                   lambda width: width <= PHONE["width"])
            assert scroll_width <= PHONE["width"], (path, scroll_width)
            assert errors_on(page) == [], f"/{path} shows an error"
            if path == "mistakes":
                tops = settled(page, """() => [...document.querySelectorAll(
                    '[data-testid=stMain] [data-testid=stImage] img')].slice(0, 6)
                    .filter(image => image.complete && image.naturalWidth > 0)
                    .map(image => Math.round(image.getBoundingClientRect().top))""",
                               lambda tops: len(tops) == 6 and len(set(tops)) <= 2)
                assert len(tops) == 6 and len(set(tops)) <= 2, tops
            if path == "":
                box = settled(page, """() => { const image = document.querySelector(
                    '[data-testid=stMain] [data-testid=stImage] img');
                    if (!image || !image.complete) return null;
                    const box = image.getBoundingClientRect();
                    return {x: box.x, width: box.width}; }""",
                              lambda box: box is not None and box["x"] >= 0
                              and box["x"] + box["width"] <= PHONE["width"])
                assert box is not None and box["x"] >= 0 \
                    and box["x"] + box["width"] <= PHONE["width"], box
    finally:
        context.close()


def settled(page, script: str, ok, timeout: float = 10.0):
    """What `script` returns once `ok` holds for it, or its last answer after `timeout`."""
    deadline = time.perf_counter() + timeout
    while True:
        answer = page.evaluate(script)
        if ok(answer) or time.perf_counter() > deadline:
            return answer
        page.wait_for_timeout(100)


def test_no_page_asks_the_internet_for_anything(app, page):
    """Offline, the app must look the same: no font, icon or favicon from a CDN."""
    outside = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith((app.url, "data:", "blob:")) else None)
    for path in ("", "lessons", "train", "evaluate", "draw", "inside", "mistakes",
                 "compare", "models", "sweep"):
        open_page(page, f"{app.url}/{path}", timeout=90)
        page.wait_for_timeout(300)
        # The page's emoji, drawn by the browser from an inline SVG (ui.page.emoji_favicon).
        favicon = page.locator("link[rel~=icon]").first.get_attribute("href")
        assert favicon.startswith("data:image/svg+xml"), (path, favicon[:60])
    assert outside == []


def test_clicking_a_confusion_cell_opens_mistakes_filtered_to_it(app, page):
    open_page(page, f"{app.url}/evaluate")
    plot = page.locator("[data-testid=stPlotlyChart]").first.locator(".js-plotly-plot")
    plot.locator("path.point").first.wait_for()
    plot.scroll_into_view_if_needed()
    # The off-diagonal cell with the most images, and its centre in page pixels, from the
    # figure Plotly drew (x = predicted digit, y = true digit).
    cell = plot.evaluate("""graph => {
        const trace = graph._fullData[0], xs = Array.from(trace.x), ys = Array.from(trace.y);
        const cells = Array.from(trace.text, (text, i) => [ys[i], xs[i], Number(text) || 0])
            .filter(([t, p]) => t !== p);
        const [t, p] = cells.reduce((best, c) => (c[2] > best[2] ? c : best));
        const {xaxis, yaxis} = graph._fullLayout, box = graph.getBoundingClientRect();
        return {true: t, predicted: p,
                x: box.left + xaxis._offset + xaxis.d2p(p),
                y: box.top + yaxis._offset + yaxis.d2p(t)}; }""")
    true_digit, predicted_digit = int(cell["true"]), int(cell["predicted"])
    assert true_digit != predicted_digit
    before = finished_runs(page)
    page.mouse.click(cell["x"], cell["y"])
    wait_for_run(page, before, quiet=0.5)
    expect(title(page)).to_have_text("Mistakes")
    main = page.locator("[data-testid=stMain]")
    for label, digit in (("True digit", true_digit), ("Predicted digit", predicted_digit)):
        select = main.locator("[data-testid=stSelectbox]").filter(has_text=label)
        expect(select.get_by_role("combobox", name=label)).to_have_value(str(digit))
    expect(page).to_have_url(re.compile(
        rf"/mistakes\?(?=.*\btrue={true_digit}\b)(?=.*\bpredicted={predicted_digit}\b)"))
    assert errors_on(page) == []
    # One press of the browser's Back button returns to Evaluate.
    before = finished_runs(page)
    page.go_back()
    wait_for_run(page, before, quiet=0.5)
    expect(title(page)).to_have_text("Evaluate")


def test_drawn_digits_are_read_and_clear_empties_the_canvas(app, page):
    open_page(page, f"{app.url}/draw")
    page.locator(CANVAS_SELECTOR).wait_for()
    rng = np.random.default_rng(3)
    for digit, style in ((3, "round"), (7, "plain")):
        draw_strokes(page, digit_strokes(digit, rng, style, NEAT_HAND))
        assert shown_prediction(page) == digit
        assert ink_pixels(page) > 1000
        clear_canvas(page)
        expect(prediction_metric(page)).to_have_count(0)
        expect(page.get_by_text("Draw a digit on the black square.")).to_be_visible()
        assert ink_pixels(page) == 0
    # A single click leaves a dot: no digit, so no prediction, and a word on why.
    draw_strokes(page, [np.array([[0.5, 0.5]])])
    assert ink_pixels(page) > 0
    expect(page.locator("[data-testid=stAlertContentWarning]")).to_contain_text("dot")
    expect(prediction_metric(page)).to_have_count(0)
    assert errors_on(page) == []


@pytest.mark.parametrize("width", [800, 1024, 1280])
def test_the_whole_canvas_can_be_drawn_on_at_common_widths(app, browser, width):
    # In a third of the page's width (a column) the canvas's right part was cut off below
    # about 1400 px: what lies under its right edge must be the canvas itself.
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        open_page(page, f"{app.url}/draw")
        canvas = page.locator(CANVAS_SELECTOR)
        box = canvas.bounding_box()
        under_edges = canvas.evaluate(
            "(canvas, box) => [[box.x + 3, box.y + box.height / 2],"
            " [box.x + box.width - 3, box.y + box.height / 2]]"
            ".map(([x, y]) => canvas.getRootNode().elementFromPoint(x, y) === canvas)", box)
        assert under_edges == [True, True], (width, box)
    finally:
        context.close()


def test_a_scribble_is_called_not_a_digit_in_full(app, page):
    # The answer must be readable: in a quarter of the page's width the metric cut
    # "not a digit?" to "not a d...".
    open_page(page, f"{app.url}/draw")
    page.locator(CANVAS_SELECTOR).wait_for()
    zigzag = np.array([[0.15 + 0.7 * step / 10, 0.25 if step % 2 else 0.75]
                       for step in range(11)])
    draw_strokes(page, [zigzag], every=1)
    expect(page.get_by_text("That does not look like a digit")).to_be_visible()
    value = prediction_metric(page).first.locator("[data-testid=stMetricValue]")
    expect(value).to_have_text("not a digit?")
    shown_whole = "element => [...element.querySelectorAll('*')].concat([element])" \
                  ".every(part => part.scrollWidth <= part.clientWidth)"
    assert value.evaluate(shown_whole), "the answer is cut off"
    assert errors_on(page) == []


def test_a_drawing_is_still_there_after_a_visit_to_another_page(app, page):
    open_page(page, f"{app.url}/draw")
    page.locator(CANVAS_SELECTOR).wait_for()
    draw_strokes(page, digit_strokes(3, np.random.default_rng(3), "round", NEAT_HAND))
    assert shown_prediction(page) == 3
    drawn = ink_pixels(page)
    sidebar = page.locator("[data-testid=stSidebar]")
    for away in ("Home", "Evaluate"):
        for link in (away, "Draw & test"):
            before = finished_runs(page)
            sidebar.get_by_role("link", name=link, exact=True).click()
            wait_for_run(page, before, timeout=60, quiet=0.5)
        page.locator(CANVAS_SELECTOR).wait_for()
        assert shown_prediction(page) == 3
        assert ink_pixels(page) == pytest.approx(drawn, rel=0.05)
    # Cleared stays cleared.
    clear_canvas(page)
    for link in ("Home", "Draw & test"):
        before = finished_runs(page)
        sidebar.get_by_role("link", name=link, exact=True).click()
        wait_for_run(page, before, timeout=60, quiet=0.5)
    page.locator(CANVAS_SELECTOR).wait_for()
    expect(page.get_by_text("Draw a digit on the black square.")).to_be_visible()
    assert ink_pixels(page) == 0
    assert errors_on(page) == []


def test_uploads_show_a_grid_a_full_report_a_why_panel_and_junk_in_one_line(app, page):
    rng = np.random.default_rng(5)
    photo = io.BytesIO()
    Image.fromarray(paper_photo(digit_strokes(5, rng, "two-strokes", NEAT_HAND), rng)).save(
        photo, format="PNG")
    open_page(page, f"{app.url}/draw")
    page.get_by_role("tab", name="Upload pictures").click()
    before = finished_runs(page)
    page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files([
        {"name": "five-on-paper.png", "mimeType": "image/png", "buffer": photo.getvalue()},
        {"name": "junk.png", "mimeType": "image/png",
         "buffer": b"Dear diary, this is not a picture of a digit.\n" * 20}])
    wait_for_run(page, before, quiet=0.5)
    # A compact grid first: a summary line and one tile per file, no full report yet.
    expect(page.get_by_text("2 files", exact=False).first).to_be_visible()
    tile = page.locator("[data-testid=stCaptionContainer]").filter(has_text="five-on-paper.png")
    expect(tile).to_contain_text("5 (")
    expect(page.locator("[data-testid=stCaptionContainer]").filter(
        has_text="junk.png")).to_contain_text("no reading")
    expect(prediction_metric(page)).to_have_count(0)
    detail = page.locator("[data-testid=stSelectbox]").filter(
        has_text="Full steps and prediction for")
    before = finished_runs(page)
    choose_option(page, detail, "1. five-on-paper.png")
    wait_for_run(page, before, quiet=0.5)
    expect(prediction_metric(page)).to_have_count(1)
    assert shown_prediction(page) == 5
    # Why did it fail? opens with the intended digit's curves once the label says otherwise.
    label = page.locator("[data-testid=stSelectbox]").filter(has_text="The digit really is")
    before = finished_runs(page)
    choose_option(page, label, "3")
    wait_for_run(page, before, quiet=0.5)
    panel = page.locator("[data-testid=stExpander]").filter(has_text="Why did it fail?")
    if not panel.locator("[data-testid=stExpanderDetails]").is_visible():
        panel.locator("summary").click()
    expect(panel.get_by_text("percentile among 3s", exact=False).first).to_be_attached()
    expect(panel.get_by_text("Try:", exact=False)).to_be_visible()
    expect(panel.get_by_role("button", name="Keep it as a custom 3")).to_be_visible()
    before = finished_runs(page)
    choose_option(page, detail, "2. junk.png")
    wait_for_run(page, before, quiet=0.5)
    junk = page.locator("[data-testid=stAlertContentError]").filter(has_text="junk.png")
    expect(junk).to_have_count(1)
    message = junk.locator("[data-testid=stMarkdownContainer]").inner_text().strip()
    assert message.startswith("junk.png: ") and "\n" not in message
    assert page.locator("[data-testid=stException]").count() == 0
    # The page keeps working: the canvas still reads a digit.
    page.get_by_role("tab", name="Draw").click()
    draw_strokes(page, digit_strokes(7, rng, "crossbar", NEAT_HAND))
    expect(prediction_metric(page)).to_have_count(1)
    assert page.locator("[data-testid=stException]").count() == 0


def test_each_stroke_is_answered_with_its_server_time(app, page, record_property):
    open_page(page, f"{app.url}/draw")
    page.locator(CANVAS_SELECTOR).wait_for()
    rng = np.random.default_rng(11)
    timings = []
    for digit, style in ((4, "open"), (7, "crossbar"), (5, "two-strokes")):
        for stroke in digit_strokes(digit, rng, style, NEAT_HAND):
            draw_strokes(page, [stroke])
            timings.append(server_milliseconds(page))
        clear_canvas(page)
    assert len(timings) == 6 and all(value > 0 for value in timings)
    record_property("preprocess + predict ms per stroke", ", ".join(f"{t:.1f}" for t in timings))


def test_trains_a_tiny_network_and_stops_a_long_one(app, page):
    open_page(page, f"{app.url}/train")
    main = page.locator("[data-testid=stMain]")
    # 1,000 images (the slider's steps are 100): enough for one batch of 128 after validation.
    set_hyperparameters(page, "32", train_size=1000, epochs=1)
    expect(main.get_by_text("1 epochs on 1,000 images", exact=False)).to_be_visible()
    main.get_by_role("button", name="Train", exact=True).click()
    expect(page.locator("[data-testid=stAlertContentSuccess]")).to_contain_text(
        "Training finished.", timeout=60_000)
    expect(main.get_by_text("MNIST test accuracy")).to_be_visible()
    expect(main.locator("[data-testid=stPlotlyChart]").first).to_be_visible()     # the curves

    set_hyperparameters(page, LONG_HIDDEN, train_size="max", epochs="max")
    main.get_by_role("button", name="Train", exact=True).click()
    progress = main.locator("[data-testid=stProgress]")
    expect(progress).to_contain_text(EPOCH, timeout=60_000)
    # On another page the run goes on, and the sidebar's line keeps up with it.
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.get_by_role("link", name="Home").click()
    expect(main.locator("h1", has_text="Digit Lab")).to_be_visible()
    status = sidebar.locator("[data-testid=stCaptionContainer]", has_text="Training:")
    first = status.inner_text()
    expect(status).not_to_have_text(first, timeout=30_000)
    sidebar.get_by_role("link", name="Train").click()
    main.get_by_role("button", name="Stop").click()
    expect(page.locator("[data-testid=stAlertContentWarning]")).to_contain_text(
        "Training stopped", timeout=60_000)
    assert errors_on(page) == []


def test_deleting_a_model_closes_the_delete_popover(app, page):
    # An unkeyed popover stayed open on the next model after a delete, asking to delete it.
    import shutil

    for name in ("spare-one", "spare-two"):
        shutil.copytree(app.models_dir / "default-mlp", app.models_dir / name)
    try:
        open_page(page, f"{app.url}/models")
        main = page.locator("[data-testid=stMain]")
        choose_option(page, main.locator("[data-testid=stSelectbox]"), "spare-one")
        expect(main.locator("strong", has_text="spare-one").first).to_be_visible()
        main.get_by_role("button", name="Delete").click()
        confirm = page.get_by_role("button", name="Yes, delete it")
        expect(confirm).to_be_visible()
        before = finished_runs(page)
        confirm.click()
        wait_for_run(page, before)
        expect(main.get_by_role("cell", name="spare-one", exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Yes, delete it")).to_have_count(0)
        assert errors_on(page) == []
    finally:
        shutil.rmtree(app.models_dir / "spare-two", ignore_errors=True)
