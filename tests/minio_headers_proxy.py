"""A loopback HTTP proxy in front of moto's S3 server that adds the headers MinIO sends on every answer.

moto answers like S3 but without MinIO's server-wide headers (HSTS, its CSP, rate-limit counters…);
the stack tests put this in front of it so nginx sees what it would see from MinIO.
"""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devservers.s3 import free_port

# As MinIO RELEASE.2025-10-15 answers a GET of an object (the x-amz-meta-* come from the object).
MINIO_HEADERS = {
    "Server": "MinIO",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "block-all-mixed-content",
    "X-Content-Type-Options": "nosniff",
    "X-Xss-Protection": "1; mode=block",
    "Vary": "Origin, Accept-Encoding",
    "X-Amz-Id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
    "X-Ratelimit-Limit": "1024",
    "X-Ratelimit-Remaining": "1024",
    "Accept-Ranges": "bytes",
}
_REPLACED = {name.lower() for name in MINIO_HEADERS} | {"content-length", "date"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class MinioHeadersProxy:
    """Forwards every request to upstream (host:port) unchanged, Host included; a context manager."""

    def __init__(self, *, upstream: str, host: str = "127.0.0.1"):
        self.upstream = upstream
        self.host = host
        self.port = free_port(host)
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "MinioHeadersProxy":
        upstream_host, upstream_port = self.upstream.rsplit(":", 1)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                connection = http.client.HTTPConnection(upstream_host, int(upstream_port), timeout=30)
                try:
                    headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_BY_HOP | _REPLACED:
                            self.send_header(name, value)
                    for name, value in MINIO_HEADERS.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    connection.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward

            def send_response(self, code, message=None):
                # No Server/Date of http.server's own: MINIO_HEADERS names the server.
                self.send_response_only(code, message)

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "MinioHeadersProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
