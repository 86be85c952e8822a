"""Custom digits on real files: MNIST test digits drawn big on paper and on a canvas, junk
that is reported and skipped, atomic saves (even when the process is killed), evaluation."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import build_model
from engine.atomic import PAUSE_ENV
from engine.config import TrainConfig
from engine.custom import (count_by_label, evaluate_custom, folder_signature,
                           load_custom_digits, save_custom_digit)
from engine.images.imageio import UnreadableImage, read_image
from engine.images.preprocess import NoDigitFound
from engine.training import split_training_data
from tests.engine.fixtures_images import canvas_rgba, correlation, encode

REPO = Path(__file__).resolve().parents[2]
EVALUATE_KEYS = {"accuracy", "count", "per_class_accuracy", "confusion_matrix", "mistakes",
                 "skipped"}


def upscaled(digit: np.ndarray, side: int = 200) -> np.ndarray:
    """An MNIST digit (light on black) as a big picture, uint8 (side, side)."""
    return np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))


def on_paper(digit: np.ndarray) -> np.ndarray:
    return 255 - upscaled(digit)                    # dark ink on light paper


def on_canvas(digit: np.ndarray) -> np.ndarray:
    return canvas_rgba(upscaled(digit))             # white ink as alpha on transparent


@pytest.fixture(scope="module")
def picks(mnist):
    """Two test digits each of labels 1, 3 and 7: (label, MNIST image)."""
    return [(label, mnist.test_images[index]) for label in (1, 3, 7)
            for index in np.flatnonzero(mnist.test_labels == label)[:2]]


@pytest.fixture
def folder(tmp_path, picks):
    """A custom-digits folder: good PNGs per label, junk, and folders that are no label."""
    root = tmp_path / "custom"
    for number, (label, digit) in enumerate(picks):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        picture = on_paper(digit) if number % 2 == 0 else on_canvas(digit)
        (root / str(label) / f"{number:02d}.png").write_bytes(encode(picture, "PNG"))
    (root / "3" / "notes.png").write_text("not a picture, just a note\n")
    (root / "7" / "empty.png").write_bytes(b"")
    (root / "1" / "blank.png").write_bytes(encode(np.full((200, 200), 255, np.uint8), "PNG"))
    (root / "3" / "readme.md").write_text("not an image suffix: reported")
    (root / "3" / ".hidden.png").write_bytes(encode(on_paper(picks[0][1]), "PNG"))
    (root / "loose.png").write_bytes(encode(on_paper(picks[0][1]), "PNG"))
    (root / "README.md").write_text("the folder's own notes: not a picture, not skipped")
    for not_a_label in ("10", "x", "extra"):
        (root / not_a_label).mkdir()
        (root / not_a_label / "a.png").write_bytes(encode(on_paper(picks[0][1]), "PNG"))
    return root


@pytest.fixture(scope="module")
def model(mnist):
    config = TrainConfig(hidden_sizes=(64,), epochs=2, train_size=6000, batch_size=64)
    images, labels, _, _ = split_training_data(mnist.train_images, mnist.train_labels, config)
    network = build_model("numpy", config)
    network.fit(images, labels)
    return network


def test_load_takes_labels_from_folders_and_reports_junk_without_stopping(folder, picks):
    digits = load_custom_digits(folder)

    assert len(digits) == len(picks) == 6
    assert digits.images.shape == (6, 28, 28) and digits.images.dtype == np.float32
    assert 0 <= digits.images.min() and digits.images.max() <= 1
    assert [path.parent.name for path in digits.paths] == [str(label) for label in
                                                            digits.labels]
    assert sorted(digits.labels.tolist()) == sorted(label for label, _ in picks)
    # Each picture, on paper or on a canvas, comes back as its own MNIST digit.
    originals = [digit / 255 for _, digit in picks]
    for path, image in zip(digits.paths, digits.images):
        scores = [correlation(image, original) for original in originals]
        assert int(np.argmax(scores)) == int(path.stem) and max(scores) > 0.7
    reasons = {str(path.relative_to(folder)): reason for path, reason in digits.skipped}
    assert set(reasons) == {"3/notes.png", "7/empty.png", "1/blank.png", "3/readme.md",
                            "10/a.png", "x/a.png", "extra/a.png", "loose.png"}
    assert "text file" in reasons["3/notes.png"]
    assert reasons["3/readme.md"].startswith("not a picture (.md)")
    assert "which is no label" in reasons["x/a.png"]
    assert "outside the label folders" in reasons["loose.png"]
    assert "empty" in reasons["7/empty.png"]
    assert "no digit found" in reasons["1/blank.png"]
    # Counting does not decode: the junk PNGs count, the .md and the hidden file do not.
    assert count_by_label(folder) == [3 if digit in (1, 3, 7) else 0 for digit in range(10)]


def test_a_missing_folder_is_an_error_that_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="one sub-folder per label"):
        load_custom_digits(tmp_path / "nowhere")
    assert count_by_label(tmp_path / "nowhere") == [0] * 10


def test_save_writes_a_readable_png_atomically_into_the_label_folder(tmp_path, picks):
    label, digit = picks[2]
    canvas = on_canvas(digit)
    before = folder_signature(tmp_path)
    path = save_custom_digit(canvas, label, tmp_path)

    assert path.parent == tmp_path / str(label) and path.suffix == ".png"
    assert os.listdir(path.parent) == [path.name]       # no temporary file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    np.testing.assert_array_equal(read_image(path), canvas)
    assert folder_signature(tmp_path) != before
    assert count_by_label(tmp_path)[label] == 1
    from_bytes = save_custom_digit(encode(on_paper(digit), "PNG"), label, tmp_path)
    assert load_custom_digits(tmp_path).paths == sorted([path, from_bytes])
    # The same drawing added again is the same file, not a second copy.
    assert save_custom_digit(canvas, label, tmp_path) == path
    assert count_by_label(tmp_path)[label] == 2


@pytest.mark.parametrize("label", [10, -1, "3", 3.0, True, None])
def test_save_refuses_a_bad_label(tmp_path, picks, label):
    with pytest.raises(ValueError, match="label must be a digit from 0 to 9"):
        save_custom_digit(on_canvas(picks[0][1]), label, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("blank", [np.zeros((280, 280, 4), np.uint8),
                                   np.full((280, 280, 3), 255, np.uint8)],
                         ids=["empty canvas", "white paper"])
def test_save_refuses_a_drawing_without_a_digit(tmp_path, blank):
    with pytest.raises(NoDigitFound):
        save_custom_digit(blank, 4, tmp_path)
    with pytest.raises(UnreadableImage):
        save_custom_digit(b"hello, not a picture", 4, tmp_path)
    assert count_by_label(tmp_path) == [0] * 10
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_evaluate_custom_scores_the_folder(folder, model):
    result = evaluate_custom(model, folder)

    assert set(result) == EVALUATE_KEYS and result["count"] == 6
    digits = load_custom_digits(folder)
    predictions = model.predict(digits.images)
    assert result["accuracy"] == pytest.approx(np.mean(predictions == digits.labels), abs=1e-6)
    assert len(result["mistakes"]) == int(np.sum(predictions != digits.labels))
    for mistake in result["mistakes"]:
        assert mistake["label"] != mistake["predicted"] and 0 < mistake["confidence"] <= 1
        assert Path(mistake["file"]).parent.name == str(mistake["label"])
    assert [value is None for value in result["per_class_accuracy"]] == \
        [digit not in (1, 3, 7) for digit in range(10)]
    assert np.asarray(result["confusion_matrix"]).sum() == 6
    assert {item["file"] for item in result["skipped"]} == \
        {str(path) for path, _ in digits.skipped} and len(digits.skipped) == 8


def test_evaluate_custom_on_an_empty_folder_has_the_same_keys(tmp_path, model):
    result = evaluate_custom(model, tmp_path)
    assert set(result) == EVALUATE_KEYS
    assert result["count"] == 0 and result["accuracy"] is None and result["mistakes"] == []


CHILD = """
import sys
from PIL import Image
import numpy as np
from engine.custom import save_custom_digit
from engine.data import load_mnist

digit = load_mnist().test_images[0]
big = np.asarray(Image.fromarray(digit).resize((200, 200)))
save_custom_digit(255 - big, int(load_mnist().test_labels[0]), sys.argv[1])
print("saved", file=sys.stderr, flush=True)
"""


def test_a_save_killed_before_the_rename_leaves_no_partial_png(tmp_path, mnist):
    env = {**os.environ, PAUSE_ENV: "before-replace"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stderr.readline()      # the child pauses (or fails) within seconds
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with child.stderr:
        assert line.strip() == "paused at before-replace", line + child.stderr.read()

    label_dir = tmp_path / str(mnist.test_labels[0])
    leftovers = list(label_dir.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")   # the hidden temp
    assert leftovers[0].stat().st_size > 0                             # it was being written
    assert not list(label_dir.glob("*.png"))
    digits = load_custom_digits(tmp_path)
    assert len(digits) == 0 and digits.skipped == []
    assert count_by_label(tmp_path) == [0] * 10


def test_naming_the_folder_does_not_import_scipy():
    # Evaluate's first view names the custom-digits folder; SciPy's ndimage (0.3 s to
    # import) is only for preparing pictures, when the tab that shows them opens.
    script = ("import sys\nimport engine.custom\n"
              "print('scipy.ndimage' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]
