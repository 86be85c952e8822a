"""engine.images.imageio: each format people upload reads right; anything else is refused with
a reason."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from engine.images.imageio import UnreadableImage, read_image
from engine.images.preprocess import NoDigitFound, prepare_digit
from tests.engine.fixtures_images import encode, render_glyph

GLYPH = render_glyph("2", size=(64, 48), width=5, extent=40)      # (48, 64) uint8, light on black
LOSSY_TOLERANCE = {"JPEG": 4.0, "WEBP": 4.0}                        # mean abs grey-level error


def grey_of(rgba: np.ndarray) -> np.ndarray:
    return rgba[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"])
def test_each_format_reads_as_rgba_from_bytes_path_and_file(image_format, tmp_path):
    data = encode(GLYPH, image_format)
    path = tmp_path / f"digit.{image_format.lower()}"
    path.write_bytes(data)
    with path.open("rb") as handle:
        results = [read_image(data), read_image(path), read_image(str(path)), read_image(handle)]
    for rgba in results:
        assert rgba.shape == (48, 64, 4) and rgba.dtype == np.uint8
        assert np.all(rgba[..., 3] == 255)
        error = np.abs(grey_of(rgba) - GLYPH).mean()
        assert error <= LOSSY_TOLERANCE.get(image_format, 0.5), image_format


@pytest.mark.parametrize("image_format", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(image_format):
    ramp = np.linspace(0, 65535, 256 * 4).astype(np.uint16).reshape(4, 256)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    rgba = read_image(encode(image, image_format))
    expected = ramp / 257.0
    assert np.abs(rgba[..., 0] - expected).max() <= 1.0
    assert rgba[..., 0].max() == 255 and np.unique(rgba[..., 0]).size > 200    # not clipped


def test_32_bit_integer_grey_holding_16_bit_values():
    values = np.linspace(0, 65535, 64 * 8).astype(np.int32).reshape(8, 64)
    rgba = read_image(encode(Image.fromarray(values), "TIFF"))
    assert np.abs(rgba[..., 0] - values / 257.0).max() <= 1.0


def test_palette_with_transparent_entry_becomes_alpha():
    indices = np.zeros((20, 30), dtype=np.uint8)
    indices[5:15, 10:20] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    rgba = read_image(encode(image, "PNG", transparency=0))
    assert np.all(rgba[indices == 0, 3] == 0)
    assert np.all(rgba[indices == 1] == [200, 30, 30, 255])


def test_grey_with_alpha():
    alpha = np.zeros((16, 16), dtype=np.uint8)
    alpha[4:12, 4:12] = 255
    grey = np.full((16, 16), 90, dtype=np.uint8)
    rgba = read_image(encode(Image.fromarray(np.dstack([grey, alpha])), "PNG"))
    assert rgba.shape == (16, 16, 4)
    assert np.array_equal(rgba[..., 3], alpha) and np.all(rgba[alpha > 0, :3] == 90)


def test_cmyk_jpeg_reads_as_colours():
    image = Image.new("CMYK", (40, 20), (0, 0, 0, 0))              # no ink: white paper
    image.paste((0, 0, 0, 255), (0, 0, 20, 20))                     # full black on the left
    rgba = read_image(encode(image, "JPEG", quality=95))
    grey = grey_of(rgba)
    assert grey[:, :16].mean() < 30 and grey[:, 24:].mean() > 225


def test_exif_orientation_6_is_rotated_upright():
    stored = np.zeros((40, 60), dtype=np.uint8)
    stored[:10, :15] = 255                                          # a mark in the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6                                                # "rotate 90 CW to display"
    rgba = read_image(encode(Image.fromarray(stored), "JPEG", exif=exif, quality=95))
    upright = np.rot90(stored, k=-1)                                # 90 degrees clockwise
    assert rgba.shape[:2] == upright.shape == (60, 40)
    assert np.abs(grey_of(rgba) - upright).mean() < 4
    assert grey_of(rgba)[:10, -10:].mean() > 200                     # the mark is now top-right


@pytest.mark.parametrize("image_format", ["GIF", "WEBP"])
def test_animation_gives_its_first_frame(image_format):
    first = Image.fromarray(np.full((20, 20), 30, dtype=np.uint8)).convert("RGB")
    second = Image.fromarray(np.full((20, 20), 220, dtype=np.uint8)).convert("RGB")
    data = encode(first, image_format, save_all=True, append_images=[second], duration=100,
                  loop=0, **({"lossless": True} if image_format == "WEBP" else {}))
    with Image.open(io.BytesIO(data)) as check:
        assert getattr(check, "n_frames", 1) == 2
    assert abs(grey_of(read_image(data)).mean() - 30) < 3


@pytest.mark.parametrize("image_format, size", [("PNG", (4000, 3000)), ("JPEG", (6000, 2000))])
def test_huge_pictures_are_shrunk_keeping_aspect(image_format, size):
    image = Image.new("L", size, 255)
    image.paste(0, (0, 0, size[0] // 2, size[1]))                  # left half black
    rgba = read_image(encode(image, image_format), max_side=2000)
    height, width = rgba.shape[:2]
    assert max(height, width) == 2000
    assert abs(width / height - size[0] / size[1]) < 0.01
    grey = grey_of(rgba)
    assert grey[:, : width // 2 - 10].mean() < 10 and grey[:, width // 2 + 10:].mean() > 245


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header claiming width x height pixels, with a tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)    # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("digit.png", encode(GLYPH, "PNG"))
    return buffer.getvalue()


BAD_INPUTS = {
    "empty": (b"", "empty"),
    "text": (b"these are my notes about digits\nnot a picture\n" * 5, "text"),
    "zip": (zip_bytes(), "ZIP"),
    "truncated png": (encode(GLYPH, "PNG")[:-60], "truncated"),
    "truncated jpeg": (encode(GLYPH, "JPEG")[: len(encode(GLYPH, "JPEG")) // 2], "truncated"),
    "random": (np.random.default_rng(7).bytes(3000), "not a picture"),
    "svg": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
            b'height="10"><path d="M0 0L10 10"/></svg>', "SVG is a vector format"),
    "bomb": (png_claiming(100_000, 100_000), "megapixels"),
    "pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_refused_with_a_reason(name, tmp_path):
    data, reason = BAD_INPUTS[name]
    path = tmp_path / "upload.png"                    # a wrong name must not fool the reader
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(UnreadableImage, match=reason) as caught:
            read_image(source)
        assert "\n" not in str(caught.value)


def test_bomb_refused_from_the_header_even_when_pillow_limit_is_off(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(UnreadableImage, match="100000x100000 pixels"):
        read_image(png_claiming(100_000, 100_000))


def test_own_pixel_and_byte_limits():
    data = encode(GLYPH, "PNG")
    with pytest.raises(UnreadableImage, match="64x48 pixels"):
        read_image(data, max_pixels=1000)
    with pytest.raises(UnreadableImage, match="larger than"):
        read_image(data, max_bytes=len(data) - 1)
    assert read_image(data, max_bytes=len(data)).shape == (48, 64, 4)


def test_missing_file_and_text_mode_handle(tmp_path):
    with pytest.raises(UnreadableImage, match="cannot read"):
        read_image(tmp_path / "nowhere.png")
    with pytest.raises(UnreadableImage, match="cannot read"):
        read_image("data:image/png;base64," + "A" * 5000)            # a data URL is not a path
    with pytest.raises(UnreadableImage, match="cannot read"):
        read_image(str(tmp_path / "bad\0name.png"))
    (tmp_path / "a.txt").write_text("hello")
    with (tmp_path / "a.txt").open("r") as handle, pytest.raises(UnreadableImage, match="binary"):
        read_image(handle)


def test_global_pillow_state_is_left_alone():
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(UnreadableImage):
        read_image(encode(GLYPH, "PNG")[:-60])
    read_image(encode(GLYPH, "PNG"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False and Image.MAX_IMAGE_PIXELS == limit


VALID = [encode(GLYPH, "PNG"), encode(GLYPH, "JPEG"), encode(GLYPH, "GIF")]


def read_and_prepare(data: bytes) -> None:
    """Only our two refusals may escape for any bytes at all."""
    try:
        prepare_digit(read_image(data))
    except (UnreadableImage, NoDigitFound):
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_fuzz_random_bytes(data):
    read_and_prepare(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(range(len(VALID))), data=st.data())
def test_fuzz_mutated_pictures(which, data):
    picture = bytearray(VALID[which])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(picture) - 1), st.integers(0, 255)),
                               min_size=1, max_size=8))
    for position, value in flips:
        picture[position] = value
    cut = data.draw(st.integers(1, len(picture)))
    read_and_prepare(bytes(picture[:cut]))
