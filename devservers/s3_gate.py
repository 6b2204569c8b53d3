"""A pass-through HTTP proxy in front of the S3 server that holds chosen requests until a test lets them go.

A race test puts a writer's step exactly between a reader's listing and its delete: the proxy
forwards everything at once except requests of the held method (DELETE by default), which wait,
after `arrived` is set, for `release()`. Requests go on with their own headers (Host included),
so signed requests stay valid for moto's server, which does not check signatures anyway.
"""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class S3Gate:
    """`with S3Gate(upstream) as gate:` point a storage at gate.endpoint_url; gate.arrived.wait(); gate.release()."""

    def __init__(self, upstream_url: str, *, hold_method: str = "DELETE"):
        upstream = urlsplit(upstream_url)
        self.upstream_host, self.upstream_port = upstream.hostname or "127.0.0.1", upstream.port or 80
        self.hold_method = hold_method
        self.arrived = threading.Event()
        self._released = threading.Event()
        self.held: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> "S3Gate":
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-gate", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):
                pass

            def _forward(self):
                if self.command == gate.hold_method:
                    gate.held.append(self.path)
                    gate.arrived.set()
                    gate._released.wait(60)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(gate.upstream_host, gate.upstream_port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(name, value)
                    # A HEAD answer's length is the object's, not that of its (empty) body.
                    length = response.getheader("Content-Length") if self.command == "HEAD" else None
                    self.send_header("Content-Length", length or str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
