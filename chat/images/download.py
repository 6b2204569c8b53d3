"""Downloading one untrusted image: size limits while streaming, then Pillow decides what it is."""

import hashlib
import tempfile
import warnings
from dataclasses import dataclass
from typing import IO

import requests
from PIL import Image, UnidentifiedImageError

from core.deadlines import DeadlineExceeded, DeadlineScope, deadline_scope
from core.outbound_http import AddressRefused, UnsafeURL, check_url

# Pillow format name -> (content type, file extension) of the formats we keep.
ALLOWED_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "GIF": ("image/gif", "gif"),
}
CHUNK_SIZE = 64 * 1024
# Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it an error, as above it.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
# Downloads stay in memory up to this size and spill to a temporary file beyond it.
SPOOL_IN_MEMORY_BYTES = 1024 * 1024


class ImageDownloadError(Exception):
    """A photo could not be kept; the message is the reason recorded on its row."""


class DownloadFailed(ImageDownloadError):
    """The bytes could not be fetched (network, HTTP status, refused address)."""


class ImageRejected(ImageDownloadError):
    """The bytes were fetched but are not an image we keep."""


class ImageTooLarge(ImageRejected):
    """More bytes than IMAGE_FETCH_MAX_BYTES."""


class DecompressionBomb(ImageRejected):
    """More pixels than IMAGE_FETCH_MAX_PIXELS."""


@dataclass
class DownloadedImage:
    """A validated image held in a spooled file (memory when small, disk when large)."""

    file: IO[bytes]
    byte_size: int
    sha256: str
    content_type: str
    extension: str
    width: int
    height: int

    def close(self) -> None:
        self.file.close()


def image_download(
    *, session: requests.Session, url: str, max_bytes: int, max_pixels: int, deadline_seconds: float = 120.0
) -> DownloadedImage:
    """Fetch url into a spooled file and validate it; ImageDownloadError with the reason otherwise."""
    try:
        check_url(url)
    except UnsafeURL as error:
        raise DownloadFailed(str(error)) from error
    # Handed to the caller open (DownloadedImage.close()); closed here only on failure.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    try:
        byte_size, digest = _stream_into(
            spool, session=session, url=url, max_bytes=max_bytes, deadline_seconds=deadline_seconds
        )
        spool.seek(0)
        details = image_validate(spool, max_pixels=max_pixels)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return DownloadedImage(file=spool, byte_size=byte_size, sha256=digest, **details)


def _stream_into(spool, *, session, url, max_bytes, deadline_seconds) -> tuple[int, str]:
    # The deadline bounds the whole download, headers included, whether bytes keep arriving or not:
    # at it the watchdog of core.deadlines shuts the connection down under a blocked read.
    with deadline_scope(deadline_seconds, what="download") as deadline:
        try:
            return _read_body(spool, session=session, url=url, max_bytes=max_bytes, deadline=deadline)
        except DeadlineExceeded as error:
            raise DownloadFailed(str(error)) from error


def _read_body(spool, *, session, url, max_bytes, deadline: DeadlineScope) -> tuple[int, str]:
    try:
        # identity: a compressed body would make Content-Length say nothing about what we read.
        response = session.get(url, stream=True, headers={"Accept-Encoding": "identity", "Accept": "image/*"})
    except AddressRefused as error:
        raise DownloadFailed(f"refused: {error} is a private, loopback or reserved address") from error
    except requests.TooManyRedirects as error:
        raise DownloadFailed("too many redirects") from error
    except requests.RequestException as error:
        deadline.check()
        raise DownloadFailed(f"{type(error).__name__}: {error}") from error
    with response:
        if response.status_code != 200:
            raise DownloadFailed(f"HTTP {response.status_code}")
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            raise ImageTooLarge(f"too large: Content-Length {declared} exceeds {max_bytes} bytes")
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > max_bytes:
                    raise ImageTooLarge(f"too large: more than {max_bytes} bytes")
                deadline.check()
                digest.update(chunk)
                spool.write(chunk)
        except requests.RequestException as error:
            deadline.check()
            raise DownloadFailed(f"{type(error).__name__} while reading: {error}") from error
        # A body cut short by the watchdog can end "cleanly" when the server sent no length.
        if deadline.fired:
            raise deadline.error()
    if size == 0:
        raise ImageRejected("empty body")
    return size, digest.hexdigest()


def image_validate(file: IO[bytes], *, max_pixels: int) -> dict:
    """Content type, extension and size of an allowed image; ImageRejected otherwise.

    verify() checks the file's structure without decoding the pixels: decoding a 100 KB
    JPEG costs more CPU than its download and upload together, and browsers draw what
    a truncated file holds anyway.
    """
    # Pillow raises a zoo of types on hostile input (OSError, SyntaxError, ValueError,
    # struct.error, ...); any of them means "not an image we keep".
    pillow_format: str | None = "image"
    try:
        # Only our formats' parsers ever see the bytes: less attack surface than all of Pillow's.
        with Image.open(file, formats=tuple(ALLOWED_FORMATS)) as image:
            pillow_format = image.format
            if pillow_format not in ALLOWED_FORMATS:
                raise ImageRejected(f"format {pillow_format} is not allowed (JPEG, PNG, WebP, GIF)")
            width, height = image.size
            if width * height > max_pixels:
                raise DecompressionBomb(
                    f"decompression bomb: {width}x{height} = {width * height} pixels exceeds {max_pixels}"
                )
            image.verify()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DecompressionBomb(f"decompression bomb: {error}") from error
    except UnidentifiedImageError as error:
        raise ImageRejected("not an image (Pillow cannot identify it)") from error
    except Exception as error:
        raise ImageRejected(f"corrupt {pillow_format}: {error}") from error
    content_type, extension = ALLOWED_FORMATS[pillow_format]
    return {"content_type": content_type, "extension": extension, "width": width, "height": height}
