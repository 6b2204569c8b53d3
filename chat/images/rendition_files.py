"""Renditions as bytes: smaller WebP copies of one untrusted image made by libvips, and their content-addressed keys.

libvips may open only the formats the download accepts (chat/images/download.py ALLOWED_FORMATS):
every other loader (SVG, PDF, TIFF, HEIF, UltraHDR, CSV, matrix, raw, vips...) is blocked for the
whole process, so bytes that pretend to be a JPEG never reach a parser we did not choose.
"""

import hashlib
from dataclasses import dataclass
from typing import IO

import pyvips

from chat.images.rendition_names import rendition_key

# Widths a browser picks from (srcset); an image narrower than one gets it at its own width, never upscaled.
RENDITION_WIDTHS = (320, 640, 1280)
RENDITION_CONTENT_TYPE = "image/webp"
WEBP_QUALITY = 80
# libwebp's effort 2 of 6: 55 % of the whole rendition CPU at the default's (4) for 3 % more bytes
# on the demo's pictures (bench/renditions_cpu prints both).
WEBP_EFFORT = 2
# thumbnail() sizes to fit a width x height box and takes height = width when none is given;
# a very large height makes the width alone decide.
_UNBOUNDED_HEIGHT = 10_000_000
# The libvips loader classes of the formats the service keeps: JPEG, PNG, WebP and GIF.
ALLOWED_LOADERS = ("VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp", "VipsForeignLoadNsgif")


class RenditionFailed(Exception):
    """The renditions of an image could not be made or stored; the message is the reason recorded."""


@dataclass(frozen=True)
class RenditionBytes:
    width: int
    height: int
    data: bytes
    sha256: str

    @property
    def key(self) -> str:
        return rendition_key(self.sha256)


def libvips_restrict_loaders() -> None:
    """Block every libvips loader but ALLOWED_LOADERS, and every operation libvips marks untrusted (idempotent)."""
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)
    # UltraHDR is a JPEG subclass libvips would prefer for JPEGs with a gain map: not ours.
    pyvips.operation_block_set("VipsForeignLoadUhdr", True)


libvips_restrict_loaders()
# libvips keeps recent operations (and the buffers they read) for reuse; a worker never asks for
# the same thumbnail twice, so the cache would only hold originals of up to 20 MB in memory.
pyvips.cache_set_max(0)


def rendition_widths(original_width: int) -> list[int]:
    """The widths to make for an original this wide: RENDITION_WIDTHS, none wider than the original."""
    return sorted({min(width, original_width) for width in RENDITION_WIDTHS})


def renditions_from_file(file: IO[bytes], *, max_pixels: int) -> list[RenditionBytes]:
    """WebP renditions of the image in file (read from its start); RenditionFailed with the reason otherwise."""
    file.seek(0)
    # Whole, as libvips reads buffers safely across its threads; at most IMAGE_FETCH_MAX_BYTES.
    return renditions_from_bytes(file.read(), max_pixels=max_pixels)


def renditions_from_bytes(data: bytes, *, max_pixels: int) -> list[RenditionBytes]:
    """WebP renditions of an encoded image, narrowest first; RenditionFailed with the reason otherwise.

    The header is read first (no pixels) to refuse too many pixels. The largest rendition is made
    with shrink-on-load (a JPEG decodes at 1/2, 1/4 or 1/8 of its size when that suffices), the
    smaller ones from it in memory: one decode per image.
    """
    try:
        header = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
        width, height = header.width, header.height
        if width * height > max_pixels:
            raise RenditionFailed(f"{width}x{height} = {width * height} pixels exceeds {max_pixels}")
        widths = rendition_widths(width)
        largest = pyvips.Image.thumbnail_buffer(
            data, widths[-1], height=_UNBOUNDED_HEIGHT, size="down", option_string="fail_on=error"
        ).copy_memory()
        made = []
        for target in widths:
            image = largest if target == largest.width else largest.thumbnail_image(target, height=_UNBOUNDED_HEIGHT)
            # keep="none": no EXIF (a phone's GPS position), XMP or ICC profile in what browsers download.
            encoded = image.webpsave_buffer(Q=WEBP_QUALITY, effort=WEBP_EFFORT, keep="none")
            made.append(
                RenditionBytes(
                    width=image.width, height=image.height, data=encoded, sha256=hashlib.sha256(encoded).hexdigest()
                )
            )
    except pyvips.Error as error:
        raise RenditionFailed(f"libvips: {_first_line(error)}") from error
    return made


def _first_line(error: pyvips.Error) -> str:
    text = f"{error.message} {error.detail or ''}".strip()
    return " ".join(text.split())[:500]
