"""Evaluate's "Adapt to your digits" through AppTest: the button fine-tunes a copy in a
worker thread, the before/after table shows, "Use the adapted model" makes the copy active,
the save form stores it, and the shipped model every visitor shares stays as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import registry
from tests.pages.conftest import BUSY
from tests.support.slanted_writer import write_slanted_digits
from ui import adapt_view, state

EVALUATE = "pages/2_evaluate.py"
JOB_TIMEOUT = 180


@pytest.fixture(scope="module")
def slanted_digits(tmp_path_factory) -> Path:
    return write_slanted_digits(tmp_path_factory.mktemp("adapt-page") / "digits")


@pytest.fixture
def with_slanted_digits(dashboard, slanted_digits):
    """The dashboard's custom-digits folder holding only the slanted writer's digits."""
    shutil.rmtree(dashboard.custom_dir)
    shutil.copytree(slanted_digits, dashboard.custom_dir)
    return dashboard


def adapt_and_wait(dashboard, at):
    dashboard.click(at, "Adapt to your digits")
    job = at.session_state[adapt_view.ADAPT_JOB]
    assert job is not None, dashboard.texts(at.warning)
    try:
        job.join(JOB_TIMEOUT)
        assert job.snapshot().finished, f"adapting did not finish within {JOB_TIMEOUT} s"
    finally:
        job.stop()
    at.run()
    dashboard.assert_ok(at)
    return job


def test_adapting_shows_before_after_and_can_be_used_and_saved(with_slanted_digits, mnist):
    dashboard = with_slanted_digits
    at = dashboard.open_tab(dashboard.open(EVALUATE), "e_tab", "Custom digits")
    shipped = at.session_state[state.ACTIVE_MODEL]
    assert shipped.origin == "shipped"
    shipped_before = shipped.model.predict_proba(mnist.test_images)

    job = adapt_and_wait(dashboard, at)
    report = job.result.report
    assert report["status"] == "completed" and report["base_model"] == "default-mlp"
    table = next(frame.value for frame in at.dataframe if "scored on" in frame.value)
    assert list(table["scored on"]) == [
        f"Your held-out digits ({report['holdout_count']})", "MNIST test set"]
    assert table["before"].tolist() == pytest.approx(
        [100 * report["custom_before"], 100 * report["mnist_before"]])
    assert table["after"].tolist() == pytest.approx(
        [100 * report["custom_after"], 100 * report["mnist_after"]])
    assert report["custom_after"] > report["custom_before"]

    dashboard.click(at, "Use the adapted model")
    active = at.session_state[state.ACTIVE_MODEL]
    assert active.model is job.result.model and active.origin == "adapted here"
    assert dashboard.texts(at.caption)[0].startswith("default-mlp-adapted (adapted here)")
    assert "Use the adapted model" not in [button.label for button in at.button]
    assert any("adapted model is the active model" in text for text in
               dashboard.texts(at.success))

    # The shipped model, shared by every visitor, predicts exactly as before.
    np.testing.assert_array_equal(shipped.model.predict_proba(mnist.test_images),
                                  shipped_before)
    on_disk = registry.load(dashboard.models_dir / "default-mlp")
    for shared, saved in zip(shipped.model.get_weights(), on_disk.get_weights(), strict=True):
        np.testing.assert_array_equal(shared, saved)

    (name_box,) = [box for box in at.text_input if box.label == "Name"]
    name_box.input("my-adapted")
    (save,) = [button for button in at.button if button.label == "Save"]
    save.click().run()
    dashboard.assert_ok(at)
    assert any("Saved as **my-adapted**" in text for text in dashboard.texts(at.success))
    meta = registry.read_meta(dashboard.models_dir / "my-adapted")
    assert meta["metrics"]["adaptation"]["custom_after"] == report["custom_after"]
    assert meta["metrics"]["test_accuracy"] == pytest.approx(report["mnist_after"])


def test_too_few_digits_disable_the_button_and_say_why(dashboard):
    files = sorted(dashboard.custom_dir.glob("*/*.png"))
    for path in files[5:]:
        path.unlink()
    at = dashboard.open_tab(dashboard.open(EVALUATE), "e_tab", "Custom digits")
    button = dashboard.button(at, "Adapt to your digits")
    assert button.disabled
    assert any(text.startswith("Not yet: adapting needs at least 20 custom digits, and "
                               "there are 5") for text in dashboard.texts(at.caption))


def test_a_busy_server_says_so_and_starts_nothing(with_slanted_digits, busy_server):
    dashboard = with_slanted_digits
    at = dashboard.open_tab(dashboard.open(EVALUATE), "e_tab", "Custom digits")
    dashboard.click(at, "Adapt to your digits")
    assert adapt_view.ADAPT_JOB not in at.session_state
    assert any(BUSY in text for text in dashboard.texts(at.warning))


def test_the_adapt_job_stops_and_reports_failures_for_people(app_env, mnist):
    from engine.custom import CustomDigits, load_custom_digits
    from ui.jobs import AdaptJob

    models_dir, custom_dir = app_env
    base = registry.load(models_dir / "default-mlp")
    digits = load_custom_digits(custom_dir)
    stopped = AdaptJob(base, digits, mnist, base_name="default-mlp")
    stopped.stop()                      # before the first batch: nothing is learnt
    assert stopped.start()
    stopped.join(JOB_TIMEOUT)
    snapshot = stopped.snapshot()
    assert snapshot.status == "stopped" and "stopped at epoch 1, batch 0" in snapshot.message
    assert stopped.result.report["epochs"] == 0
    for kept, given in zip(stopped.result.model.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(kept, given)

    few = CustomDigits(digits.images[:5], digits.labels[:5])
    failed = AdaptJob(base, few, mnist)
    assert failed.start()
    failed.join(JOB_TIMEOUT)
    assert failed.snapshot().status == "failed" and failed.result is None
    assert failed.snapshot().message.startswith("adapting needs at least 20 custom digits")


def test_a_change_too_small_to_show_reads_as_zero_not_minus_zero():
    table = adapt_view.before_after_table({"holdout_count": 30, "custom_before": 0.9667,
                                           "custom_after": 1.0, "mnist_before": 0.9930,
                                           "mnist_after": 0.99299})
    changes = table["change (points)"].tolist()
    assert changes == [3.3, 0.0] and str(changes[1]) == "0.0"
