"""Lessons: short guided exercises; each step sets the sidebar, opens the page to use, and
notices when it is done. /lessons?lesson=N opens lesson N."""

import streamlit as st

from ui import lessons, page
from ui.lessons import LESSONS

page.setup("Lessons", icon="🎓")

st.title("Lessons")
st.caption("Five short exercises. Each step's button sets the sidebar and opens the page "
           "to use; come back here to see it ticked. Your progress stays for this session.")

asked = st.query_params.get("lesson")
if "l_lesson" not in st.session_state:
    # Streamlit forgets a widget's value on pages that do not draw it: the lesson is kept
    # under a key of our own, so a learner back from Train finds their lesson.
    st.session_state["l_lesson"] = st.session_state.get(lessons.CURRENT, 1)
    if asked is not None and lessons.CURRENT not in st.session_state:
        if asked.isdigit() and int(asked) in LESSONS:
            st.session_state["l_lesson"] = int(asked)
        else:
            st.caption(f"Ignored lesson={asked}: the lessons are numbered 1 to "
                       f"{len(LESSONS)}.")
chooser, body = st.columns([1, 3], gap="large")
with chooser:
    number = st.radio("Lesson", list(LESSONS), key="l_lesson",
                      format_func=lambda n: f"{n}. {LESSONS[n].title}"
                      + (" ✓" if len(lessons.progress(n)) == len(LESSONS[n].steps) else ""))
st.session_state[lessons.CURRENT] = number
st.query_params["lesson"] = str(number)
lesson = LESSONS[number]
done = lessons.progress(number)
with body:
    st.subheader(f"{number}. {lesson.title}")
    st.markdown(lesson.intro)
    for index, step in enumerate(lesson.steps):
        with st.container(border=True):
            mark = ":material/check_circle:" if index in done else \
                ":material/radio_button_unchecked:"
            st.markdown(f"{mark} **Step {index + 1}.** {step.text}")
            if index in done:
                st.success(done[index], icon=":material/check:")
            if step.button:
                if st.button(step.button, key=f"l_{number}_{index}",
                             icon=":material/arrow_forward:"):
                    lessons.apply(step)
    if len(done) == len(lesson.steps):
        st.info(lesson.outro, icon=":material/lightbulb:")
    total = len(lesson.steps)
    st.progress(len(done) / total,
                text=f"{len(done)} of {total} step{'s' if total > 1 else ''} done")
