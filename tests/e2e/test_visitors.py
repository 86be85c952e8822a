"""Two visitors in two browsers on one server with two run slots and a four-second abandon
limit: a reload gives visitor A their run back to stop it; a copied address does not give
A's run to B; runs A walks away from are stopped, and B is never refused a slot."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import VIEWPORT, app_env
from tests.e2e.moves import set_hyperparameters
from tests.e2e.test_app import EPOCH, LONG_HIDDEN, errors_on
from tests.support.liveserver import open_page, streamlit_server

pytestmark = pytest.mark.e2e

ABANDON_SECONDS = 4
BUSY = "already training as many models"


@pytest.fixture(scope="module")
def url(browser, tmp_path_factory):
    env = {**app_env(tmp_path_factory.mktemp("visitors")),
           "DIGIT_LAB_ABANDONED_SECONDS": str(ABANDON_SECONDS),
           "DIGIT_LAB_MAX_CONCURRENT_RUNS": "2"}
    with streamlit_server(env) as server:
        yield server.url


@pytest.fixture
def visitors(browser):
    """Two browsers that share nothing (cookies, storage, sessions)."""
    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(2)]
    for context in contexts:
        context.set_default_timeout(30_000)
    yield [context.new_page() for context in contexts]
    for context in contexts:
        context.close()


def token_of(page) -> str:
    page.wait_for_url(re.compile(r"[?&]visitor="))
    return parse_qs(urlparse(page.url).query)["visitor"][0]


def main(page):
    return page.locator("[data-testid=stMain]")


def start_long_run(page) -> None:
    set_hyperparameters(page, LONG_HIDDEN, train_size="max", epochs="max")
    main(page).get_by_role("button", name="Train", exact=True).click()
    expect(main(page).locator("[data-testid=stProgress]")).to_contain_text(
        EPOCH, timeout=60_000)


def test_a_reload_gets_the_run_back_and_abandoned_runs_never_block_others(url, visitors):
    a, b = visitors
    open_page(a, f"{url}/train")
    token = token_of(a)
    start_long_run(a)

    # B opens A's very address while A's tab is open: B is someone else.
    open_page(b, a.url)
    assert token_of(b) != token
    expect(b.locator("[data-testid=stAlertContentInfo]", has_text="Press")).to_be_visible()
    assert main(b).locator("[data-testid=stProgress]").count() == 0

    # A reloads: the run is there, still training, and A can stop it.
    a.reload()
    a.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]")
    assert token_of(a) == token
    expect(main(a).locator("[data-testid=stProgress]")).to_contain_text(EPOCH)
    main(a).get_by_role("button", name="Stop").click()
    expect(a.locator("[data-testid=stAlertContentWarning]")).to_contain_text(
        "Training stopped", timeout=60_000)
    expect(main(a).get_by_role("button", name="Save")).to_be_visible()

    # A walks away from two long runs (the address without the token: a new visitor each
    # time), which take both of the server's slots.
    for _ in range(2):
        open_page(a, f"{url}/train")
        start_long_run(a)
    open_page(a, url)           # the last one is left too
    left_at = time.monotonic()

    # B trains once the abandon limit has passed, without a single refusal.
    open_page(b, f"{url}/train")
    set_hyperparameters(b, "32", train_size=1000, epochs=1)
    time.sleep(max(0.0, ABANDON_SECONDS + 0.5 - (time.monotonic() - left_at)))
    main(b).get_by_role("button", name="Train", exact=True).click()
    expect(b.locator("[data-testid=stAlertContentSuccess]")).to_contain_text(
        "Training finished.", timeout=60_000)
    assert BUSY not in main(b).inner_text()
    # And once more right away: the abandoned runs are gone for good.
    main(b).get_by_role("button", name="Train", exact=True).click()
    expect(b.locator("[data-testid=stSidebar]")).to_contain_text("run 2 (trained here)",
                                                                  timeout=60_000)
    assert BUSY not in main(b).inner_text()
    assert errors_on(a) == [] and errors_on(b) == []
