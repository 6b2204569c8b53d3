"""A server that answers every request by sending one byte at a time, slowly: the peer no read timeout catches.

`/body/…` sends its status line and headers at once (Content-Length and all) and then the body a
byte every `interval` seconds; `/headers/…` trickles the status line and headers themselves. Each
byte is sent well within any read timeout, so only a wall-clock deadline ends the request.
"""

import argparse
import socket
import socketserver
import threading
import time

from devservers.photo_api import jpeg_bytes


class TrickleServer:
    """ThreadingTCPServer on loopback; `with TrickleServer() as server: server.url("body/1")`."""

    def __init__(self, *, port: int = 0, interval: float = 0.5, body: bytes | None = None):
        self.interval = interval
        self.body = body if body is not None else jpeg_bytes(target_size=4000)
        self.requests = 0
        self.open_connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", port), self._handler(), bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> "TrickleServer":
        self._thread = threading.Thread(target=self._server.serve_forever, name="trickle-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "TrickleServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _handler(self):
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with server._lock:
                    server.requests += 1
                    server.open_connections += 1
                try:
                    self._serve()
                except OSError:
                    pass  # the client hung up: what a deadline does
                finally:
                    with server._lock:
                        server.open_connections -= 1

            def _serve(self) -> None:
                sock: socket.socket = self.request
                request = b""
                while b"\r\n\r\n" not in request:
                    data = sock.recv(4096)
                    if not data:
                        return
                    request += data
                path = request.split(b" ", 2)[1].decode()
                body = server.body
                content_type = b"application/json" if path.startswith("/body/json") else b"image/jpeg"
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type + b"\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
                )
                if path.startswith("/headers/"):
                    self._trickle(sock, head + body)
                else:
                    sock.sendall(head)
                    self._trickle(sock, body)

            def _trickle(self, sock: socket.socket, data: bytes) -> None:
                for index in range(len(data)):
                    if server._stopping.wait(server.interval):
                        return
                    sock.sendall(data[index : index + 1])

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--interval", type=float, default=0.5)
    options = parser.parse_args()
    with TrickleServer(port=options.port, interval=options.interval) as server:
        print(f"trickling on {server.url('body/1')} and {server.url('headers/1')}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
