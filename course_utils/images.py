"""Load any picture as an (H, W, 3) uint8 RGB array, and offer sample photos.

Everything in the course that looks at a photograph starts from the same kind of
array: height x width x 3 colour channels, values 0..255, dtype ``uint8``.
:func:`load_image` turns whatever you have into exactly that:

>>> from course_utils.images import load_image
>>> img = load_image("my_photo.jpg")          # doctest: +SKIP
>>> img.shape, img.dtype                      # doctest: +SKIP
((480, 640, 3), dtype('uint8'))

It accepts a file path, the bytes of an image file, a ``PIL.Image.Image`` or a
numpy array (``bytes`` are always an image file's *contents*: a path goes in
as ``str`` or ``pathlib.Path``), and when something cannot be loaded it raises
:class:`ImageLoadError` with a message that says *which* input failed and *why*
(missing file, empty file, not an image, truncated download, too large, ...).

How colours are converted (the rules worth knowing):

* **Transparency is composited onto white.**  A transparent pixel of a PNG
  icon becomes white, not black; a half-transparent pixel is blended half-way
  towards white: ``out = (colour * alpha + 255 * (255 - alpha)) / 255``.
  This applies to RGBA, LA, palette images with transparency and RGBA arrays,
  and to images with one transparent colour (a PNG ``tRNS`` chunk), 16-bit
  grayscale included. Premultiplied alpha (modes ``RGBa``, ``La``) is undone first.
* **16-bit images are scaled, not clipped:** 0..65535 maps to 0..255
  (``round(v * 255 / 65535)``), so 65535 -> 255, 32896 -> 128, 257 -> 1.
* **32-bit integer images** (PIL mode ``"I"``): if the largest value is at most
  255 they are taken as 8-bit; else if at most 65535 they are scaled as 16-bit;
  otherwise they are scaled by their own maximum (the largest value -> 255).
  Negative values become 0.
* **32-bit float images** (PIL mode ``"F"``): if all values lie in [0, 1] they
  are multiplied by 255; else if they lie in [0, 255] they are taken as they
  are; otherwise they are stretched so the minimum -> 0 and the maximum -> 255.
* **Float arrays are stricter:** they must lie in [0, 1] (a float array in
  0..255 is almost always a forgotten ``/ 255``, so it is refused with a hint).
* **Rounding errors are forgiven:** a float value less than half a grey level
  (1/510) outside [0, 1], such as the 1.0000001 that arithmetic in float32
  leaves behind, is clipped to [0, 1], since it rounds to 0 or 255 anyway.
  This holds for float arrays and for mode ``"F"``.
* Grayscale becomes R = G = B; CMYK, YCbCr, LAB and HSV go through PIL's own
  conversion to RGB.
* The EXIF orientation tag of photos is applied (a phone picture taken upright
  comes out upright), and of a multi-frame GIF or TIFF the first frame is used.

Sample photographs from scikit-image's bundled (offline) data are available
with :func:`sample_photo`; see :data:`SAMPLE_PHOTOS` and :data:`PHOTO_CREDITS`.
"""

from __future__ import annotations

import difflib
import functools
import io
import os
import struct
import warnings
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageLoadError",
    "load_image",
    "SAMPLE_PHOTOS",
    "PHOTO_CREDITS",
    "sample_photo",
]

#: What :func:`load_image` accepts.
ImageSource = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, Image.Image, np.ndarray
]

_ACCEPTED = (
    "a file path (str or os.PathLike), the encoded contents of an image file "
    "(bytes, bytearray or memoryview), a PIL.Image.Image, or a numpy array of "
    "shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
)

# Errors PIL raises while reading a damaged or unsupported file.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

#: How far outside [0, 1] a float may be and still be read as in it: less than half a
#: grey level, so the value rounds to 0 or 255 anyway (float32 arithmetic leaves 1.0000001).
_ROUNDING_SLACK = 0.5 / 255


class ImageLoadError(ValueError):
    """An image could not be loaded.

    The message always names the input and the reason, for example
    ``cannot load 'photo.png': the file is truncated (image data ends early)``.
    The two parts are also available as :attr:`source` and :attr:`reason`.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot load {source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep it picklable (e.g. from DataLoader workers)
        return (type(self), (self.source, self.reason))


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def load_image(source: ImageSource, *, max_pixels: int = 40_000_000) -> np.ndarray:
    """Load an image as an (H, W, 3) ``uint8`` RGB array.

    Parameters
    ----------
    source:
        One of

        * a path to an image file (``str`` or ``pathlib.Path``; ``~`` is
          expanded to your home folder);
        * the encoded contents of an image file as ``bytes``, ``bytearray`` or
          ``memoryview`` (for example a download). Bytes are never taken as a
          file name: pass a path as ``str`` or ``pathlib.Path`` (or
          ``os.fsdecode(name)``); bytes that are not an image but name an
          existing file get an error that says so;
        * a ``PIL.Image.Image`` of any mode;
        * a numpy array of shape (H, W) (grayscale), (H, W, 1), (H, W, 3) (RGB)
          or (H, W, 4) (RGBA), with dtype ``uint8``, ``uint16`` (scaled to
          0..255), ``bool`` (True -> 255) or float (values within [0, 1], up to
          a rounding error of less than 1/510, which is clipped).
    max_pixels:
        Refuse images with more than this many pixels (height x width).  For
        files and bytes the size is read from the header, *before* any pixel
        is decoded, so a huge or malicious file cannot fill your memory.
        Note that PIL itself refuses files above ``2 * PIL.Image.MAX_IMAGE_PIXELS``
        (about 179 million pixels) whatever this limit says.

    Returns
    -------
    numpy.ndarray
        A fresh, C-contiguous (H, W, 3) ``uint8`` array: changing it never
        changes your input.  See the module documentation for how
        transparency, 16-bit, 32-bit and float images are converted.

    Raises
    ------
    ImageLoadError
        (a ``ValueError``) if the input cannot be loaded; the message names the
        input and the reason.
    TypeError
        if ``source`` is none of the accepted kinds.
    """
    _check_max_pixels(max_pixels)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, Image.Image):
        label = f"PIL image (mode {source.mode!r}, {source.width}x{source.height})"
        return _from_pil(source, label, "image", max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(source, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return _from_path(source, max_pixels)
    raise TypeError(_type_error_message(source))


def _check_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be an int, got {type(max_pixels).__name__}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")


def _type_error_message(source: object) -> str:
    kind = type(source)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    message = f"load_image() accepts {_ACCEPTED}; got {name}"
    if kind.__module__.startswith("torch"):
        message += (
            " (for a (3, H, W) tensor in [0, 1], pass "
            "tensor.permute(1, 2, 0).cpu().numpy())"
        )
    return message


# --------------------------------------------------------------------------
# Files and bytes
# --------------------------------------------------------------------------


def _from_path(source: str | os.PathLike, max_pixels: int) -> np.ndarray:
    path = os.path.expanduser(os.fsdecode(os.fspath(source)))
    label = repr(path)
    if not os.path.lexists(path):
        raise ImageLoadError(label, "no such file")
    if os.path.isdir(path):
        raise ImageLoadError(label, "this path is a directory, not an image file")
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise ImageLoadError(label, "the file is empty (0 bytes)")
            return _from_stream(file, label, "file", max_pixels)
    except FileNotFoundError:  # e.g. a broken symbolic link
        raise ImageLoadError(label, "no such file (broken link?)") from None
    except PermissionError:
        raise ImageLoadError(label, "permission denied (you may not read this file)") from None


def _from_bytes(source: bytes | bytearray | memoryview, max_pixels: int) -> np.ndarray:
    data = memoryview(source).tobytes()
    label = f"{type(source).__name__} ({len(data)} bytes)"
    if not data:
        raise ImageLoadError(label, "the data is empty (0 bytes)")
    return _from_stream(io.BytesIO(data), label, "data", max_pixels)


def _from_stream(stream, label: str, noun: str, max_pixels: int) -> np.ndarray:
    """Identify the image in an open binary stream and decode it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(label, f"the image is too large ({error})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(label, _unidentified_reason(stream, noun)) from None
    except _DECODE_ERRORS as error:
        raise ImageLoadError(label, f"the {noun} header is damaged ({error})") from None
    with image:
        return _from_pil(image, label, noun, max_pixels)


def _unidentified_reason(stream, noun: str) -> str:
    """Explain why PIL did not recognise the data (zero size, or not an image)."""
    stream.seek(0)
    size = _zero_size_in_header(stream.read(32))
    if size is not None:
        width, height = size
        return f"the header declares a zero width or height ({width}x{height} pixels)"
    reason = f"the {noun} is not an image file PIL can read"
    if noun == "data":  # bytes given to load_image
        stream.seek(0)
        if _names_a_file(stream.read(4097)):
            return (f"{reason}: these bytes are the name of a file, not its contents; "
                    "pass the path as str or pathlib.Path")
        reason += " (bytes are taken as an image file's contents; pass a path as str or pathlib.Path)"
    return reason


def _names_a_file(data: bytes) -> bool:
    """Whether ``data`` is the name of an existing file (a path given as bytes)."""
    return len(data) <= 4096 and b"\0" not in data and os.path.isfile(os.fsdecode(data))


def _zero_size_in_header(head: bytes) -> tuple[int, int] | None:
    """(width, height) if a PNG, GIF or BMP header declares a zero dimension."""
    size = None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        size = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        size = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"BM") and len(head) >= 26 and head[14:18] != b"\x0c\x00\x00\x00":
        width, height = struct.unpack("<ii", head[18:26])
        size = (width, abs(height))
    if size is not None and 0 in size:
        return size
    return None


# --------------------------------------------------------------------------
# PIL images
# --------------------------------------------------------------------------


def _from_pil(image: Image.Image, label: str, noun: str, max_pixels: int) -> np.ndarray:
    """Check the size (from the header, before decoding), decode and convert."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageLoadError(label, f"the image has zero width or height ({width}x{height} pixels)")
    _check_size(width, height, label, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            first = _first_frame(image)
            first = ImageOps.exif_transpose(first)
            return _pil_to_rgb(first, label)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(label, f"the image is too large ({error})") from None
    except _DECODE_ERRORS as error:
        raise ImageLoadError(label, _decode_failure_reason(error, noun)) from None


def _check_size(width: int, height: int, label: str, max_pixels: int) -> None:
    pixels = width * height
    if pixels > max_pixels:
        raise ImageLoadError(
            label,
            f"the image is too large: {width}x{height} = {pixels:,} pixels, "
            f"more than max_pixels={max_pixels:,}",
        )


def _first_frame(image: Image.Image) -> Image.Image:
    """Decode the first frame; a caller's image is left on the frame it was on."""
    frame = image.tell()  # (n_frames would scan the whole file)
    if frame == 0:
        image.load()
        return image
    try:
        image.seek(0)
        return image.copy()
    finally:
        image.seek(frame)


def _decode_failure_reason(error: Exception, noun: str) -> str:
    text = str(error)
    if isinstance(error, EOFError) or "truncated" in text.lower():
        return f"the {noun} is truncated (image data ends early)"
    return f"PIL could not decode the image data ({type(error).__name__}: {text})"


def _pil_to_rgb(image: Image.Image, label: str) -> np.ndarray:
    """Convert a decoded PIL image of any mode to an (H, W, 3) uint8 array."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image)
        rgb = _gray_to_rgb(_scale_uint16(values) if mode != "I" else _scale_int32(values))
        transparent = image.info.get("transparency")  # one grey value (PNG tRNS), fully transparent
        if isinstance(transparent, int):
            rgb[values == transparent] = 255  # onto white, as every other transparency
        return rgb
    if mode == "F":
        return _gray_to_rgb(_scale_pil_float(np.asarray(image), label))
    if mode == "La":  # premultiplied; PIL converts it only to LA
        image = image.convert("LA")
    if mode in ("RGBA", "RGBa", "LA", "La", "PA", "P") or "transparency" in image.info:
        return _composite_on_white(np.asarray(image.convert("RGBA")))
    try:
        rgb = image.convert("RGB")
    except ValueError:
        raise ImageLoadError(label, f"PIL cannot convert mode {mode!r} to RGB") from None
    return np.array(rgb, dtype=np.uint8, order="C")


def _scale_int32(values: np.ndarray) -> np.ndarray:
    """32-bit integers: 8-bit if max <= 255, 16-bit if max <= 65535, else by max."""
    values = np.clip(values.astype(np.int64), 0, None)
    top = int(values.max())
    if top <= 255:
        return values.astype(np.uint8)
    if top <= 65535:
        return _scale_uint16(values)
    return np.rint(values * (255.0 / top)).astype(np.uint8)


def _scale_pil_float(values: np.ndarray, label: str) -> np.ndarray:
    """32-bit floats: [0, 1] (up to a rounding error) -> x255, [0, 255] -> as is,
    anything else -> min-max."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageLoadError(label, "the float image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low >= -_ROUNDING_SLACK and high <= 1 + _ROUNDING_SLACK:
        values = values * 255
    elif low < 0 or high > 255:
        values = (values - low) * (255 / (high - low)) if high > low else values
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


# --------------------------------------------------------------------------
# Numpy arrays
# --------------------------------------------------------------------------


def _from_array(array: np.ndarray, max_pixels: int) -> np.ndarray:
    label = f"array of shape {array.shape} and dtype {array.dtype}"
    _check_array_shape(array, label)
    _check_size(array.shape[1], array.shape[0], label, max_pixels)
    image = _array_to_uint8(array, label)
    if image.ndim == 2:
        return _gray_to_rgb(image)
    if image.shape[2] == 1:
        return _gray_to_rgb(image[:, :, 0])
    if image.shape[2] == 4:
        return _composite_on_white(image)
    return np.array(image, dtype=np.uint8, order="C")  # always a fresh copy


def _check_array_shape(array: np.ndarray, label: str) -> None:
    expected = "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
    if array.ndim not in (2, 3):
        raise ImageLoadError(label, f"{expected}, but the array has {array.ndim} dimension(s)")
    if array.ndim == 3 and array.shape[2] not in (1, 3, 4):
        hint = ""
        if array.shape[0] in (1, 3, 4):
            hint = " (it looks channels-first; use np.moveaxis(array, 0, -1))"
        raise ImageLoadError(
            label, f"{expected}, but the array has {array.shape[2]} channels{hint}"
        )
    if 0 in array.shape:
        raise ImageLoadError(label, "the array is empty (it has a dimension of length 0)")


def _array_to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    """Values of an accepted dtype as uint8 (same shape)."""
    dtype = array.dtype
    kind = (dtype.kind, dtype.itemsize)  # whatever the byte order
    if kind == ("u", 1):
        return array
    if kind == ("b", 1):
        return array.astype(np.uint8) * 255
    if kind == ("u", 2):
        return _scale_uint16(array)
    if kind in (("f", 2), ("f", 4), ("f", 8)):
        return _scale_unit_float(array, label)
    if dtype.kind in "iu":
        raise ImageLoadError(
            label,
            f"integer arrays of dtype {dtype} are not accepted; convert to uint8 "
            "(values 0..255) or uint16 (values 0..65535) first, e.g. "
            "array.astype(np.uint8) if the values are already 0..255",
        )
    raise ImageLoadError(
        label, f"dtype {dtype} is not accepted (use uint8, uint16, bool or float in [0, 1])"
    )


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding: round(v * 255 / 65535)."""
    wide = values.astype(np.int64)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _scale_unit_float(array: np.ndarray, label: str) -> np.ndarray:
    """Floats in [0, 1] -> round(x * 255), a rounding error outside clipped; anything else is refused."""
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageLoadError(label, "the array contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < -_ROUNDING_SLACK or high > 1 + _ROUNDING_SLACK:
        # 6 significant digits always show the overshoot: it is at least 0.00196
        found = f"values range from {low:g} to {high:g}, but float images must lie within [0, 1]"
        if low >= -0.01 and high <= 1.01:
            hint = "they are slightly outside it: clip them first with np.clip(a, 0, 1)"
        elif low >= 0 and high <= 255:
            hint = "they look like 0..255 values: divide the array by 255 first"
        else:
            hint = "rescale them first, e.g. (a - a.min()) / (a.max() - a.min())"
        raise ImageLoadError(label, f"{found}; {hint}")
    return np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)


# --------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, np.newaxis], 3, axis=2), dtype=np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an (H, W, 4) uint8 image onto a white background (rounded)."""
    colour = rgba[:, :, :3].astype(np.int32)
    alpha = rgba[:, :, 3:4].astype(np.int32)
    blended = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(blended, dtype=np.uint8)


# --------------------------------------------------------------------------
# Sample photographs (scikit-image's bundled data, available offline)
# --------------------------------------------------------------------------

#: Names accepted by :func:`sample_photo`.
SAMPLE_PHOTOS: tuple[str, ...] = ("cat", "coffee", "rocket", "astronaut", "camera")

# Course name -> name of the scikit-image function (skimage.data.<name>).
_SKIMAGE_NAMES = {
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "camera": "camera",
}

#: One-line credit per sample photo, as scikit-image's documentation gives it.
PHOTO_CREDITS: dict[str, str] = {
    "cat": "Chelsea the cat; photo by Stefan van der Walt, CC0 "
    "(scikit-image sample data 'chelsea')",
    "coffee": "Coffee cup, courtesy of Pikolo Espresso Bar; photo by Rachel Michetti, "
    "CC0 (scikit-image sample data 'coffee')",
    "rocket": "Launch of DSCOVR on Falcon 9, photo by SpaceX, released into the public "
    "domain (scikit-image sample data 'rocket')",
    "astronaut": "Astronaut Eileen Collins, from the NASA Great Images database, public "
    "domain (scikit-image sample data 'astronaut')",
    "camera": "Gray-level 'camera' image; photo by Lav Varshney, CC0 "
    "(scikit-image sample data 'camera')",
}


def sample_photo(name: str) -> np.ndarray:
    """Return one of the bundled sample photos as an (H, W, 3) uint8 RGB array.

    The photos ship with scikit-image, so no download is needed.  Names (see
    :data:`SAMPLE_PHOTOS`, credits in :data:`PHOTO_CREDITS`):

    * ``"cat"`` -- Chelsea the cat, 300 x 451;
    * ``"coffee"`` -- a coffee cup, 400 x 600;
    * ``"rocket"`` -- a Falcon 9 launch, 427 x 640;
    * ``"astronaut"`` -- astronaut Eileen Collins, 512 x 512;
    * ``"camera"`` -- a grayscale photo, 512 x 512, returned as RGB (R = G = B).

    Each call returns a fresh array you may modify freely.

    Raises
    ------
    ValueError
        for an unknown name; the message suggests the closest name.
    """
    if not isinstance(name, str):
        raise TypeError(f"the photo name must be a str, got {type(name).__name__}")
    if name not in _SKIMAGE_NAMES:
        raise ValueError(_unknown_photo_message(name))
    return load_image(_skimage_photo(name))


def _unknown_photo_message(name: str) -> str:
    # Also match scikit-image's own names, so "chelsea" suggests "cat".
    aliases = {**{key: key for key in SAMPLE_PHOTOS},
               **{value: key for key, value in _SKIMAGE_NAMES.items()}}
    close = difflib.get_close_matches(name.lower(), list(aliases), n=1)
    suggestion = f"; did you mean {aliases[close[0]]!r}?" if close else "."
    return f"unknown sample photo {name!r}{suggestion} Available: {', '.join(SAMPLE_PHOTOS)}"


@functools.lru_cache(maxsize=None)
def _skimage_photo(name: str) -> np.ndarray:
    """The raw array from skimage.data (cached, read-only)."""
    import skimage.data  # imported here: scikit-image is slow to import

    photo = getattr(skimage.data, _SKIMAGE_NAMES[name])()
    photo.setflags(write=False)
    return photo
