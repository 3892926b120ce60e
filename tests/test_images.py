"""Tests for course_utils.images: every expected value below is computed by hand."""

from __future__ import annotations

import gc
import io
import os
import pickle
import re
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from course_utils.images import (
    PHOTO_CREDITS,
    SAMPLE_PHOTOS,
    ImageLoadError,
    load_image,
    sample_photo,
)

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def save(image: Image.Image, folder: Path, fmt: str, **options) -> Path:
    path = folder / f"image.{fmt.lower()}"
    path.write_bytes(encode(image, fmt, **options))
    return path


def mode_on_disk(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def row_image(mode: str, values: list) -> Image.Image:
    """A 1-pixel-high image whose pixels are ``values``, left to right."""
    image = Image.new(mode, (len(values), 1))
    for x, value in enumerate(values):
        image.putpixel((x, 0), value)
    return image


def row_pixels(result: np.ndarray) -> list[tuple[int, int, int]]:
    assert result.shape[0] == 1
    return [tuple(int(v) for v in pixel) for pixel in result[0]]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def handmade_png(width: int, height: int) -> bytes:
    """A grayscale PNG whose header says width x height but with a tiny IDAT."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + png_chunk(b"IEND", b"")
    )


def noise(height: int = 64, width: int = 64) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


# --------------------------------------------------------------------------
# every PIL mode, through a file format that stores it (or directly)
# --------------------------------------------------------------------------


def test_mode_L_png(tmp_path):
    path = save(row_image("L", [0, 100, 255]), tmp_path, "PNG")
    assert row_pixels(load_image(path)) == [(0, 0, 0), (100, 100, 100), WHITE]


def test_mode_1_bilevel_png(tmp_path):
    path = save(row_image("1", [0, 1, 0]), tmp_path, "PNG")
    assert mode_on_disk(path) == "1"
    assert row_pixels(load_image(path)) == [BLACK, WHITE, BLACK]


def test_mode_RGB_png(tmp_path):
    path = save(row_image("RGB", [(1, 2, 3), (200, 100, 50)]), tmp_path, "PNG")
    assert row_pixels(load_image(path)) == [(1, 2, 3), (200, 100, 50)]


def test_mode_RGBA_png_composites_onto_white(tmp_path):
    pixels = [(10, 20, 30, 0), (10, 20, 30, 255), (10, 20, 30, 128)]
    path = save(row_image("RGBA", pixels), tmp_path, "PNG")
    transparent, opaque, half = row_pixels(load_image(path))
    assert transparent == WHITE  # a transparent icon must not turn black
    assert opaque == (10, 20, 30)
    # (c * 128 + 255 * 127) / 255: 10 -> 132.02, 20 -> 137.04, 30 -> 142.06
    assert np.abs(np.subtract(half, (132, 137, 142))).max() <= 1


def test_mode_LA_png_composites_onto_white(tmp_path):
    path = save(row_image("LA", [(100, 255), (100, 0), (100, 128)]), tmp_path, "PNG")
    assert mode_on_disk(path) == "LA"
    opaque, transparent, half = row_pixels(load_image(path))
    assert opaque == (100, 100, 100)
    assert transparent == WHITE
    # (100 * 128 + 255 * 127) / 255 = 177.2
    assert all(abs(v - 177) <= 1 for v in half)


def palette_image() -> Image.Image:
    image = row_image("P", [0, 1, 2])
    image.putpalette([255, 0, 0, 0, 0, 255, 10, 200, 30])
    return image


def test_mode_P_palette_png(tmp_path):
    path = save(palette_image(), tmp_path, "PNG")
    assert mode_on_disk(path) == "P"
    assert row_pixels(load_image(path)) == [RED, BLUE, (10, 200, 30)]


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_mode_P_with_transparent_index_becomes_white(tmp_path, fmt):
    path = save(palette_image(), tmp_path, fmt, transparency=1)
    with Image.open(path) as check:
        assert check.mode == "P" and check.info["transparency"] == 1
    assert row_pixels(load_image(path)) == [RED, WHITE, (10, 200, 30)]


def test_mode_P_with_alpha_palette(tmp_path):
    image = row_image("P", [0, 1])
    image.putpalette([10, 20, 30, 128, 40, 50, 60, 255], "RGBA")
    path = save(image, tmp_path, "PNG")
    half, opaque = row_pixels(load_image(path))
    assert np.abs(np.subtract(half, (132, 137, 142))).max() <= 1
    assert opaque == (40, 50, 60)


def test_mode_P_with_alpha_palette_pil_image():
    image = row_image("P", [0, 1])
    image.putpalette([10, 20, 30, 0, 40, 50, 60, 255], "RGBA")
    assert "transparency" not in image.info  # the alpha lives in the palette only
    assert row_pixels(load_image(image)) == [WHITE, (40, 50, 60)]


def test_mode_L_with_transparent_value_png(tmp_path):
    path = save(row_image("L", [100, 7]), tmp_path, "PNG", transparency=7)
    assert row_pixels(load_image(path)) == [(100, 100, 100), WHITE]


CMYK_CASES = [((0, 0, 0, 0), WHITE), ((0, 0, 0, 255), BLACK), ((255, 0, 0, 0), (0, 255, 255))]


def test_mode_CMYK_tiff(tmp_path):
    path = save(row_image("CMYK", [c for c, _ in CMYK_CASES]), tmp_path, "TIFF")
    assert mode_on_disk(path) == "CMYK"
    assert row_pixels(load_image(path)) == [rgb for _, rgb in CMYK_CASES]


@pytest.mark.parametrize("cmyk, rgb", CMYK_CASES)
def test_mode_CMYK_jpeg(tmp_path, cmyk, rgb):
    path = save(Image.new("CMYK", (16, 16), cmyk), tmp_path, "JPEG", quality=95)
    assert mode_on_disk(path) == "CMYK"
    result = load_image(path)
    assert result.shape == (16, 16, 3)
    assert np.abs(result.astype(int) - rgb).max() <= 3


# Y, Cb, Cr -> R = Y + 1.402 (Cr-128), G = Y - 0.344 (Cb-128) - 0.714 (Cr-128),
# B = Y + 1.772 (Cb-128): (76, 85, 255) -> (254.1, 0.1, -0.2)
YCBCR_CASES = [((128, 128, 128), (128, 128, 128)), ((255, 128, 128), WHITE),
               ((0, 128, 128), BLACK), ((76, 85, 255), (254, 0, 0))]


def test_mode_YCbCr_tiff(tmp_path):
    path = save(row_image("YCbCr", [y for y, _ in YCBCR_CASES]), tmp_path, "TIFF")
    assert mode_on_disk(path) == "YCbCr"
    result = load_image(path)
    expected = np.array([[rgb for _, rgb in YCBCR_CASES]])
    assert np.abs(result.astype(int) - expected).max() <= 2


def test_mode_YCbCr_jpeg(tmp_path):
    path = save(Image.new("YCbCr", (16, 16), (76, 85, 255)), tmp_path, "JPEG", quality=95)
    assert np.abs(load_image(path).astype(int) - (254, 0, 0)).max() <= 4


def test_mode_HSV_pil_image():
    image = row_image("HSV", [(0, 255, 255), (85, 255, 255), (170, 255, 255), (0, 0, 200)])
    assert row_pixels(load_image(image)) == [RED, (0, 255, 0), BLUE, (200, 200, 200)]


def test_mode_LAB_pil_image():
    image = row_image("LAB", [(255, 128, 128), (0, 128, 128)])  # a, b are offset by 128
    result = load_image(image).astype(int)
    assert np.abs(result[0, 0] - 255).max() <= 2  # L* = 100: white
    assert np.abs(result[0, 1] - 0).max() <= 2  # L* = 0: black


SIXTEEN_BIT = [0, 257, 32896, 65535]  # -> 0, 1, 128, 255 (v * 255 / 65535 = v / 257)


@pytest.mark.parametrize("mode, fmt", [("I;16", "PNG"), ("I;16", "TIFF"),
                                       ("I;16B", "TIFF"), ("I;16L", "TIFF"),
                                       ("I;16B", "PNG")])
def test_16_bit_modes_are_scaled_not_clipped(tmp_path, mode, fmt):
    path = save(row_image(mode, SIXTEEN_BIT), tmp_path, fmt)
    assert mode_on_disk(path).startswith("I;16")
    assert [p[0] for p in row_pixels(load_image(path))] == [0, 1, 128, 255]


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L"])
def test_16_bit_pil_images(mode):
    result = load_image(row_image(mode, SIXTEEN_BIT))
    assert row_pixels(result) == [(v, v, v) for v in (0, 1, 128, 255)]


def test_16_bit_png_with_transparent_value_becomes_white(tmp_path):
    path = save(row_image("I;16", [0, 257, 32896]), tmp_path, "PNG", transparency=257)
    assert mode_on_disk(path) == "I;16"
    assert row_pixels(load_image(path)) == [BLACK, WHITE, (128, 128, 128)]


# Each mode's all-zero pixel, as Image.new makes it, by hand: no alpha is fully
# transparent (white); CMYK 0 is no ink (white); YCbCr (0, 0, 0) is R = 1.402 * -128
# -> 0, G = -0.344 * -128 - 0.714 * -128 = 135.5 -> 135, B = 1.772 * -128 -> 0.
ZERO_PIXEL = {"LA": WHITE, "La": WHITE, "PA": WHITE, "RGBA": WHITE, "RGBa": WHITE,
              "CMYK": WHITE, "YCbCr": (0, 135, 0), "LAB": None}  # LAB: PIL's own conversion


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_mode_pil_can_create_loads(mode):
    result = load_image(Image.new(mode, (3, 2)))
    assert result.shape == (2, 3, 3) and result.dtype == np.uint8
    expected = ZERO_PIXEL.get(mode, BLACK)
    if expected is not None:
        assert (result == expected).all(), result[0, 0]


def test_mode_La_premultiplied_alpha_composites_onto_white():
    # La stores L * alpha: (100, 128) is grey 100 * 255 / 128 = 199 at half opacity;
    # on white: 100 + 255 * (255 - 128) / 255 = 227
    image = Image.new("La", (1, 1), (100, 128))
    assert row_pixels(load_image(image)) == [(227, 227, 227)]


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0, 100, 255], [0, 100, 255]),  # max <= 255: taken as 8-bit
        ([0, 32896, 65535], [0, 128, 255]),  # max <= 65535: scaled as 16-bit
        ([0, 25000, 100000], [0, 64, 255]),  # larger: by its own max (63.75 -> 64)
        ([-5, 100], [0, 100]),  # negative -> 0
    ],
)
def test_mode_I_32_bit_tiff(tmp_path, values, expected):
    path = save(row_image("I", values), tmp_path, "TIFF")
    assert mode_on_disk(path) == "I"
    assert [p[0] for p in row_pixels(load_image(path))] == expected


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0.0, 0.2, 1.0], [0, 51, 255]),  # within [0, 1]: x 255
        ([0.0, 2.0, 200.4], [0, 2, 200]),  # within [0, 255]: as is (rounded)
        ([-10.0, 0.0, 40.0], [0, 51, 255]),  # otherwise min-max: 10 / 50 * 255
    ],
)
def test_mode_F_float_tiff(tmp_path, values, expected):
    path = save(row_image("F", values), tmp_path, "TIFF")
    assert mode_on_disk(path) == "F"
    assert [p[0] for p in row_pixels(load_image(path))] == expected


def test_mode_F_with_nan_is_refused():
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(row_image("F", [0.5, float("nan")]))


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multi_frame_file_gives_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (4, 4), RED), Image.new("RGB", (4, 4), BLUE)]
    path = save(frames[0], tmp_path, fmt, save_all=True, append_images=frames[1:])
    with Image.open(path) as check:
        assert check.n_frames == 2
    result = load_image(path)
    assert (result == RED).all()


def test_pil_image_on_a_later_frame_gives_first_frame_and_is_left_alone(tmp_path):
    frames = [Image.new("RGB", (4, 4), RED), Image.new("RGB", (4, 4), BLUE)]
    path = save(frames[0], tmp_path, "GIF", save_all=True, append_images=frames[1:])
    with Image.open(path) as image:
        image.seek(1)
        assert (load_image(image) == RED).all()
        assert image.tell() == 1


# --------------------------------------------------------------------------
# the same image through every kind of source
# --------------------------------------------------------------------------

SOURCE_PIXELS = np.array([[[1, 2, 3], [40, 50, 60], [255, 0, 128]],
                          [[7, 8, 9], [0, 0, 0], [250, 251, 252]]], dtype=np.uint8)


@pytest.fixture
def png_file(tmp_path) -> Path:
    return save(Image.fromarray(SOURCE_PIXELS), tmp_path, "PNG")


@pytest.mark.parametrize(
    "make_source",
    [
        lambda p: str(p),
        lambda p: p,
        lambda p: p.read_bytes(),
        lambda p: bytearray(p.read_bytes()),
        lambda p: memoryview(p.read_bytes()),
        lambda p: Image.open(io.BytesIO(p.read_bytes())),
        lambda p: SOURCE_PIXELS.copy(),
    ],
    ids=["str", "Path", "bytes", "bytearray", "memoryview", "PIL", "array"],
)
def test_every_source_type_gives_the_same_array(png_file, make_source):
    result = load_image(make_source(png_file))
    assert result.dtype == np.uint8
    assert result.shape == (2, 3, 3)
    assert result.flags.c_contiguous and result.flags.writeable
    np.testing.assert_array_equal(result, SOURCE_PIXELS)


def test_tilde_is_expanded(png_file, monkeypatch):
    monkeypatch.setenv("HOME", str(png_file.parent))
    np.testing.assert_array_equal(load_image("~/" + png_file.name), SOURCE_PIXELS)


def test_result_is_a_fresh_copy_of_an_array():
    source = SOURCE_PIXELS.copy()
    result = load_image(source)
    assert not np.shares_memory(result, source)
    result[:] = 99
    np.testing.assert_array_equal(source, SOURCE_PIXELS)


def test_result_is_a_fresh_copy_of_a_pil_image():
    image = Image.fromarray(SOURCE_PIXELS)
    result = load_image(image)
    result[:] = 99
    np.testing.assert_array_equal(np.asarray(image), SOURCE_PIXELS)


def test_non_contiguous_array_gives_contiguous_result():
    wide = np.zeros((2, 6, 3), np.uint8)
    wide[:, ::2] = SOURCE_PIXELS
    view = wide[:, ::2]
    assert not view.flags.c_contiguous
    result = load_image(view)
    assert result.flags.c_contiguous
    np.testing.assert_array_equal(result, SOURCE_PIXELS)


@pytest.mark.parametrize("source", [None, 3, 2.5, [[1, 2], [3, 4]], {"a": 1}])
def test_unsupported_source_types_raise_type_error(source):
    with pytest.raises(TypeError, match="accepts a file path .* PIL.Image.Image.* numpy array"):
        load_image(source)


def test_torch_tensor_raises_type_error_with_hint():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"got torch\.Tensor.*permute\(1, 2, 0\)"):
        load_image(torch.zeros(3, 4, 4))


# --------------------------------------------------------------------------
# arrays: accepted dtypes and shapes
# --------------------------------------------------------------------------


def test_uint8_grayscale_shapes():
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    expected = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(load_image(gray), expected)
    np.testing.assert_array_equal(load_image(gray[:, :, None]), expected)


def test_uint8_rgba_array_composites_onto_white():
    rgba = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [10, 20, 30, 128]]], np.uint8)
    transparent, opaque, half = row_pixels(load_image(rgba))
    assert transparent == WHITE and opaque == (10, 20, 30)
    assert np.abs(np.subtract(half, (132, 137, 142))).max() <= 1


@pytest.mark.parametrize("dtype", ["<u2", ">u2"])
def test_uint16_array_is_scaled_with_rounding(dtype):
    # v * 255 / 65535 = v / 257: 128 -> 0.498 -> 0, 129 -> 0.502 -> 1
    values = np.array([[0, 128, 129, 257, 32896, 65535]], dtype=dtype)
    assert [p[0] for p in row_pixels(load_image(values))] == [0, 0, 1, 1, 128, 255]


def test_bool_array():
    assert row_pixels(load_image(np.array([[False, True]]))) == [BLACK, WHITE]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_in_unit_range(dtype):
    values = np.array([[0.0, 0.2, 0.5, 1.0]], dtype=dtype)  # 51, 127.5 -> 128 (rint)
    assert [p[0] for p in row_pixels(load_image(values))] == [0, 51, 128, 255]


def test_float_rgb_array():
    rgb = np.array([[[1.0, 0.0, 0.2]]], dtype=np.float32)
    assert row_pixels(load_image(rgb)) == [(255, 0, 51)]


def test_uint16_rgba_array():
    rgba = np.array([[[65535, 0, 0, 65535], [0, 0, 0, 0]]], dtype=np.uint16)
    assert row_pixels(load_image(rgba)) == [RED, WHITE]


# --------------------------------------------------------------------------
# arrays: refused cases
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64])
def test_other_integer_dtypes_are_refused(dtype):
    with pytest.raises(ImageLoadError, match=rf"array of shape \(2, 2\).*dtype {np.dtype(dtype)}"
                                             r" are not accepted.*uint8"):
        load_image(np.zeros((2, 2), dtype))


@pytest.mark.parametrize("array", [np.zeros((2, 2), complex), np.zeros((2, 2), object)])
def test_non_numeric_dtypes_are_refused(array):
    with pytest.raises(ImageLoadError, match=rf"dtype {array.dtype} is not accepted"):
        load_image(array)


@pytest.mark.parametrize("shape, words", [
    ((5,), "1 dimension"), ((1, 2, 2, 3), "4 dimension"),
    ((2, 2, 2), "2 channels"), ((2, 2, 5), "5 channels"),
])
def test_wrong_shapes_are_refused(shape, words):
    with pytest.raises(ImageLoadError, match=rf"array of shape .*expected \(H, W\).*{words}"):
        load_image(np.zeros(shape, np.uint8))


def test_channels_first_array_gets_a_hint():
    with pytest.raises(ImageLoadError, match=r"channels-first.*np\.moveaxis"):
        load_image(np.zeros((3, 8, 8), np.float32))


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0), (0, 0), (4, 0, 1)])
def test_empty_arrays_are_refused(shape):
    with pytest.raises(ImageLoadError, match=re.escape(f"array of shape {shape}") + ".*empty"):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_are_refused(bad):
    with pytest.raises(ImageLoadError, match="NaN or infinite"):
        load_image(np.array([[0.5, bad]]))


def test_float_in_0_255_is_refused_with_divide_hint():
    with pytest.raises(ImageLoadError, match=r"range from 0 to 200.*\[0, 1\].*divide .* by 255"):
        load_image(np.array([[0.0, 200.0]], np.float32))


def test_float_with_negatives_is_refused_without_divide_hint():
    with pytest.raises(ImageLoadError, match=r"range from -1 to 1\b") as caught:
        load_image(np.array([[-1.0, 1.0]]))
    assert "255" not in str(caught.value)


def test_float_just_above_one_is_refused():
    with pytest.raises(ImageLoadError, match="range from 0 to 1.01"):
        load_image(np.array([[0.0, 1.01]]))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_a_rounding_error_outside_the_unit_range_is_clipped(dtype):
    # within half a grey level (1 / 510) of [0, 1]: rounds to 0..255 anyway
    values = np.array([[-1e-7, 0.5, 1.0000001, 1.0019]], dtype)
    assert row_pixels(load_image(values)) == [BLACK, (128, 128, 128), WHITE, WHITE]


def test_float_slightly_above_one_is_refused_with_a_clip_hint():
    with pytest.raises(ImageLoadError) as caught:
        load_image(np.array([[0.0, 1.003]]))
    message = str(caught.value)
    assert "range from 0 to 1.003" in message and "slightly" in message and "np.clip(a, 0, 1)" in message
    assert "255" not in message  # not mistaken for 0..255 values


def test_pil_float_image_a_rounding_error_above_one_is_scaled_as_unit_range():
    image = row_image("F", [0.0, 0.5, 1.0000001])
    assert row_pixels(load_image(image)) == [BLACK, (128, 128, 128), WHITE]


# --------------------------------------------------------------------------
# bad files
# --------------------------------------------------------------------------


def assert_load_error(source, *words, **kwargs) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **kwargs)
    message = str(caught.value)
    if isinstance(source, (str, Path)):
        assert f"'{source}'" in message, message  # names the file
    assert message.startswith("cannot load ")
    for word in words:
        assert word in message, message
    return caught.value


def test_missing_file(tmp_path):
    assert_load_error(tmp_path / "nope.png", "no such file")


def test_directory(tmp_path):
    assert_load_error(tmp_path, "is a directory")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_load_error(path, "the file is empty")


def test_empty_bytes():
    assert_load_error(b"", "bytes (0 bytes)", "empty")


def test_text_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am not a picture\n")
    assert_load_error(path, "not an image file PIL can read")


def test_text_bytes_name_the_bytes():
    assert_load_error(b"hello", "bytes (5 bytes)", "not an image file PIL can read")


def test_bytes_are_image_data_and_a_path_in_bytes_gets_a_hint(png_file):
    name = os.fsencode(png_file)
    assert_load_error(name, "these bytes are the name of a file, not its contents",
                      "pass the path as str or pathlib.Path")
    error = assert_load_error(b"hello", "bytes are taken as an image file's contents")
    assert "name of a file" not in str(error)
    np.testing.assert_array_equal(load_image(os.fsdecode(name)), SOURCE_PIXELS)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    data = encode(noise(), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    error = assert_load_error(path, "truncated")
    assert error.reason == "the file is truncated (image data ends early)"


def test_truncated_bytes():
    data = encode(noise(), "PNG")
    half = data[: len(data) // 2]
    assert_load_error(half, f"bytes ({len(half)} bytes)", "truncated")


def test_truncated_lazy_pil_image(tmp_path):
    data = encode(noise(), "PNG")
    with Image.open(io.BytesIO(data[: len(data) // 2])) as image:
        assert_load_error(image, "PIL image", "truncated")


@pytest.mark.parametrize("size", [100_000, 10_000])  # PIL: error / only a warning
def test_huge_header_is_refused_before_decoding(tmp_path, size):
    path = tmp_path / "bomb.png"
    path.write_bytes(handmade_png(size, size))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        error = assert_load_error(path, "too large")
    assert "truncated" not in str(error)  # decoding was never attempted


def test_huge_header_in_bytes_names_our_limit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_load_error(handmade_png(10_000, 10_000), "too large", "10000x10000",
                          "max_pixels=40,000,000")


@pytest.mark.parametrize("width, height", [(0, 5), (5, 0)])
def test_header_with_zero_size(tmp_path, width, height):
    path = tmp_path / "flat.png"
    path.write_bytes(handmade_png(width, height))
    assert_load_error(path, "zero width or height", f"{width}x{height}")


def test_pil_image_with_zero_size():
    assert_load_error(Image.new("RGB", (0, 5)), "PIL image", "zero width or height")


def test_max_pixels_is_honoured(tmp_path):
    image = Image.new("RGB", (100, 100), (1, 2, 3))
    path = save(image, tmp_path, "PNG")
    array = np.asarray(image)
    for source in (path, path.read_bytes(), image, array):
        assert_load_error(source, "too large", "100x100", "10,000 pixels",
                          "max_pixels=5,000", max_pixels=5000)
        assert load_image(source, max_pixels=10_000).shape == (100, 100, 3)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError),
                                        (1.5, TypeError), (True, TypeError)])
def test_invalid_max_pixels(bad, error):
    with pytest.raises(error, match="max_pixels"):
        load_image(np.zeros((2, 2), np.uint8), max_pixels=bad)


def test_files_are_closed_and_pil_globals_untouched(tmp_path):
    good = save(noise(8, 8), tmp_path, "PNG")
    data = encode(noise(), "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    before = open_fd_count()
    errors = []  # keeping the errors keeps their tracebacks (and frames) alive
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(20):
            load_image(good)
            with pytest.raises(ImageLoadError) as caught:
                load_image(cut)
            errors.append(caught.value)
        assert open_fd_count() == before
        del errors
        gc.collect()
    assert not [w for w in caught_warnings if issubclass(w.category, ResourceWarning)]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


def test_image_load_error_is_a_value_error_and_picklable():
    error = ImageLoadError("'a.png'", "no such file")
    assert isinstance(error, ValueError)
    assert str(error) == "cannot load 'a.png': no such file"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.reason, str(copy)) == (error.source, error.reason, str(error))


# --------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------


def halves() -> np.ndarray:
    """8 high x 16 wide: left half red, right half blue."""
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, :8] = RED
    pixels[:, 8:] = BLUE
    return pixels


def with_orientation(orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"quality": 95} if fmt == "JPEG" else {}
    return encode(Image.fromarray(halves()), fmt, exif=exif, **options)


# 6: the camera was turned clockwise -> rotate 90 degrees clockwise (left half on top)
# 8: rotate 90 degrees counter-clockwise (left half at the bottom); 3: rotate 180.
@pytest.mark.parametrize("orientation, turns", [(6, -1), (8, 1), (3, 2)])
def test_exif_orientation_png_exact(tmp_path, orientation, turns):
    data = with_orientation(orientation, "PNG")
    expected = np.rot90(halves(), turns)
    path = tmp_path / "turned.png"
    path.write_bytes(data)
    for source in (path, data, Image.open(io.BytesIO(data))):
        np.testing.assert_array_equal(load_image(source), expected)


@pytest.mark.parametrize("orientation, top, bottom", [(6, RED, BLUE), (8, BLUE, RED)])
def test_exif_orientation_jpeg(tmp_path, orientation, top, bottom):
    path = tmp_path / "turned.jpg"
    path.write_bytes(with_orientation(orientation, "JPEG"))
    result = load_image(path).astype(int)
    assert result.shape == (16, 8, 3)
    # JPEG blurs the edge between the halves: compare the middle of each half
    assert np.abs(result[1:6, 1:7] - top).max() <= 40
    assert np.abs(result[10:15, 1:7] - bottom).max() <= 40


# --------------------------------------------------------------------------
# sample photos
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name, shape", [
    ("cat", (300, 451, 3)), ("coffee", (400, 600, 3)), ("rocket", (427, 640, 3)),
    ("astronaut", (512, 512, 3)), ("camera", (512, 512, 3)), ("motorcycle", (500, 741, 3)),
    ("grace_hopper", (600, 512, 3)), ("cat_and_coffee", (448, 448, 3)),
])
def test_sample_photos(name, shape):
    photo = sample_photo(name)
    assert photo.shape == shape and photo.dtype == np.uint8
    assert photo.flags.c_contiguous and photo.flags.writeable
    assert photo.std() > 10  # a real photograph, not a blank array
    gray = (photo[..., 0] == photo[..., 1]).all() and (photo[..., 1] == photo[..., 2]).all()
    assert gray == (name == "camera")


def test_sample_photo_is_a_fresh_copy_each_time():
    first = sample_photo("cat")
    first[:] = 0
    assert sample_photo("cat").max() > 0


def test_sample_photo_cat_is_skimage_chelsea():
    skimage_data = pytest.importorskip("skimage.data")
    np.testing.assert_array_equal(sample_photo("cat"), skimage_data.chelsea())


def test_sample_photo_names_and_credits():
    assert SAMPLE_PHOTOS == ("cat", "coffee", "cat_and_coffee", "rocket", "astronaut", "motorcycle", "grace_hopper",
                             "camera")
    assert set(PHOTO_CREDITS) == set(SAMPLE_PHOTOS)
    assert "Stefan van der Walt" in PHOTO_CREDITS["cat"]
    assert "Eileen Collins" in PHOTO_CREDITS["astronaut"]
    assert "public domain" in PHOTO_CREDITS["grace_hopper"] and "Middlebury" in PHOTO_CREDITS["motorcycle"]


@pytest.mark.parametrize("typo, suggestion", [("catt", "cat"), ("cofee", "coffee"),
                                              ("astronot", "astronaut"), ("chelsea", "cat")])
def test_unknown_sample_photo_suggests_close_match(typo, suggestion):
    with pytest.raises(ValueError, match=rf"unknown sample photo '{typo}'; did you mean "
                                         rf"'{suggestion}'\? Available: cat, coffee, cat_and_coffee, rocket"):
        sample_photo(typo)


def test_unknown_sample_photo_without_close_match():
    with pytest.raises(ValueError, match=r"'zebra'\. Available: cat, coffee") as caught:
        sample_photo("zebra")
    assert "did you mean" not in str(caught.value)


# --------------------------------------------------------------------------
# the module itself
# --------------------------------------------------------------------------


def test_import_does_not_import_skimage():
    code = "import course_utils.images, sys; assert 'skimage' not in sys.modules"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_public_api():
    import course_utils.images as images

    assert set(images.__all__) == {"ImageLoadError", "load_image", "SAMPLE_PHOTOS",
                                   "PHOTO_CREDITS", "sample_photo"}


# --- pinned by mutation testing ---


def test_invalid_max_pixels_is_refused_before_the_source_is_looked_at(tmp_path):
    # an argument error, not "no such file" and not "too large": max_pixels=0 can never load anything
    with pytest.raises(ValueError, match=r"max_pixels must be at least 1, got 0") as caught:
        load_image(tmp_path / "missing.png", max_pixels=0)
    assert not isinstance(caught.value, ImageLoadError)
    assert load_image(np.zeros((1, 1), np.uint8), max_pixels=1).shape == (1, 1, 3)  # 1 is allowed


def test_max_pixels_counts_height_times_width_of_a_non_square_array():
    tall_rows = np.zeros((10, 100), np.uint8)  # 10 high, 100 wide: 1,000 pixels
    assert load_image(tall_rows, max_pixels=1000).shape == (10, 100, 3)
    assert_load_error(tall_rows, "too large", "100x10 = 1,000 pixels", "max_pixels=999", max_pixels=999)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 8, 8), (4, 8, 8)])
def test_channels_first_hint_for_one_three_and_four_channels(shape):
    # (1, H, W) is a grayscale image in channels-first layout (a torch habit)
    with pytest.raises(ImageLoadError, match=r"8 channels \(it looks channels-first; use np\.moveaxis"):
        load_image(np.zeros(shape, np.uint8))


def test_uint16_array_every_value_is_rounded_as_documented():
    # the documented rule round(v * 255 / 65535) = round(v / 257), for all 65536 values;
    # v / 257 is never exactly x.5, e.g. 32768 / 257 = 127.502 -> 128, 65407 / 257 = 254.502 -> 255
    values = np.arange(65536, dtype=np.uint16).reshape(1, -1)
    expected = np.rint(np.arange(65536) * 255 / 65535).astype(np.uint8)
    result = load_image(values)
    np.testing.assert_array_equal(result[0, :, 0], expected)
    assert result[0, 32768, 0] == 128 and result[0, 65407, 0] == 255


FLOAT_HINTS = {
    "clip": "they are slightly outside it: clip them first with np.clip(a, 0, 1)",
    "divide": "they look like 0..255 values: divide the array by 255 first",
    "rescale": "rescale them first, e.g. (a - a.min()) / (a.max() - a.min())",
}


@pytest.mark.parametrize("low, high, hint", [
    (0.0, 1.01, "clip"),      # the edge of "slightly outside"
    (-0.01, 1.0, "clip"),
    (0.0, 1.5, "divide"),     # beyond 1.01: not a rounding slip
    (0.0, 255.0, "divide"),   # the edge of 0..255
    (0.0, 255.5, "rescale"),  # beyond 255: not 0..255 values
    (-0.02, 1.0, "rescale"),
])
def test_float_out_of_range_hint_boundaries(low, high, hint):
    with pytest.raises(ImageLoadError) as caught:
        load_image(np.array([[low, high]]))
    assert caught.value.reason.endswith("; " + FLOAT_HINTS[hint]), caught.value.reason


def os2_bmp(width: int, height: int) -> bytes:
    """An OS/2 BMP header (BITMAPCOREHEADER, 12 bytes: 16-bit width and height), 24 bits, no pixels."""
    core = struct.pack("<IHHHH", 12, width, height, 1, 24)
    return b"BM" + struct.pack("<IHHI", 26, 0, 0, 26) + core


def test_os2_bmp_header_is_not_read_as_a_windows_one():
    # Read as a Windows header (32-bit sizes at bytes 18..26) this 0x0 OS/2 header would
    # be "0 x 1572865" (planes 1, 24 bits); the size check leaves OS/2 headers alone, so
    # no made-up size is reported.
    error = assert_load_error(os2_bmp(0, 0), "not an image file PIL can read")
    assert "pixels" not in str(error)
