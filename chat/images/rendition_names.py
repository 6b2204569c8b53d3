"""Names of renditions, in the bucket and in URLs: both named by the rendition's sha256 (no libvips here)."""

import re

# Beside the originals (images/), not under them: verify_images lists images/ for orphans.
RENDITION_KEY_PREFIX = "renditions/"
RENDITION_FILE_NAME = re.compile(r"^([0-9a-f]{64})\.webp$")


def rendition_key(sha256: str) -> str:
    """The object key of a rendition: named by its bytes, so a key never holds two different contents."""
    return f"{RENDITION_KEY_PREFIX}{sha256[:2]}/{sha256}.webp"


def rendition_sha256_from_name(file_name: str) -> str | None:
    """The sha256 a rendition's URL names ("<sha256>.webp"), or None for any other name."""
    match = RENDITION_FILE_NAME.match(file_name)
    return match.group(1) if match else None
