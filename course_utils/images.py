"""Load any picture as an (H, W, 3) uint8 RGB array, and offer sample photos.

Everything in the course that looks at a photograph starts from such an array: height x width x 3 colour
channels, values 0..255, dtype ``uint8``. :func:`load_image` makes one from a file path, the bytes of an image
file (``bytes`` are always a file's *contents*: a path goes in as ``str`` or ``pathlib.Path``), a
``PIL.Image.Image`` or a numpy array; when it cannot, it raises :class:`ImageLoadError` with a message that says
*which* input failed and *why* (missing file, empty file, not an image, truncated download, too large, ...).

>>> from course_utils.images import load_image
>>> img = load_image("my_photo.jpg")          # doctest: +SKIP
>>> img.shape, img.dtype                      # doctest: +SKIP
((480, 640, 3), dtype('uint8'))

How colours are converted (the rules worth knowing):

* **Transparency is composited onto white:** a transparent pixel of a PNG icon becomes white, not black; a
  half-transparent one is blended half-way: ``out = (colour * alpha + 255 * (255 - alpha)) / 255``. This applies
  to RGBA, LA, palette images with transparency, RGBA arrays and images with one transparent colour (a PNG
  ``tRNS`` chunk), 16-bit grayscale included. Premultiplied alpha (modes ``RGBa``, ``La``) is undone first.
* **16-bit images are scaled, not clipped:** 0..65535 maps to 0..255 (``round(v * 255 / 65535)``), so
  65535 -> 255, 32896 -> 128, 257 -> 1.
* **32-bit integer images** (PIL mode ``"I"``): negative values become 0; if the largest value is at most 255
  they are taken as 8-bit, else if at most 65535 scaled as 16-bit, otherwise scaled by their own maximum (the
  largest value -> 255).
* **32-bit float images** (PIL mode ``"F"``): if all values lie in [0, 1] they are multiplied by 255, else if in
  [0, 255] taken as they are, otherwise stretched so the minimum -> 0 and the maximum -> 255.
* **Float arrays are stricter:** they must lie in [0, 1] (a float array in 0..255 is almost always a forgotten
  ``/ 255``, so it is refused with a hint).
* **Rounding errors are forgiven:** a float value (of an array or of mode ``"F"``) less than half a grey level
  (1/510) outside [0, 1], such as the 1.0000001 that float32 arithmetic leaves behind, is clipped to [0, 1],
  since it rounds to 0 or 255 anyway.
* Grayscale becomes R = G = B; CMYK, YCbCr, LAB and HSV go through PIL's own conversion to RGB.
* The EXIF orientation tag of photos is applied (a phone picture taken upright comes out upright), and of a
  multi-frame GIF or TIFF the first frame is used.

:func:`sample_photo` gives photographs from scikit-image's bundled (offline) data: see :data:`SAMPLE_PHOTOS` and
:data:`PHOTO_CREDITS`.
"""

from __future__ import annotations

import difflib
import functools
import io
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "SAMPLE_PHOTOS", "PHOTO_CREDITS", "sample_photo"]

#: What :func:`load_image` accepts.
ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)  # PIL on a damaged file
_ROUNDING_SLACK = 0.5 / 255  # how far outside [0, 1] a float still counts as in it: half a grey level


class ImageLoadError(ValueError):
    """An image could not be loaded. The message names the input and the reason, for example
    ``cannot load 'photo.png': the file is truncated (image data ends early)``; the two parts are also
    available as :attr:`source` and :attr:`reason`."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"cannot load {source}: {reason}")
        self.source, self.reason = source, reason

    def __reduce__(self):  # keep it picklable (e.g. from DataLoader workers)
        return (type(self), (self.source, self.reason))


def load_image(source: ImageSource, *, max_pixels: int = 40_000_000) -> np.ndarray:
    """Load an image as a fresh, C-contiguous (H, W, 3) ``uint8`` RGB array (changing it never changes your
    input); the module documentation says how colours are converted. ``source`` is one of:

    * a path to an image file (``str`` or ``pathlib.Path``; ``~`` is expanded to your home folder);
    * the encoded contents of an image file (e.g. a download) as ``bytes``, ``bytearray`` or ``memoryview``, never
      a file name: pass a path as ``str``, ``pathlib.Path`` or ``os.fsdecode(name)`` (bytes that are not an image
      but name an existing file get an error that says so);
    * a ``PIL.Image.Image`` of any mode;
    * a numpy array of shape (H, W) (grayscale), (H, W, 1), (H, W, 3) (RGB) or (H, W, 4) (RGBA), with dtype
      ``uint8``, ``uint16`` (scaled to 0..255), ``bool`` (True -> 255) or float (values within [0, 1]).

    ``max_pixels`` refuses images with more pixels (height x width); for files and bytes the size is read from the
    header, *before* any pixel is decoded, so a huge or malicious file cannot fill your memory (PIL itself refuses
    files above ``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 million pixels, whatever this limit says).
    Raises :class:`ImageLoadError` (a ``ValueError``) naming the input and the reason if it cannot be loaded, and
    ``TypeError`` if ``source`` is none of the accepted kinds.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be an int, got {type(max_pixels).__name__}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
    if isinstance(source, np.ndarray):
        label = f"array of shape {source.shape} and dtype {source.dtype}"
        expected = "expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        if source.ndim not in (2, 3):
            raise ImageLoadError(label, f"{expected}, but the array has {source.ndim} dimension(s)")
        if source.ndim == 3 and source.shape[2] not in (1, 3, 4):
            hint = " (it looks channels-first; use np.moveaxis(array, 0, -1))" if source.shape[0] in (1, 3, 4) else ""
            raise ImageLoadError(label, f"{expected}, but the array has {source.shape[2]} channels{hint}")
        if 0 in source.shape:
            raise ImageLoadError(label, "the array is empty (it has a dimension of length 0)")
        _check_size(source.shape[1], source.shape[0], label, max_pixels)
        return _to_rgb(source, label)
    with warnings.catch_warnings():  # PIL's DecompressionBombWarning: max_pixels is the limit that counts
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if isinstance(source, Image.Image):
            label = f"PIL image (mode {source.mode!r}, {source.width}x{source.height})"
            return _from_pil(source, label, "image", max_pixels)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = memoryview(source).tobytes()
            label = f"{type(source).__name__} ({len(data)} bytes)"
            if not data:
                raise ImageLoadError(label, "the data is empty (0 bytes)")
            return _from_stream(io.BytesIO(data), label, "data", max_pixels)
        if isinstance(source, (str, os.PathLike)):
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
    kind = type(source)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if kind.__module__.startswith("torch"):
        name += " (for a (3, H, W) tensor in [0, 1], pass tensor.permute(1, 2, 0).cpu().numpy())"
    raise TypeError("load_image() accepts a file path (str or os.PathLike), the encoded contents of an image file "
                    "(bytes, bytearray or memoryview), a PIL.Image.Image, or a numpy array of shape (H, W), "
                    f"(H, W, 1), (H, W, 3) or (H, W, 4); got {name}")


def _from_stream(stream, label: str, noun: str, max_pixels: int) -> np.ndarray:
    """Identify the image in an open binary stream (a file or the bytes given), then decode it."""
    try:
        image = Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(label, f"the image is too large ({error})") from None
    except UnidentifiedImageError:
        stream.seek(0)
        raise ImageLoadError(label, _unidentified_reason(stream.read(4097), noun)) from None
    except _DECODE_ERRORS as error:
        raise ImageLoadError(label, f"the {noun} header is damaged ({error})") from None
    with image:
        return _from_pil(image, label, noun, max_pixels)


def _unidentified_reason(head: bytes, noun: str) -> str:
    """Why PIL did not recognise data beginning with ``head``: a zero size, a path given as bytes, or no image."""
    size = None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        size = struct.unpack(">II", head[16:24])
    elif head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        size = struct.unpack("<HH", head[6:10])
    elif head.startswith(b"BM") and len(head) >= 26 and head[14:18] != b"\x0c\x00\x00\x00":
        # a Windows BMP header (an OS/2 one, 12 bytes long, has 16-bit sizes); height < 0 is top-down
        width, height = struct.unpack("<ii", head[18:26])
        size = (width, abs(height))
    if size is not None and 0 in size:
        return f"the header declares a zero width or height ({size[0]}x{size[1]} pixels)"
    reason = f"the {noun} is not an image file PIL can read"
    if noun != "data":
        return reason
    if len(head) <= 4096 and b"\0" not in head and os.path.isfile(os.fsdecode(head)):  # a path given as bytes
        return f"{reason}: these bytes are the name of a file, not its contents; pass the path as str or pathlib.Path"
    return f"{reason} (bytes are taken as an image file's contents; pass a path as str or pathlib.Path)"


def _check_size(width: int, height: int, label: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageLoadError(label, f"the image is too large: {width}x{height} = {width * height:,} pixels, "
                                    f"more than max_pixels={max_pixels:,}")


def _from_pil(image: Image.Image, label: str, noun: str, max_pixels: int) -> np.ndarray:
    """Check the size (from the header, before decoding), decode the first frame and convert it."""
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageLoadError(label, f"the image has zero width or height ({width}x{height} pixels)")
    _check_size(width, height, label, max_pixels)
    try:
        first, frame = image, image.tell()  # (n_frames would scan the whole file)
        if frame:  # decode frame 0, but leave a caller's image on the frame it was on
            image.seek(0)
            try:
                first = image.copy()
            finally:
                image.seek(frame)
        image = ImageOps.exif_transpose(first)  # decoded, and turned as the EXIF tag says
    except Image.DecompressionBombError as error:
        raise ImageLoadError(label, f"the image is too large ({error})") from None
    except _DECODE_ERRORS as error:
        if isinstance(error, EOFError) or "truncated" in str(error).lower():
            raise ImageLoadError(label, f"the {noun} is truncated (image data ends early)") from None
        raise ImageLoadError(label, f"PIL could not decode the image data ({type(error).__name__}: {error})") from None
    mode = image.mode
    if mode == "F":
        return _to_rgb(np.asarray(image), label, pil=True)
    if mode == "I" or mode.startswith("I;16"):
        pixels = values = np.asarray(image)  # I;16: uint16, scaled as 16-bit arrays are
        if mode == "I":  # 32-bit, negative -> 0: as 8-bit (max <= 255), 16-bit (max <= 65535) or scaled by the max
            top = int(values.max())
            pixels = values.clip(0) if top <= 65535 else np.rint(values.clip(0) * (255 / top))
            pixels = pixels.astype(np.uint16 if 255 < top <= 65535 else np.uint8)
        rgb = _to_rgb(pixels, label)
        transparent = image.info.get("transparency")  # one grey value (PNG tRNS), fully transparent
        if isinstance(transparent, int):
            rgb[values == transparent] = 255  # onto white, as every other transparency
        return rgb
    if mode in ("RGBA", "RGBa", "LA", "La", "PA", "P") or "transparency" in image.info:
        # via RGBA (alpha 255 where there is none); premultiplied La converts only to LA
        return _to_rgb(np.asarray((image.convert("LA") if mode == "La" else image).convert("RGBA")), label)
    try:
        return _to_rgb(np.asarray(image.convert("RGB")), label)
    except ValueError:
        raise ImageLoadError(label, f"PIL cannot convert mode {mode!r} to RGB") from None


def _to_rgb(values: np.ndarray, label: str, pil: bool = False) -> np.ndarray:
    """A fresh C-contiguous (H, W, 3) uint8 array from an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)
    one of an accepted dtype: grey -> R = G = B, alpha composited onto white."""
    dtype = values.dtype
    kind = (dtype.kind, dtype.itemsize)  # whatever the byte order
    if kind == ("b", 1):
        values = values.astype(np.uint8) * 255
    elif kind == ("u", 2):  # round(v * 255 / 65535), in integers
        values = (values.astype(np.int64) * 255 + 32767) // 65535
    elif kind in (("f", 2), ("f", 4), ("f", 8)):
        values = _float_to_uint8(values, label, pil)
    elif kind != ("u", 1) and dtype.kind in "iu":
        raise ImageLoadError(label, f"integer arrays of dtype {dtype} are not accepted; convert to uint8 "
                                    "(values 0..255) or uint16 (values 0..65535) first, e.g. "
                                    "array.astype(np.uint8) if the values are already 0..255")
    elif kind != ("u", 1):
        raise ImageLoadError(label, f"dtype {dtype} is not accepted (use uint8, uint16, bool or float in [0, 1])")
    if values.ndim == 2:
        values = values[:, :, np.newaxis]
    if values.shape[2] == 4:  # (colour * alpha + 255 * (255 - alpha)) / 255, rounded
        colour, alpha = values[:, :, :3].astype(np.int32), values[:, :, 3:].astype(np.int32)
        values = (colour * alpha + 255 * (255 - alpha) + 127) // 255
    return np.array(np.broadcast_to(values, (*values.shape[:2], 3)), dtype=np.uint8, order="C")


def _float_to_uint8(values: np.ndarray, label: str, pil: bool) -> np.ndarray:
    """Floats in [0, 1] (up to a rounding error, clipped) -> x 255. Otherwise a PIL mode "F" image in
    [0, 255] is taken as is and anything else stretched min -> 0, max -> 255; an array is refused, with a hint."""
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ImageLoadError(label, f"the {'float image' if pil else 'array'} contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low >= -_ROUNDING_SLACK and high <= 1 + _ROUNDING_SLACK:
        values = values * 255
    elif not pil:
        # 6 significant digits always show the overshoot: it is at least 0.00196
        found = f"values range from {low:g} to {high:g}, but float images must lie within [0, 1]"
        if low >= -0.01 and high <= 1.01:
            hint = "they are slightly outside it: clip them first with np.clip(a, 0, 1)"
        elif low >= 0 and high <= 255:
            hint = "they look like 0..255 values: divide the array by 255 first"
        else:
            hint = "rescale them first, e.g. (a - a.min()) / (a.max() - a.min())"
        raise ImageLoadError(label, f"{found}; {hint}")
    elif (low < 0 or high > 255) and high > low:
        values = (values - low) * (255 / (high - low))
    return np.rint(np.clip(values, 0, 255)).astype(np.uint8)


#: Names accepted by :func:`sample_photo`.
SAMPLE_PHOTOS: tuple[str, ...] = ("cat", "coffee", "cat_and_coffee", "rocket", "astronaut", "motorcycle",
                                  "grace_hopper", "camera")
# where the name of the scikit-image function (skimage.data.<name>) differs
_SKIMAGE_NAMES = {"cat": "chelsea", "motorcycle": "stereo_motorcycle"}

#: One-line credit per sample photo, as scikit-image's documentation gives it.
PHOTO_CREDITS: dict[str, str] = {
    "cat": "Chelsea the cat; photo by Stefan van der Walt, CC0 (scikit-image sample data 'chelsea')",
    "coffee": "Coffee cup, courtesy of Pikolo Espresso Bar; photo by Rachel Michetti, CC0 "
              "(scikit-image sample data 'coffee')",
    "rocket": "Launch of DSCOVR on Falcon 9, photo by SpaceX, released into the public domain "
              "(scikit-image sample data 'rocket')",
    "astronaut": "Astronaut Eileen Collins, from the NASA Great Images database, public domain "
                 "(scikit-image sample data 'astronaut')",
    "camera": "Gray-level 'camera' image; photo by Lav Varshney, CC0 (scikit-image sample data 'camera')",
    "motorcycle": "A motorcycle in a studio, the left view of a stereo pair from the Middlebury 2014 stereo data "
                  "set (Scharstein et al. 2014), CC0 per scikit-image (scikit-image sample data 'stereo_motorcycle')",
    "grace_hopper": "Rear Admiral Grace Hopper, official US Navy portrait (1984), public domain (matplotlib sample "
                    "data 'grace_hopper.jpg')",
    "cat_and_coffee": "Made by the course from 'cat' and 'coffee' (credits above): each photo's central square, "
                      "224 x 224, side by side on a grey canvas",
}


def sample_photo(name: str) -> np.ndarray:
    """One of the sample photos as a fresh (H, W, 3) uint8 RGB array, yours to modify. They ship with scikit-image,
    so no download is needed (names in :data:`SAMPLE_PHOTOS`, credits in :data:`PHOTO_CREDITS`): ``"cat"`` (Chelsea
    the cat, 300 x 451), ``"coffee"`` (a coffee cup, 400 x 600), ``"cat_and_coffee"`` (the two side by side, 448 x
    448: one image with two objects, for class-discriminative maps), ``"rocket"`` (a Falcon 9 launch, 427 x 640),
    ``"astronaut"`` (astronaut Eileen Collins, 512 x 512), ``"motorcycle"`` (500 x 741), ``"grace_hopper"``
    (shipped with matplotlib, 600 x 512) and ``"camera"`` (a grayscale photo, 512 x 512, returned as RGB with
    R = G = B). An unknown name raises ``ValueError`` suggesting the closest one."""
    if not isinstance(name, str):
        raise TypeError(f"the photo name must be a str, got {type(name).__name__}")
    if name not in SAMPLE_PHOTOS:
        # also match scikit-image's own names, so "chelsea" suggests "cat"
        aliases = {key: key for key in SAMPLE_PHOTOS} | {value: key for key, value in _SKIMAGE_NAMES.items()}
        close = difflib.get_close_matches(name.lower(), list(aliases), n=1)
        suggestion = f"; did you mean {aliases[close[0]]!r}?" if close else "."
        raise ValueError(f"unknown sample photo {name!r}{suggestion} Available: {', '.join(SAMPLE_PHOTOS)}")
    return load_image(_skimage_photo(name))


@functools.lru_cache(maxsize=None)
def _skimage_photo(name: str) -> np.ndarray:
    """The raw array from skimage.data, matplotlib's sample data or the two (cached, read-only)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            photo = load_image(f.read())
    elif name == "cat_and_coffee":
        photo = np.full((448, 448, 3), 128, np.uint8)  # grey, so that neither photo's background continues
        for column, part in enumerate(("cat", "coffee")):
            photo[112:336, 224 * column:224 * (column + 1)] = _central_square(_skimage_photo(part), 224)
    else:
        import skimage.data  # imported here: scikit-image is slow to import

        photo = getattr(skimage.data, _SKIMAGE_NAMES.get(name, name))()
        photo = photo[0] if name == "motorcycle" else photo  # (left, right, disparity): the left view
    photo.setflags(write=False)
    return photo


def _central_square(photo: np.ndarray, side: int) -> np.ndarray:
    """The photo's central square, resized to ``side`` x ``side`` (PIL's bicubic: the same on every CPU)."""
    h, w = photo.shape[:2]
    s = min(h, w)
    crop = photo[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((side, side), Image.BICUBIC))
