"""A real `streamlit run` of the dashboard on 127.0.0.1, a headless Debian chromium, and the
few browser moves everyone needs (wait for a run, draw on the canvas): for the browser
tests, the custom-digits seeding script and the app benchmark. What to check is theirs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Without these, chromium tries the network at start and this machine refuses it.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]
READY_SELECTOR = "[data-testid=stApp][data-test-script-state=notRunning]"
CANVAS_SELECTOR = "[data-testid=stBidiComponentIsolated] canvas.upper-canvas"
# Fabric keeps finished strokes on this layer (the upper one only holds the stroke in progress).
DRAWING_SELECTOR = "[data-testid=stBidiComponentIsolated] canvas.dc-canvas.lower-canvas"
ERROR_SELECTOR = "[data-testid=stException], [data-testid=stAlertContentError]"


class LiveServer(NamedTuple):
    url: str
    seconds_to_healthy: float
    pid: int


def chromium_path() -> str | None:
    for candidate in (os.environ.get("DIGIT_LAB_CHROMIUM"), *CHROMIUM_CANDIDATES,
                      shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: dict[str, str] | None = None, *, port: int | None = None,
                     timeout: float = 60.0, script: Path = ROOT / "dashboard.py"
                     ) -> Iterator[LiveServer]:
    """Start `streamlit run dashboard.py` (or `script`); yield its URL, seconds until
    healthy, and pid."""
    port = port or free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(script),
               "--server.port", str(port), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    # A log file, not a pipe: nobody reads a pipe while the server runs, and a full pipe
    # would freeze the server mid-request.
    with tempfile.TemporaryFile("w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            healthy_after = _wait_healthy(url, process, log, timeout) - started
            yield LiveServer(url, healthy_after, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(url: str, process: subprocess.Popen, log: Any, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"streamlit exited with {process.returncode}: "
                               f"{log.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout:.0f} s")


def launch_chromium(playwright):
    """Debian's chromium through Playwright (its own browser download is not used)."""
    path = chromium_path()
    if path is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)


def loaded_libraries(pid: int) -> set[str]:
    """File names of the shared libraries a process has mapped (Linux /proc); empty if
    unknown. TensorFlow cannot be imported without mapping its own .so files."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return set()
    return {Path(line.split()[-1]).name for line in lines if line.split()[-1].startswith("/")}


# ---- in the browser -------------------------------------------------------------

class RunWatcher:
    """Counts the app's finished script runs (whole page or fragment) from the server's
    own `script_finished` messages on the page's websocket. The page's run-state attribute
    is not enough: a fast run can go by without it ever showing "running"."""

    def __init__(self, page: Any):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._message = ForwardMsg
        self._done = {ForwardMsg.FINISHED_SUCCESSFULLY,
                      ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
        self.finished = 0
        self.last_finished_at = 0.0        # time.perf_counter() when it was seen
        page.on("websocket", lambda socket: socket.on("framereceived", self._frame))

    def _frame(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            return
        message = self._message()
        try:
            message.ParseFromString(payload)
        except Exception:           # not a ForwardMsg: nothing to count
            return
        if message.WhichOneof("type") == "script_finished" and \
                message.script_finished in self._done:
            self.finished += 1
            self.last_finished_at = time.perf_counter()


_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watcher(page: Any) -> RunWatcher:
    """The page's run watcher, attached on first use (before the page connects)."""
    if page not in _watchers:
        _watchers[page] = RunWatcher(page)
    return _watchers[page]


def open_page(page: Any, url: str, *, timeout: float = 60.0) -> None:
    """Go to `url` and wait until its first run has finished and the app is idle."""
    runs = watcher(page)
    before = runs.finished
    page.goto(url)
    wait_for_run(page, before, timeout=timeout)


def finished_runs(page: Any) -> int:
    """How many runs have finished since the page was opened."""
    page.evaluate("0")      # a round trip, so events already sent are counted
    return watcher(page).finished


def wait_for_run(page: Any, after: int, *, timeout: float = 30.0, quiet: float = 0.0) -> None:
    """Wait until more than `after` runs have finished, then none for `quiet` seconds (one
    action can start a second run, e.g. when the first gives a widget a new value), and
    the app is idle."""
    runs, deadline = watcher(page), time.perf_counter() + timeout
    while runs.finished <= after or time.perf_counter() - runs.last_finished_at < quiet:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no script run finished within {timeout:.0f} s")
        page.wait_for_timeout(20)
    # The run is over; what is left is the browser drawing its result.
    page.wait_for_selector(READY_SELECTOR, timeout=max(timeout, 30.0) * 1000)


def ink_pixels(page: Any) -> int:
    """How many pixels of the canvas's drawing layer are not black."""
    return page.locator(DRAWING_SELECTOR).evaluate("""canvas => {
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let count = 0;
        for (let i = 0; i < pixels.length; i += 4) if (pixels[i] > 40) count++;
        return count; }""")


def draw_strokes(page: Any, strokes: Sequence[np.ndarray], *, every: int = 3,
                 selector: str = CANVAS_SELECTOR) -> None:
    """Drag the mouse along each stroke (unit coordinates) over the canvas, waiting after
    each mouse-up for the run it triggers. `every` thins the points (~2 px apart on a
    280 px canvas; a hand's mouse events come every 4-8 px)."""
    canvas = page.locator(selector)
    for number, stroke in enumerate(strokes):
        quiet = 0.3 if number == len(strokes) - 1 else 0.0
        stroke = np.asarray(stroke)
        before, ink_before = finished_runs(page), ink_pixels(page)
        _drag(page, _on_canvas(canvas, stroke, every))
        try:
            wait_for_run(page, before, timeout=10.0, quiet=quiet)
            continue
        except TimeoutError:
            if ink_pixels(page) == ink_before:
                # Nothing landed: the canvas was not yet listening, or moved between
                # measuring and dragging (a page still settling on a loaded machine). A
                # person would draw again.
                _drag(page, _on_canvas(canvas, stroke, every))
        # The stroke is there and its run is slow (a loaded machine): wait the rest.
        wait_for_run(page, before, timeout=20.0, quiet=quiet)


def _on_canvas(canvas: Any, stroke: np.ndarray, every: int) -> np.ndarray:
    """The stroke's points in page pixels, measured once the canvas is where it stays:
    Playwright's hover waits until the element is visible, stable and the one under the
    pointer at the stroke's first point."""
    box = canvas.bounding_box()
    canvas.hover(position={"x": float(stroke[0, 0] * box["width"]),
                           "y": float(stroke[0, 1] * box["height"])})
    box = canvas.bounding_box()
    points = np.array([box["x"], box["y"]]) + stroke * np.array([box["width"], box["height"]])
    return np.vstack([points[::every], points[-1:]])


def _drag(page: Any, points: np.ndarray) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y)
    page.mouse.up()
