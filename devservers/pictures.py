"""Recognisable demo pictures: a gradient, a few shapes and the photo's number drawn large, the same for an id every time.

A fine grain over the drawing gives the JPEG what a camera's photo has (detail that costs
bytes), so a 2,400 px picture weighs 1-3 MB as a real one would, and a broken one is easy to
tell from a good one. Drawing and encoding one costs about half a second of CPU: each is kept
in memory and in a cache folder (DEMO_PICTURE_CACHE, default ~/.cache/pru_app/pictures), and
tests ask for small ones.
"""

import hashlib
import io
import os
import random
import threading
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

# Bump when the drawing changes: cached files of an older drawing are never served.
DRAWING_VERSION = 2
DEMO_WIDTH = 2400
# How much grain is blended in: what makes a 2,400 px JPEG weigh 1-2 MB.
GRAIN = 0.08
_memory: dict[tuple[int, int, int], bytes] = {}
_memory_lock = threading.Lock()
_MEMORY_LIMIT = 64


def picture_jpeg(photo_id: int, *, width: int = DEMO_WIDTH, quality: int = 93) -> bytes:
    """The JPEG of a photo's picture, width x (width * 2 / 3) pixels; deterministic per (id, width, quality)."""
    key = (photo_id, width, quality)
    with _memory_lock:
        cached = _memory.get(key)
    if cached is not None:
        return cached
    path = _cache_path(photo_id, width=width, quality=quality)
    data = _read(path)
    if data is None:
        data = draw_picture(photo_id, width=width, quality=quality)
        _write(path, data)
    with _memory_lock:
        if len(_memory) >= _MEMORY_LIMIT:
            _memory.pop(next(iter(_memory)))
        _memory[key] = data
    return data


def draw_picture(photo_id: int, *, width: int = DEMO_WIDTH, quality: int = 93) -> bytes:
    """Draw and encode a photo's picture (no cache)."""
    height = max(1, width * 2 // 3)
    rng = random.Random(photo_id)
    top, bottom = _colour(rng), _colour(rng)
    # A vertical gradient from two colours chosen by the id.
    column = Image.linear_gradient("L").resize((1, height))
    picture = Image.composite(Image.new("RGB", (1, height), bottom), Image.new("RGB", (1, height), top), column)
    picture = picture.resize((width, height))
    draw = ImageDraw.Draw(picture)
    for _ in range(6):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(max(2, width // 20), max(3, width // 5))
        box = (x - radius, y - radius, x + radius, y + radius)
        colour = _colour(rng)
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "ellipse":
            draw.ellipse(box, fill=colour)
        elif shape == "rectangle":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], fill=colour)
    _draw_number(draw, str(photo_id), width=width, height=height)
    if width >= 200:
        # Grain (as a camera sensor's): the bytes a real photo of this size has.
        # From the id's own generator (effect_noise would use C's unseeded rand()): the same bytes every time.
        grain = Image.frombytes("L", (width, height), rng.randbytes(width * height)).convert("RGB")
        picture = Image.blend(picture, grain, GRAIN)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _draw_number(draw: ImageDraw.ImageDraw, text: str, *, width: int, height: int) -> None:
    size = max(8, int(height * 0.45))
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (width - (right - left)) // 2 - left
    y = (height - (bottom - top)) // 2 - top
    outline = max(1, size // 25)
    draw.text((x, y), text, font=font, fill="white", stroke_width=outline, stroke_fill="black")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _cache_path(photo_id: int, *, width: int, quality: int) -> Path:
    root = os.environ.get("DEMO_PICTURE_CACHE") or os.path.join(Path.home(), ".cache", "pru_app", "pictures")
    return Path(root) / f"v{DRAWING_VERSION}-{photo_id}-{width}-q{quality}.jpg"


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    # A file cut short by a crash (or changed by hand) is drawn again, not served.
    checksum_path = path.with_suffix(".sha256")
    try:
        expected = checksum_path.read_text().strip()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == expected else None


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        path.with_suffix(".sha256").write_text(hashlib.sha256(data).hexdigest())
    except OSError:
        pass  # a read-only home: the picture is drawn again next time, nothing else changes
