"""Streaming sha256: a file or a response body hashed a chunk at a time, whatever its size."""

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO

READ_CHUNK_BYTES = 256 * 1024


def chunks_of(stream: IO[bytes], *, size: int = READ_CHUNK_BYTES) -> Iterator[bytes]:
    """The stream's bytes, `size` at a time, until it ends."""
    return iter(lambda: stream.read(size), b"")


def sha256_of(chunks: Iterable[bytes], *, sink: Callable[[bytes], object] | None = None) -> tuple[str, int]:
    """(hex sha256, byte count) of the chunks; each chunk also goes to sink (a file's write) when given."""
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink(chunk)
    return digest.hexdigest(), size
