"""Browser-test fixtures: ONE `streamlit run` per test module, on temporary copies of the
models and an empty custom-digits folder, and one headless Debian chromium. Without
chromium the tests skip with the reason; with DIGIT_LAB_REQUIRE_BROWSER=1 (CI) they fail,
and so does the whole session if any browser test was skipped for any reason."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.liveserver import ROOT, chromium_path, launch_chromium, streamlit_server

REQUIRE_BROWSER = os.environ.get("DIGIT_LAB_REQUIRE_BROWSER") == "1"
SCREENSHOTS = os.environ.get("DIGIT_LAB_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1400, "height": 900}


def browser_unavailable(reason: str) -> None:
    """Skip, or fail when the browser tests are required."""
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (DIGIT_LAB_REQUIRE_BROWSER=1: the browser tests must run)",
                    pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class App:
    url: str
    pid: int
    models_dir: Path
    custom_dir: Path


def app_env(tmp: Path) -> dict[str, str]:
    """Environment for a server that may change models and custom digits freely."""
    models, custom = tmp / "models", tmp / "custom_digits"
    shutil.copytree(ROOT / "models", models)
    custom.mkdir()
    return {"DIGIT_LAB_MODELS": str(models), "DIGIT_LAB_CUSTOM_DIR": str(custom)}


@pytest.fixture(scope="module")
def playwright_driver():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_unavailable("playwright not installed: pip install -r requirements-dev.txt")
    if chromium_path() is None:
        browser_unavailable("chromium not installed: apt-get install chromium")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def browser(playwright_driver):
    browser = launch_chromium(playwright_driver)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def app(browser, tmp_path_factory):
    """The module's one server (started after the browser check, so a missing chromium
    skips before paying for it)."""
    env = app_env(tmp_path_factory.mktemp("app"))
    with streamlit_server(env) as server:
        yield App(server.url, server.pid, Path(env["DIGIT_LAB_MODELS"]),
                  Path(env["DIGIT_LAB_CUSTOM_DIR"]))


@pytest.fixture
def page(browser):
    """A new browser context per test: a new Streamlit session, nothing carried over."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


# ---- reporting ----------------------------------------------------------------------

_skipped_browser_tests: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "screenshots: rewrites docs/screenshots/ (run with "
                                       "DIGIT_LAB_SCREENSHOTS=1)")


def pytest_collection_modifyitems(config, items):
    # Screenshots rewrite docs/screenshots/: only on request, and deselected (not skipped)
    # otherwise, so CI's no-skip rule is not tripped by them.
    if SCREENSHOTS:
        return
    keep = [item for item in items if "screenshots" not in item.keywords]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


def pytest_runtest_logreport(report):
    if report.skipped and "e2e" in report.keywords and not hasattr(report, "wasxfail"):
        _skipped_browser_tests.append(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    timings = [(report.nodeid.split("::")[-1], name, value)
               for reports in terminalreporter.stats.values() for report in reports
               for name, value in getattr(report, "user_properties", ())
               if getattr(report, "when", None) == "call"]
    if timings:
        terminalreporter.section("browser timings (not asserted)")
        for test, name, value in timings:
            terminalreporter.write_line(f"{test}: {name} = {value}")
    if REQUIRE_BROWSER and _skipped_browser_tests:
        terminalreporter.section("browser tests skipped", red=True)
        terminalreporter.write_line("DIGIT_LAB_REQUIRE_BROWSER=1 but these were skipped: "
                                    + ", ".join(_skipped_browser_tests), red=True)


def pytest_sessionfinish(session):
    if REQUIRE_BROWSER and _skipped_browser_tests:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
