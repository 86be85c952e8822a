"""The Lessons page through AppTest: links open a lesson (an unknown one with a note), a
step's button sets the sidebar and opens its page, and the check ticks the step once the
learner has really done it (real runs, real Inside views)."""

from __future__ import annotations

import numpy as np

from ui import lessons, state
from ui.lessons import LESSONS

LESSONS_PAGE = "pages/0_lessons.py"


def step_done(at) -> list[str]:
    return [text for text in (element.value for element in at.success)]


def test_lesson_links_and_an_unknown_lesson_note(dashboard):
    at = dashboard.open(LESSONS_PAGE)
    assert dashboard.texts(at.title) == ["Lessons"]
    assert at.radio(key="l_lesson").value == 1
    assert dashboard.page_params(at) == {"lesson": "1"}
    at = dashboard.open(LESSONS_PAGE, query={"lesson": "3"})
    assert at.radio(key="l_lesson").value == 3
    assert dashboard.texts(at.subheader)[0] == "3. Overfitting, and what fights it"
    at = dashboard.open(LESSONS_PAGE, query={"lesson": "9"})
    assert at.radio(key="l_lesson").value == 1
    assert any("Ignored lesson=9" in text for text in dashboard.texts(at.caption))


def test_lesson_one_ticks_when_the_first_layer_was_looked_at(dashboard):
    at = dashboard.open(LESSONS_PAGE)
    assert not step_done(at)
    dashboard.click(at, "Open the first layer")
    # AppTest stays on the page it last switched to: visit Inside as the link did.
    at.query_params["view"] = "first"
    dashboard.go(at, "pages/4_inside.py")
    assert at.session_state["i_view"] == "first"
    dashboard.go(at, LESSONS_PAGE)
    (noticed,) = step_done(at)
    assert "first layer" in noticed
    # Progress survives page switches.
    dashboard.go(at, "pages/2_evaluate.py")
    dashboard.go(at, LESSONS_PAGE)
    assert len(step_done(at)) == 1


def test_lesson_two_notices_a_good_run_and_a_diverged_one(dashboard):
    at = dashboard.open(LESSONS_PAGE, query={"lesson": "2"})
    dashboard.click(at, "Set up 0.1 and open Train")
    settings = at.session_state[state.SETTINGS]
    assert (settings["learning_rate"], settings["optimizer"]) == (0.1, "sgd")
    dashboard.go(at, "pages/1_train.py")
    dashboard.click(at, "Train")
    dashboard.finish(at, state.JOB)
    dashboard.go(at, LESSONS_PAGE)
    noticed = step_done(at)
    assert len(noticed) == 1 and "Your run at 0.1 reached" in noticed[0]
    accuracy = at.session_state[state.RUN_HISTORY][-1]["test_accuracy"]
    assert accuracy > 0.85                        # the 'right' rate really learns

    dashboard.click(at, "Set up 1.0 and open Train")
    dashboard.go(at, "pages/1_train.py")
    dashboard.click(at, "Train")
    dashboard.finish(at, state.JOB)
    assert at.session_state[state.RUN_HISTORY][-1]["status"] == "diverged"
    dashboard.go(at, LESSONS_PAGE)
    assert any("diverged" in text for text in step_done(at))


def test_every_step_check_is_silent_before_anything_was_done(dashboard):
    at = dashboard.open(LESSONS_PAGE)
    for number in LESSONS:
        at.radio(key="l_lesson").set_value(number).run()
        dashboard.assert_ok(at)
        assert not step_done(at), (number, step_done(at))
    assert lessons.DONE in at.session_state


def test_lesson_four_notices_a_small_thick_digit_in_a_corner(app_env, mnist):
    """The canvas's half of Draw & test on a drawing as st_canvas returns it: a digit in a
    corner, a quarter of the canvas tall, with a thick pen; then the lesson's check."""
    from PIL import Image
    from streamlit.testing.v1 import AppTest

    def script():
        import streamlit as st

        from ui import draw_view, lessons

        st.session_state.setdefault("d_stroke_kept", st.session_state["pen"])
        draw_view.digit_report(st.session_state["picture"], key="canvas", ink="light",
                               name="your drawing")
        st.write(lessons.LESSONS[4].steps[0].check() or "not yet")

    index = int(np.flatnonzero(mnist.test_labels == 2)[0])
    small = np.asarray(Image.fromarray(mnist.test_images[index]).resize((70, 70)))
    canvas = np.zeros((280, 280), np.uint8)
    canvas[10:80, 10:80] = small                                  # top left corner
    picture = np.dstack([canvas, canvas, canvas, np.full_like(canvas, 255)])
    for pen, done in ((36, True), (12, False)):
        at = AppTest.from_function(script, default_timeout=60)
        at.session_state["picture"], at.session_state["pen"] = picture, pen
        at.run()
        assert not at.exception
        noticed = at.markdown[-1].value
        assert noticed.startswith("A small") is done, noticed
