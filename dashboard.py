"""Digit Lab's entrypoint and Home page: what this is, the data, the active model, and
where to start. It never imports TensorFlow, so the first page appears quickly."""

import streamlit as st

from ui import cache

# First, so that reading MNIST in its thread overlaps the imports below, not only the
# sidebar (page.setup starts it otherwise): a fresh server's Home waited up to 0.05 s for it.
cache.prefetch_mnist()

from engine.data import describe_source  # noqa: E402
from ui import page, state  # noqa: E402
from ui.figures import tile_digits  # noqa: E402

page.setup("Home", icon="🔢")

st.title("Digit Lab")
st.markdown(
    "Train a neural network on **MNIST**'s handwritten digits, dense or convolutional, "
    "written from scratch in NumPy or built with Keras. Watch it learn, see where it goes "
    "wrong, draw your own digits to test it, and compare both engines side by side.")

data, error = cache.mnist()
if data is None:
    st.error(f"MNIST could not be loaded, so training and evaluation are unavailable.\n\n"
             f"{error}", icon=":material/cloud_off:")
else:
    online = data.source == "download" or "download" in data.origin
    badge = ":green-badge[:material/cloud_done: online]" if online else \
        ":blue-badge[:material/wifi_off: offline]"
    st.markdown(f"{badge} **MNIST**: {len(data.train_labels):,} training and "
                f"{len(data.test_labels):,} test images, from {describe_source(data)}.")
    for refusal in data.refused:     # an altered copy its owner may not know about
        st.warning(f"Passed over: {refusal}", icon=":material/gpp_maybe:")
    samples = cache.sample_indices(8)
    grid = tile_digits(data.test_images[samples.reshape(10, 8).T.reshape(-1)], columns=10)
    # A container of the grid's width with the image stretched in it: on a phone the
    # container narrows to the screen and the grid with it, where a fixed width was cut.
    with st.container(width=520):
        st.image(grid, caption="Eight test digits of each class, 28 x 28 pixels each",
                 width="stretch", clamp=True)

summary = state.active_summary()
if summary is not None:
    st.markdown(f"**Active model:** {summary}")
else:
    st.markdown("**Active model:** none yet. Train one, or pick one on Models.")
st.subheader("Where to start")
left, right = st.columns(2)
with left:
    st.page_link("pages/0_lessons.py", label="**Lessons**: five guided exercises to start "
                 "with", icon=":material/school:")
    st.page_link("pages/1_train.py", label="**Train** a network from the sidebar's settings",
                 icon=":material/model_training:")
    st.page_link("pages/2_evaluate.py", label="**Evaluate**: accuracy per digit, confusion "
                 "matrix", icon=":material/analytics:")
    st.page_link("pages/3_draw.py", label="**Draw & test** your own digits",
                 icon=":material/draw:")
    st.page_link("pages/4_inside.py", label="**Inside**: why the network answers as it "
                 "does", icon=":material/neurology:")
with right:
    st.page_link("pages/5_mistakes.py", label="**Mistakes**: the digits it gets wrong",
                 icon=":material/error:")
    st.page_link("pages/6_compare.py", label="**Compare** NumPy and Keras on one config",
                 icon=":material/compare_arrows:")
    st.page_link("pages/7_models.py", label="**Models**: saved models, download, activate",
                 icon=":material/inventory_2:")
    st.page_link("pages/8_sweep.py", label="**Sweep**: many settings at once, with Optuna",
                 icon=":material/tune:")
