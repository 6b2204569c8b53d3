"""HTTP handling of the local photo API (devservers.photo_api): the list, one photo, the image bytes and faults."""

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

LIST_PATH = "/v1/sample-data/photos"
IMAGE_PATH = "/public/sample-photos/"
_PHOTO_PATH = re.compile(r"^/v1/sample-data/photos/(\d+)$")
_IMAGE_PATH = re.compile(r"^/public/sample-photos/(\d+)\.jpeg$")


def make_handler(server):
    """The request handler class bound to one PhotoApiServer."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real API would offer

        def log_message(self, format, *args):
            pass  # quiet: tests read server.requests() instead

        def do_GET(self):
            server._record(self.path)
            if server.latency:
                time.sleep(server.latency)
            parts = urlsplit(self.path)
            if parts.path == LIST_PATH:
                return self._list_page(parse_qs(parts.query))
            if match := _PHOTO_PATH.match(parts.path):
                return self._one_photo(int(match.group(1)))
            if match := _IMAGE_PATH.match(parts.path):
                return self._image(int(match.group(1)), redirected="redirected" in parts.query)
            return self._send(404, b'{"success": false, "message": "Not found"}', "application/json")

        def _list_page(self, query):
            try:
                offset = int(query.get("offset", ["0"])[0])
                limit = int(query.get("limit", ["10"])[0])
            except ValueError:
                return self._send(400, b'{"success": false, "message": "Bad offset or limit"}', "application/json")
            fault = server._take_page_fault(offset)
            if fault and fault["kind"] == "server-error":
                return self._send(fault.get("status", 503), b"<html>upstream trouble</html>", "text/html")
            if fault and fault["kind"] == "garbage":
                return self._send(200, b"<html><body>Gateway says hi</body></html>", "application/json")
            listing = list(server.listing)
            total = len(listing)
            if server.drifting_total:
                total += len(server.page_requests()) % 3
            body = {"success": True, "message": "Photos fetched successfully", "offset": offset, "limit": limit}
            body["total_photos"] = total
            if not (fault and fault["kind"] == "missing-fields"):
                body["photos"] = [server._photo_json(photo_id) for photo_id in listing[offset : offset + limit]]
            return self._send(200, json.dumps(body).encode(), "application/json")

        def _one_photo(self, photo_id):
            if photo_id not in server.listing:
                return self._send(404, b'{"success": false, "message": "Photo not found"}', "application/json")
            body = {"success": True, "message": "Photo fetched successfully", "photo": server._photo_json(photo_id)}
            return self._send(200, json.dumps(body).encode(), "application/json")

        def _image(self, photo_id, *, redirected):
            fault = None if redirected else server._take_photo_fault(photo_id)
            kind = fault["kind"] if fault else None
            if kind == "missing" or (kind is None and photo_id not in server.listing and not redirected):
                return self._send(404, b"<html>Not found</html>", "text/html")
            if kind == "not-image":
                return self._send(200, b"<html><body>Sorry, this is a web page</body></html>", "image/jpeg")
            if kind == "server-error":
                return self._send(fault.get("status", 503), b"<html>try again</html>", "text/html")
            if kind == "bomb":
                return self._send(
                    200, server._bomb_bytes(fault.get("width", 12_000), fault.get("height", 12_000)), "image/png"
                )
            if kind == "redirect":
                return self._redirect(f"{server.image_url(photo_id)}?redirected=1")
            if kind == "redirect-to":
                return self._redirect(fault["location"])
            if kind in ("oversized", "oversized-chunked"):
                return self._oversized(fault.get("size", 25 * 1024 * 1024), chunked=kind == "oversized-chunked")
            return self._send(200, server.image_bytes(photo_id), "image/jpeg")

        def _redirect(self, location):
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _oversized(self, size, *, chunked):
            block = server.image_bytes(0)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = 0
            try:
                while sent < size:
                    piece = block[: min(len(block), size - sent)]
                    if chunked:
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    else:
                        self.wfile.write(piece)
                    sent += len(piece)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up early, which is what a size limit should do
            self.close_connection = True

        def _send(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler
