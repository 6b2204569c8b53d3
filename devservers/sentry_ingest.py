"""A stand-in for Sentry's ingest endpoint on loopback: accepts envelopes and keeps what they carry."""

import argparse
import gzip
import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import brotli
except ImportError:  # The SDK only sends br when brotli is installed; gzip otherwise.
    brotli = None

PROJECT_PATH = re.compile(r"^/api/(?P<project>\d+)/(?P<endpoint>envelope|store)/?$")


class EnvelopeError(ValueError):
    """The body is not a well-formed Sentry envelope."""


@dataclass
class Item:
    """One envelope item: its type, its headers and its payload (parsed when it is JSON)."""

    type: str
    headers: dict
    payload: object
    envelope_headers: dict = field(default_factory=dict)
    project: str = ""


def decode_body(body: bytes, content_encoding: str) -> bytes:
    """Undo the Content-Encoding the SDK applied."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br" and brotli is not None:
        return brotli.decompress(body)
    raise EnvelopeError(f"unsupported Content-Encoding {encoding!r}")


def parse_envelope(raw: bytes) -> tuple[dict, list[Item]]:
    """Split an envelope into its header and items (length-prefixed or newline-terminated payloads)."""
    header_line, _, rest = raw.partition(b"\n")
    try:
        envelope_headers = json.loads(header_line or b"{}")
    except json.JSONDecodeError as error:
        raise EnvelopeError(f"bad envelope header: {error}") from error
    items = []
    while rest.strip():
        item_header_line, _, rest = rest.partition(b"\n")
        if not item_header_line.strip():
            continue
        try:
            item_headers = json.loads(item_header_line)
        except json.JSONDecodeError as error:
            raise EnvelopeError(f"bad item header: {error}") from error
        length = item_headers.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            if len(rest) < length:
                raise EnvelopeError("item shorter than its declared length")
            payload, rest = rest[:length], rest[length:]
            # A newline may separate the payload from the next item header.
            if rest.startswith(b"\n"):
                rest = rest[1:]
        items.append(
            Item(
                type=item_headers.get("type", ""),
                headers=item_headers,
                payload=_maybe_json(payload, item_headers),
                envelope_headers=envelope_headers,
            )
        )
    return envelope_headers, items


def _maybe_json(payload: bytes, item_headers: dict):
    if item_headers.get("type") == "attachment" and item_headers.get("content_type") != "application/json":
        return payload
    try:
        return json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return payload


class SentryIngestServer:
    """Records every item it receives; .events, .transactions and .check_ins filter them."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, public_key: str = "public", project: str = "1"):
        self.public_key = public_key
        self.project = project
        self.items: list[Item] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host_port(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    @property
    def dsn(self) -> str:
        return f"http://{self.public_key}@{self.host_port}/{self.project}"

    def start(self) -> "SentryIngestServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="sentry-ingest", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "SentryIngestServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def clear(self) -> None:
        with self._lock:
            self.items.clear()
            self.rejected.clear()

    def of_type(self, item_type: str) -> list:
        with self._lock:
            return [item.payload for item in self.items if item.type == item_type]

    @property
    def events(self) -> list[dict]:
        return self.of_type("event")

    @property
    def transactions(self) -> list[dict]:
        return self.of_type("transaction")

    @property
    def check_ins(self) -> list[dict]:
        return self.of_type("check_in")

    def wait_for(self, predicate, *, timeout: float = 10.0) -> bool:
        """Block until predicate(self) is true (re-checked on every arrival) or the timeout passes."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changed:
                self._changed.wait(timeout=min(remaining, 0.2))
        return True

    def _record(self, items: list[Item]) -> None:
        with self._changed:
            self.items.extend(items)
            self._changed.notify_all()

    def _reject(self, reason: str) -> None:
        with self._lock:
            self.rejected.append(reason)

    def _handler_class(self):
        ingest = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                match = PROJECT_PATH.match(self.path.split("?", 1)[0])
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not match:
                    return self._answer(404, {"detail": "not an ingest path"})
                if ingest.public_key not in (self.headers.get("X-Sentry-Auth", "") + self.path):
                    ingest._reject("missing or wrong sentry_key")
                    return self._answer(401, {"detail": "bad sentry_key"})
                try:
                    raw = decode_body(body, self.headers.get("Content-Encoding", ""))
                    if match["endpoint"] == "store":
                        event = json.loads(raw)
                        items = [Item(type="event", headers={"type": "event"}, payload=event)]
                    else:
                        _headers, items = parse_envelope(raw)
                except (EnvelopeError, OSError, zlib.error, json.JSONDecodeError) as error:
                    ingest._reject(str(error))
                    return self._answer(400, {"detail": str(error)})
                for item in items:
                    item.project = match["project"]
                ingest._record(items)
                event_id = next((item.envelope_headers.get("event_id") for item in items), None)
                return self._answer(200, {"id": event_id})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):
                """Quiet: the recorded items are what tests look at."""

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Print what a Sentry SDK sends to this address.")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args()
    with SentryIngestServer(host=options.host, port=options.port) as ingest:
        print(f"SENTRY_DSN={ingest.dsn}", flush=True)
        seen = 0
        try:
            while True:
                ingest.wait_for(lambda server, seen=seen: len(server.items) > seen, timeout=1.0)
                with ingest._lock:
                    fresh = ingest.items[seen:]
                seen += len(fresh)
                for item in fresh:
                    print(json.dumps({"type": item.type, "payload": item.payload}, default=repr), flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
