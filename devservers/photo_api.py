"""A local server that speaks the photo API format and serves real JPEG bytes, with latency and faults on demand."""

import argparse
import io
import random
import struct
import threading
from http.server import ThreadingHTTPServer

from PIL import Image

from devservers.photo_api_handler import IMAGE_PATH, LIST_PATH, make_handler
from devservers.pictures import DEMO_WIDTH, picture_jpeg

__all__ = ["IMAGE_PATH", "LIST_PATH", "PhotoApiServer", "bomb_png", "jpeg_bytes"]

# What set_photo_fault accepts (on the image URL) and set_page_fault accepts (on a list page).
PHOTO_FAULTS = {
    "not-image",  # 200 with an HTML body
    "missing",  # 404
    "oversized",  # a body of `size` bytes, announced in Content-Length
    "oversized-chunked",  # the same body, chunked: no Content-Length
    "bomb",  # a small PNG of `width` x `height` pixels (default 12000 x 12000)
    "redirect",  # 302 to the same image on this server
    "redirect-to",  # 302 to `location`
    "server-error",  # `status` for the first `times` requests, then the image
}
PAGE_FAULTS = {
    "server-error",  # `status` for the next `times` requests of this page
    "garbage",  # 200 with a body that is not JSON
    "missing-fields",  # JSON without "photos"
}


def jpeg_bytes(*, target_size: int, seed: int = 0) -> bytes:
    """A real JPEG of about target_size bytes (noise compresses poorly, so the size is predictable)."""
    rng = random.Random(seed)
    side = max(8, int((target_size / 2.0) ** 0.5))
    for _ in range(4):
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        if 0.8 * target_size <= len(data) <= target_size:
            break
        side = max(8, int(side * (0.92 * target_size / len(data)) ** 0.5))
    return _with_comment(data, b"x" * max(0, target_size - len(data) - 4 * (1 + target_size // 65000)))


def _with_comment(jpeg: bytes, comment: bytes) -> bytes:
    """The JPEG with COM segments inserted after SOI: same pixels, different bytes."""
    segments = []
    for start in range(0, len(comment), 65000):
        chunk = comment[start : start + 65000]
        segments.append(b"\xff\xfe" + struct.pack(">H", len(chunk) + 2) + chunk)
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def bomb_png(*, width: int = 12_000, height: int = 12_000) -> bytes:
    """A valid PNG of a few KB that decodes to width x height pixels."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many concurrent downloads connect at once; the default backlog of 5 would drop some.
    request_queue_size = 128


class PhotoApiServer:
    """The photo API on 127.0.0.1 in a thread; every knob can be changed while it runs."""

    def __init__(
        self,
        *,
        photos: int = 30,
        image_size: int = 20_000,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        photo_host: str | None = None,
        picture_width: int | None = None,
    ):
        """picture_width: drawn pictures that width (devservers.pictures); None: noise of image_size bytes."""
        # The ids the list endpoint pages through, in order; edit it for duplicates or a shrinking list.
        self.listing: list[int] = list(range(1, photos + 1))
        self.latency = latency
        self.photo_host = photo_host
        self.picture_width = picture_width
        # Fields replaced (or set to None) in a photo's JSON, by photo id.
        self.photo_overrides: dict[int, dict] = {}
        # When true, total_photos changes from one call to the next (as the real API's may).
        self.drifting_total = False
        self._image = jpeg_bytes(target_size=image_size)
        self._bombs: dict[tuple[int, int], bytes] = {}
        self._photo_faults: dict[int, dict] = {}
        self._page_faults: dict[int, dict] = {}
        self._lock = threading.Lock()
        self._log: list[str] = []
        self._httpd = _HTTPServer((host, port), make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.photo_host or self._httpd.server_address[0]}:{self.port}"

    @property
    def url(self) -> str:
        """The list endpoint, as IMAGE_API_URL expects it."""
        return self.base_url + LIST_PATH

    def image_url(self, photo_id: int) -> str:
        return f"{self.base_url}{IMAGE_PATH}{photo_id}.jpeg"

    def image_bytes(self, photo_id: int) -> bytes:
        """The exact bytes served for a photo: its drawn picture, or one shared noise picture with a per-photo comment."""
        if self.picture_width:
            return picture_jpeg(photo_id, width=self.picture_width)
        return _with_comment(self._image, f"photo {photo_id}".encode())

    def set_photo_fault(self, photo_id: int, kind: str, **params) -> None:
        if kind not in PHOTO_FAULTS:
            raise ValueError(f"unknown photo fault {kind!r}; expected one of {sorted(PHOTO_FAULTS)}")
        with self._lock:
            self._photo_faults[photo_id] = {"kind": kind, **params}

    def clear_photo_fault(self, photo_id: int) -> None:
        with self._lock:
            self._photo_faults.pop(photo_id, None)

    def set_page_fault(self, offset: int, kind: str, times: int | None = None, **params) -> None:
        """Break the list page starting at offset, for `times` requests (None: until cleared)."""
        if kind not in PAGE_FAULTS:
            raise ValueError(f"unknown page fault {kind!r}; expected one of {sorted(PAGE_FAULTS)}")
        with self._lock:
            self._page_faults[offset] = {"kind": kind, "times": times, **params}

    def clear_page_fault(self, offset: int) -> None:
        with self._lock:
            self._page_faults.pop(offset, None)

    def requests(self, prefix: str = "") -> list[str]:
        """Paths requested so far (with query strings), optionally only those starting with prefix."""
        with self._lock:
            return [path for path in self._log if path.startswith(prefix)]

    def image_requests(self) -> list[str]:
        return self.requests(IMAGE_PATH)

    def page_requests(self) -> list[str]:
        return self.requests(LIST_PATH + "?")

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    def start(self) -> "PhotoApiServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="photo-api", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "PhotoApiServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # Internals used by the handler.

    def _record(self, path: str) -> None:
        with self._lock:
            self._log.append(path)

    def _take_page_fault(self, offset: int) -> dict | None:
        with self._lock:
            fault = self._page_faults.get(offset)
            if fault is None:
                return None
            if fault["times"] is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    del self._page_faults[offset]
            return dict(fault)

    def _take_photo_fault(self, photo_id: int) -> dict | None:
        with self._lock:
            fault = self._photo_faults.get(photo_id)
            if fault is None:
                return None
            if fault["kind"] == "server-error":
                remaining = fault.get("times", 1)
                if remaining <= 0:
                    return None
                fault["times"] = remaining - 1
            return dict(fault)

    def _photo_json(self, photo_id: int) -> dict:
        photo = {
            "id": photo_id,
            "url": self.image_url(photo_id),
            "title": f"Photo number {photo_id}",
            "description": f"A generated test photo, number {photo_id}.",
            "user": photo_id % 40 + 1,
        }
        photo.update(self.photo_overrides.get(photo_id, {}))
        return photo

    def _bomb_bytes(self, width: int, height: int) -> bytes:
        with self._lock:
            if (width, height) not in self._bombs:
                self._bombs[width, height] = bomb_png(width=width, height=height)
            return self._bombs[width, height]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Serve the photo API format on loopback, with real JPEG bytes.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port (default 8001)")
    parser.add_argument("--photos", type=int, default=132, help="how many photos the API lists (default 132)")
    parser.add_argument(
        "--picture-width",
        type=int,
        default=DEMO_WIDTH,
        help=f"width of the drawn pictures (default {DEMO_WIDTH} px, 1-2 MB each); 0: noise of --image-size bytes",
    )
    parser.add_argument("--image-size", type=int, default=100_000, help="bytes per noise JPEG (default about 100 KB)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument(
        "--photo-host", help="host name in the photos' URLs (default: --host), e.g. a compose service name"
    )
    args = parser.parse_args(argv)
    server = PhotoApiServer(
        photos=args.photos,
        image_size=args.image_size,
        latency=args.latency,
        host=args.host,
        port=args.port,
        picture_width=args.picture_width or None,
        photo_host=args.photo_host,
    )
    print(f"Photo API on {server.url} ({args.photos} photos); Ctrl-C to stop", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()


if __name__ == "__main__":
    main()
