"""Reading the text off a photo, offline: RapidOCR (PaddleOCR's PP-OCRv4 detection and recognition models,
Chinese and English, shipped inside the `rapidocr-onnxruntime` wheel) on onnxruntime. Nothing is downloaded
and no service is called: the models are files of the installed package.

Rules:
- An image is refused before it is decoded when it is too big: over MAX_BYTES, or over MAX_PIXELS pixels
  (read from its header, so a small file that unpacks to gigabytes — a "decompression bomb" — is never
  unpacked). What is not an image (a PDF, a text file) is refused as such.
- The photo is read upright as the phone meant it (its EXIF orientation), at most WORK_SIDE pixels on its
  long side (a business card's text is readable at that size, and the time to read it stays bounded).
- At most MAX_BOXES text boxes are read (a card has 5–20 lines; a page of text is not a card, and this
  bounds the time).
- The engine is made once per process and kept (loading the models takes about a second).
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

from services.messages import N_, DomainError

MAX_BYTES = 10 * 1024 * 1024  # Telegram lets bots download up to 20 MB; a card photo is well under 1 MB
MAX_PIXELS = 40_000_000  # a 48-megapixel phone photo sent as a file is refused; 12 MP ones pass
WORK_SIDE = 1600
MAX_BOXES = 100


@dataclass(frozen=True)
class TextLine:
    """One line of text found on the image: what it says, where (its four corners, clockwise from the top
    left, in pixels of the working image) and how sure the recogniser is (0–1)."""

    text: str
    box: tuple[tuple[float, float], ...]
    score: float

    @property
    def height(self) -> float:
        """The line's text height: the box's short side (the card may be tilted)."""
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = self.box
        left = ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
        right = ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5
        return (left + right) / 2

    @property
    def top(self) -> float:
        return min(y for _, y in self.box)

    @property
    def left(self) -> float:
        return min(x for x, _ in self.box)


_ENGINES: dict[int, object] = {}
_ENGINE_LOCK = threading.Lock()


def engine(threads: int = 0):
    """This process's OCR engine (made at the first use, then kept). `threads`: onnxruntime's threads per
    model run (0: its own choice, one per core)."""
    with _ENGINE_LOCK:
        if threads not in _ENGINES:
            from rapidocr_onnxruntime import RapidOCR

            _ENGINES[threads] = RapidOCR(intra_op_num_threads=threads or -1, inter_op_num_threads=1,
                                         det_max_candidates=MAX_BOXES)
        return _ENGINES[threads]


def open_image(data: bytes):
    """The image in `data`, upright and at most WORK_SIDE pixels long, as RGB — or a DomainError saying why
    not (the size rules in the module docstring)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > MAX_BYTES:
        raise DomainError(N_("That image is too large ({size} MB); send a photo of up to {limit} MB."),
                          size=round(len(data) / 1024 / 1024, 1), limit=MAX_BYTES // 1024 // 1024)
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: the pixel rule below says it in words
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise DomainError(N_("That image is too large; send an ordinary photo of the card.")) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise DomainError(N_("That file is not a picture I can read. Send a photo (JPEG or PNG) of the "
                             "card.")) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DomainError(N_("That image is too large ({width} × {height} pixels); send an ordinary photo of "
                             "the card."), width=width, height=height)
    if min(width, height) < 32:
        raise DomainError(N_("That image is too small to read; take the photo closer to the card."))
    try:
        image = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise DomainError(N_("That file is not a picture I can read. Send a photo (JPEG or PNG) of the "
                             "card.")) from None
    if max(image.size) > WORK_SIDE:
        image.thumbnail((WORK_SIDE, WORK_SIDE))
    return image


def read_lines(data: bytes, *, threads: int = 0) -> list[TextLine]:
    """The lines of text on the image in `data`, top to bottom (the rules in the module docstring)."""
    image = open_image(data)
    found, _elapsed = engine(threads)(image)
    lines = []
    for box, text, score in found or []:
        text = (text or "").strip()
        if text:
            lines.append(TextLine(text, tuple((float(x), float(y)) for x, y in box), float(score)))
    return lines
