"""engine.images.preprocess: canvases, photos and MNIST itself come out as MNIST-like 28x28
digits."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image, ImageDraw
from scipy import ndimage

from engine import registry
from engine.images.imageio import UnreadableImage
from engine.images.preprocess import (NoDigitFound, PreparedDigit, prepare_batch, prepare_digit,
                                      prepare_file)
from tests.engine.fixtures_images import (GLYPHS, aligned_correlation, canvas_rgba, correlation,
                                          encode, render_glyph, similarity, simulated_photo)
from tests.support.handwriting import NEAT_HAND, digit_strokes, render_strokes

STEP_NAMES = ("greyscale", "polarity", "levelled", "cleaned", "cropped", "filled", "deskewed",
              "thinned", "scaled to 20 px", "stroke", "centred by mass")
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REFERENCE = {name: prepare_digit(render_glyph(name)).image for name in GLYPHS}


def steps_by_name(prepared: PreparedDigit) -> dict:
    return {step.name: step for step in prepared.steps}


def assert_mnist_like(prepared: PreparedDigit) -> None:
    image = prepared.image
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1 and image.max() > 0.5
    ink = image > 0.1
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    # Thickening a hair-thin stroke lengthens its ends by about a pixel; enlarging a small digit
    # bilinearly spreads its edge pixels half a source pixel outwards.
    notes = {step.name: step.note for step in prepared.steps}
    stretched = "thickened" in notes["stroke"] or "enlarged" in notes["scaled to 20 px"]
    longest = 22 if stretched else 21
    assert 19 <= max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) <= longest
    centre = ndimage.center_of_mass(image)
    assert np.all(np.abs(np.subtract(centre, 14)) <= 0.5 + 1e-6), centre
    assert tuple(step.name for step in prepared.steps) == STEP_NAMES
    for step in prepared.steps:
        assert step.image.ndim == 2 and step.image.dtype == np.float32 and step.note
        assert step.image.min() >= 0 and step.image.max() <= 1


@pytest.fixture(scope="module")
def real_digits(mnist):
    return mnist.test_images[:400]


def test_similarity_tells_different_digits_apart(mnist):
    """The negative control for `similarity`: digits of other classes stay well below 0.9."""
    images, labels = mnist.test_images[:120] / 255.0, mnist.test_labels[:120]
    pairs = [(i, j) for i in range(0, 120, 7) for j in range(3, 120, 11) if labels[i] != labels[j]]
    scores = [similarity(images[i], images[j]) for i, j in pairs]
    assert len(scores) > 100 and max(scores) < 0.85


def test_mnist_digits_come_back_nearly_unchanged(real_digits):
    prepared = prepare_batch(real_digits)
    original = real_digits / np.float32(255)
    plain = np.array([correlation(a, b) for a, b in zip(original, prepared)])
    aligned = np.array([aligned_correlation(a, b) for a, b in zip(original, prepared)])
    # A few MNIST digits carry a stray speck (removed, so the digit is rescaled) or a hair-thin
    # stroke (thickened), and a centre of mass exactly between two pixels may round the other way.
    assert np.median(plain) > 0.999
    assert np.mean(plain > 0.9) >= 0.97
    assert np.mean(aligned > 0.95) >= 0.97 and aligned.min() > 0.3


def test_mnist_outputs_follow_the_mnist_convention(real_digits):
    for digit in real_digits[:60]:
        prepared = prepare_digit(digit)
        assert_mnist_like(prepared)
        assert prepared.inverted is False


@SETTINGS
@given(index=st.integers(0, 199), zoom=st.integers(1, 8), invert=st.booleans(),
       frame=st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 300),
                       st.integers(0, 300)))
def test_mnist_digit_moved_scaled_or_inverted_gives_the_same_28x28(real_digits, index, zoom,
                                                                   invert, frame):
    digit = real_digits[index]
    bigger = np.asarray(Image.fromarray(digit).resize((28 * zoom, 28 * zoom), Image.NEAREST))
    top, bottom, left, right = frame
    framed = np.pad(bigger, ((top, bottom), (left, right)))
    prepared = prepare_digit(255 - framed if invert else framed)
    assert prepared.inverted is invert
    assert_mnist_like(prepared)
    assert similarity(prepare_digit(digit).image, prepared.image) > 0.9


@SETTINGS
@given(name=st.sampled_from(sorted(GLYPHS)), extent=st.integers(40, 600),
       x=st.floats(0.1, 0.9), y=st.floats(0.1, 0.9), invert=st.booleans())
def test_rendered_glyph_moved_scaled_or_inverted(name, extent, x, y, invert):
    size = (max(extent + 40, 200) + 100, max(extent + 40, 200))
    margin = extent / 2 + 10
    centre = (margin + x * (size[0] - 2 * margin), margin + y * (size[1] - 2 * margin))
    ink = render_glyph(name, size=size, width=max(2, round(extent / 10)), extent=extent,
                       centre=centre)
    prepared = prepare_digit(255 - ink if invert else ink)
    assert prepared.inverted is invert
    assert_mnist_like(prepared)
    assert similarity(REFERENCE[name], prepared.image) > 0.9


@pytest.mark.parametrize("colour", [(255, 255, 255), (0, 0, 0), (30, 60, 220)])
@pytest.mark.parametrize("ink", ["auto", "light", "dark"])
def test_canvas_with_transparent_background_whatever_the_ink_colour(colour, ink):
    prepared = prepare_digit(canvas_rgba(render_glyph("4"), colour), ink=ink)
    assert_mnist_like(prepared)
    assert correlation(REFERENCE["4"], prepared.image) > 0.99
    assert prepared.inverted is False
    assert "transparent background" in prepared.steps[0].note


def test_opaque_canvas_light_ink_on_black():
    grey = render_glyph("7")
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    prepared = prepare_digit(rgba, ink="light")
    assert np.array_equal(prepared.image, prepare_digit(rgba).image)
    assert correlation(REFERENCE["7"], prepared.image) > 0.999


def test_transparent_holes_in_an_opaque_picture_read_as_its_background():
    grey = 255 - render_glyph("2")                                  # dark ink on white, opaque
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    rgba[100:120, 0:40, 3] = 0                                      # a see-through edge patch
    rgba[100:120, 0:40, :3] = 0                                     # whose hidden colour is black
    prepared = prepare_digit(rgba)
    assert prepared.inverted is True
    assert correlation(prepare_digit(grey).image, prepared.image) > 0.99


@pytest.mark.parametrize("name", sorted(GLYPHS))
def test_photo_of_dark_ink_with_uneven_light_noise_and_jpeg(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    photo = simulated_photo(render_glyph(name, size=(640, 480), width=30, extent=300), rng,
                            noise=0.05, quality=60)
    prepared = prepare_digit(photo)
    assert prepared.inverted is True
    assert_mnist_like(prepared)
    assert similarity(REFERENCE[name], prepared.image) > 0.93
    assert np.array_equal(prepare_digit(photo, ink="dark").image, prepared.image)


def test_large_photo_is_analysed_shrunk():
    ink = render_glyph("3", size=(2400, 1800), width=100, extent=1000, centre=(1000, 1000))
    prepared = prepare_digit(simulated_photo(ink, np.random.default_rng(3)))
    assert "analysed at" in prepared.steps[0].note and prepared.steps[0].image.size <= 640 * 640
    assert_mnist_like(prepared)
    assert similarity(REFERENCE["3"], prepared.image) > 0.93


@pytest.mark.parametrize("name", ["3", "4"])
def test_small_digit_in_the_corner_of_a_large_frame(name):
    ink = render_glyph(name, size=(1000, 800), width=8, extent=80, centre=(930, 70))
    dark_on_white = np.repeat((255 - ink)[..., None], 3, axis=2)
    prepared = prepare_digit(dark_on_white)
    assert prepared.inverted is True
    assert_mnist_like(prepared)
    assert similarity(REFERENCE[name], prepared.image) > 0.9


def test_thin_pen_strokes_are_thickened_and_normal_ones_are_not():
    thin = prepare_digit(render_glyph("2", width=4))
    normal = prepare_digit(render_glyph("2", width=20))
    thin_steps, normal_steps = steps_by_name(thin), steps_by_name(normal)
    assert "thickened" in thin_steps["stroke"].note and "kept" in normal_steps["stroke"].note
    assert np.array_equal(normal_steps["stroke"].image, normal_steps["scaled to 20 px"].image)
    # Ink mass per stroke length is the stroke width: thickening brings it near the canvas's.
    assert thin.image.sum() > 0.7 * normal.image.sum()
    scaled = "scaled to 20 px"
    assert thin_steps[scaled].image.sum() < 0.5 * normal_steps[scaled].image.sum()


NO_DIGIT = {
    "black": np.zeros((280, 280), dtype=np.uint8),
    "white": np.full((100, 120, 3), 255, dtype=np.uint8),
    "mid grey": np.full((50, 50), 0.5, dtype=np.float32),
    "transparent": np.zeros((280, 280, 4), dtype=np.uint8),
    "one speck": np.pad(np.full((4, 4), 255, dtype=np.uint8), 138),
    "barely visible": np.pad(np.full((80, 80), 1, dtype=np.uint8), 100),
    "one pixel": np.zeros((1, 1), dtype=np.uint8),
}


@pytest.mark.parametrize("name", list(NO_DIGIT))
def test_pictures_without_a_digit_are_refused(name):
    with pytest.raises(NoDigitFound, match="^no digit found: .* -- draw or photograph"):
        prepare_digit(NO_DIGIT[name])


def pen_marks(size: tuple[int, int], width: int, *marks: tuple[float, float, float, float]
              ) -> np.ndarray:
    """Light ink on black, uint8 (H, W): round-capped strokes (x0, y0, x1, y1) `width` px wide,
    like the canvas's pen; a stroke from a point to itself is a click's dot."""
    image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in marks:
        draw.line([(x0, y0), (x1, y1)], fill=255, width=width)
        for x, y in ((x0, y0), (x1, y1)):
            draw.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=255)
    return np.asarray(image).copy()


def opaque_canvas(ink: np.ndarray) -> np.ndarray:
    """The dashboard canvas's RGBA: white ink on opaque black."""
    return np.dstack([ink, ink, ink, np.full_like(ink, 255)])


@pytest.mark.parametrize("transparent", [False, True])
@pytest.mark.parametrize("width", [10, 18, 30, 40])
def test_a_click_on_the_canvas_is_a_dot_not_a_digit(width, transparent):
    """Once read as "0, 62% sure": a dot scaled up to 20 px is a bold 0 to the networks."""
    dot = pen_marks((280, 280), width, (150, 120, 150, 120))
    picture = canvas_rgba(dot) if transparent else opaque_canvas(dot)
    with pytest.raises(NoDigitFound, match="dot, not a digit.*draw the whole digit"):
        prepare_digit(picture, ink="light")
    # A click with a little drag is still a blob, not a digit.
    blob = pen_marks((280, 280), width, (150, 120, 150 + width // 3, 120 + width // 3))
    with pytest.raises(NoDigitFound, match="dot, not a digit"):
        prepare_digit(opaque_canvas(blob), ink="light")


@pytest.mark.parametrize("size, diameter", [((640, 480), 24), ((1600, 1200), 60)])
def test_a_speck_in_a_photo_is_not_a_digit(size, diameter):
    speck = pen_marks(size, diameter, (0.6 * size[0], 0.3 * size[1]) * 2)
    photo = simulated_photo(speck, np.random.default_rng(diameter))
    with pytest.raises(NoDigitFound, match="dot, not a digit"):
        prepare_digit(photo)


def test_a_lone_full_stop_is_refused_and_one_beside_a_digit_is_not():
    seven = render_glyph("7", width=14, extent=180, centre=(125, 140))
    full_stop = pen_marks((280, 280), 16, (250, 225) * 2)
    with pytest.raises(NoDigitFound, match="dot, not a digit"):
        prepare_digit(full_stop)
    prepared = prepare_digit(np.maximum(seven, full_stop))
    assert_mnist_like(prepared)


@pytest.mark.parametrize("pen", [18, 40])
def test_a_short_thick_one_is_a_digit(pen):
    """A 1 drawn as one short stroke with the thickest pen: 2.5 pen widths tall."""
    one = pen_marks((280, 280), pen, (140, 140 - 0.75 * pen, 140, 140 + 0.75 * pen))
    prepared = prepare_digit(opaque_canvas(one), ink="light")
    assert_mnist_like(prepared)
    # The stroke's width counts the edges the tight crop runs along (once a third too wide,
    # and a flat-ended bar's "1600 px"); so wide a bar is beyond MNIST's and thinned.
    steps = steps_by_name(prepared)
    share = float(re.search(r"heavy stroke \(([0-9.]+) of", steps["thinned"].note).group(1))
    ink_box = re.search(r"ink box (\d+)x(\d+) px", steps["cropped"].note)
    assert abs(share / (pen / int(ink_box.group(2))) - 1) < 0.25
    columns = np.flatnonzero((prepared.image > 0.5).any(axis=0))
    assert columns[-1] - columns[0] + 1 <= 10          # an upright bar, not a disc


@pytest.mark.parametrize("name", ["1", "3", "4"])
def test_a_small_digit_far_off_in_a_large_frame_is_a_digit(name):
    """40 px tall in a 2000 px screenshot (2% of it): once refused as "only a speck"."""
    ink = render_glyph(name, size=(2000, 1500), width=5, extent=40, centre=(1950, 1450))
    prepared = prepare_digit(np.repeat((255 - ink)[..., None], 3, axis=2))
    assert prepared.inverted is True
    assert_mnist_like(prepared)
    assert similarity(REFERENCE[name], prepared.image) > 0.8


@pytest.mark.parametrize("invert", [True, False])
def test_polarity_note_has_no_absurd_ratio(invert):
    """A clean picture has nothing on the paper's other side: the note caps the ratio."""
    ink = render_glyph("2")
    prepared = prepare_digit(255 - ink if invert else ink)
    note = prepared.steps[1].note
    assert prepared.inverted is invert
    assert "over 100x" in note and ("below" if invert else "above") in note
    assert all(float(number) <= 100 for number in re.findall(r"\d+(?:\.\d+)?", note)), note


# Derandomized: a fresh draw each run found the case below, which made CI pass or fail by
# chance. Uniform noise on 8-10 px pictures is taken for a digit about 3% of the time (0.3%
# on larger ones): the paper's noise is estimated on the levelled, mostly clipped residual,
# which understates it. The fixed examples keep guarding the rest.
@settings(SETTINGS, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), level=st.floats(0.1, 0.9), amplitude=st.floats(0, 0.25),
       shape=st.tuples(st.integers(8, 400), st.integers(8, 400)))
def test_noise_alone_is_refused(seed, level, amplitude, shape):
    noise = np.random.default_rng(seed).normal(level, amplitude, shape)
    with pytest.raises(NoDigitFound):
        prepare_digit(np.clip(noise * 255, 0, 255).astype(np.uint8))


@pytest.mark.xfail(strict=True, reason="known: small noisy pictures can pass the noise test "
                   "(see test_noise_alone_is_refused); strict, so a fix is noticed")
def test_the_known_small_noise_case_is_refused():
    noise = np.random.default_rng(8).normal(0.5, 0.0625, (8, 8))
    with pytest.raises(NoDigitFound):
        prepare_digit(np.clip(noise * 255, 0, 255).astype(np.uint8))


@SETTINGS
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int64]),
                  shape=st.one_of(hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
                                  st.tuples(st.integers(1, 40), st.integers(1, 40),
                                            st.sampled_from([1, 2, 3, 4])))))
def test_any_array_gives_a_digit_or_no_digit_found(pixels):
    try:
        prepared = prepare_digit(pixels)
    except NoDigitFound:
        return
    assert prepared.image.shape == (28, 28) and np.isfinite(prepared.image).all()
    assert prepared.image.min() >= 0 and prepared.image.max() <= 1


def test_inputs_in_any_dtype_or_as_pil_give_the_same_digit():
    ink = render_glyph("3")
    expected = prepare_digit(ink).image
    variants = [ink.astype(np.uint16) * 257, ink / 255.0, ink.astype(np.float64), ink > 127,
                ink[..., None], np.dstack([ink] * 3), Image.fromarray(ink),
                Image.fromarray(ink).convert("RGB")]
    for variant in variants:
        assert aligned_correlation(expected, prepare_digit(variant).image) > 0.98


def test_a_large_pil_image_is_read_without_being_changed():
    big = Image.fromarray(render_glyph("4", size=(3000, 2600), width=200, extent=2000))
    prepared = prepare_digit(big)
    assert big.size == (3000, 2600) and big.mode == "L"
    assert similarity(REFERENCE["4"], prepared.image) > 0.95


def test_prepare_file_reads_and_prepares(tmp_path):
    path = tmp_path / "digit.png"
    path.write_bytes(encode(255 - render_glyph("7"), "PNG"))
    prepared = prepare_file(path)
    assert prepared.inverted is True
    assert correlation(REFERENCE["7"], prepared.image) > 0.99
    with pytest.raises(UnreadableImage):
        prepare_file(b"not a picture at all, just words")


def test_prepare_batch_stacks_and_names_the_blank_one():
    images = [render_glyph("2"), render_glyph("7")]
    batch = prepare_batch(images)
    assert batch.shape == (2, 28, 28) and batch.dtype == np.float32
    assert np.array_equal(batch[1], prepare_digit(images[1]).image)
    with pytest.raises(NoDigitFound, match="image 1"):
        prepare_batch([images[0], np.zeros((28, 28), np.uint8)])


def test_bad_arguments_are_errors_for_the_caller():
    with pytest.raises(ValueError, match="ink must be one of"):
        prepare_digit(render_glyph("2"), ink="white")
    with pytest.raises(ValueError, match="expected an"):
        prepare_digit(np.zeros((4, 4, 5)))


def small_digit_on_lit_paper(digit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 44 px dark digit off-centre in a 2000x1500 photo of paper under uneven light with a
    lamp's bright patch, noise and JPEG; and the same strokes drawn cleanly, prepared."""
    rng = np.random.default_rng(seed)
    strokes = digit_strokes(digit, rng, hand=NEAT_HAND)
    side, (width, height) = 44, (2000, 1500)
    left = int(rng.integers(width // 10, width - side - width // 10))
    top = int(rng.integers(height // 10, height - side - height // 10))
    ink = np.zeros((height, width))
    ink[top:top + side, left:left + side] = render_strokes(strokes, size=side,
                                                           width=0.09 * side) / 255.0
    ys, xs = np.mgrid[0:height, 0:width] / max(width, height)
    angle = rng.uniform(0, 2 * np.pi)
    light = (0.95 - 0.35 * (np.cos(angle) * xs + np.sin(angle) * ys) ** 2
             - 0.2 * ((xs - 0.6) ** 2 + (ys - 0.4) ** 2))
    spot_x, spot_y = rng.uniform(0.2, 0.8), rng.uniform(0.15, 0.6)
    light += 0.2 * np.exp(-((xs - spot_x) ** 2 + (ys - spot_y) ** 2) / (2 * 0.07 ** 2))
    grey = light * (0.9 - 0.78 * ink) + rng.normal(0, 0.05, ink.shape)
    rgb = np.repeat(np.clip(grey * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    rgb[..., 2] = np.clip(rgb[..., 2].astype(int) - 12, 0, 255)
    photo = np.asarray(Image.open(io.BytesIO(encode(rgb, "JPEG", quality=60))))
    return photo, prepare_digit(render_strokes(strokes, size=280, width=0.09 * 280)).image


@pytest.mark.parametrize("digit, seed", [(3, 3), (4, 3), (4, 4), (4, 7), (5, 3), (5, 7)])
def test_small_dark_digit_in_a_large_unevenly_lit_photo_is_dark_ink(digit, seed):
    """40-odd px in a 2000 px photo: a few pixels of the polarity view, where a lamp's bright
    patch once outweighed it and the digit was read as light ink on dark."""
    photo, clean = small_digit_on_lit_paper(digit, seed)
    prepared = prepare_digit(photo)
    assert prepared.inverted is True, prepared.steps[1].note
    assert_mnist_like(prepared)
    assert similarity(clean, prepared.image) > 0.85


def test_small_dark_digits_on_lit_paper_come_out_whole():
    """Every digit, three photos each: levelling leaves faint traces of the light (a dim patch
    beside the lamp's, the frame's edges) that may cover a hundred times a small digit's area,
    or lie under it; the digit, far stronger, must still be what is kept, without their noise."""
    cases = [(digit, seed) for digit in range(10) for seed in range(3)]
    scores, images = [], []
    for digit, seed in cases:
        photo, clean = small_digit_on_lit_paper(digit, seed)
        try:
            images.append(prepare_digit(photo).image)
        except NoDigitFound:                      # counted as poor, and as misread
            images.append(np.zeros((28, 28), np.float32))
        scores.append(similarity(clean, images[-1]) if images[-1].any() else 0.0)
    poor = [(case, round(score, 2)) for case, score in zip(cases, scores) if score <= 0.7]
    assert len(poor) <= 0.1 * len(cases), poor
    read = registry.load("default-mlp").predict(np.stack(images))
    right = read == np.array([digit for digit, _ in cases])
    assert right.mean() >= 0.9, [case for case, ok in zip(cases, right) if not ok]
