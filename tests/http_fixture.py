"""A local HTTP server on 127.0.0.1 that misbehaves on purpose (for download tests).

Routes map a URL path to ``(payload, behaviour)``:

- ``ok``: serves the payload, honouring ``Range: bytes=N-`` with 206;
- ``drop``: the first full request sends half the payload, then closes the
  connection; later requests (with Range) are served properly;
- ``404``: always not found;
- ``503once``: the first request gets 503, later ones are served;
- ``norange``: serves the payload but ignores Range (always 200).

Every request is logged as ``(path, range_header, status)``; ``bytes_sent`` counts
payload bytes written.
"""
from __future__ import annotations

import http.server
import socketserver
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        srv = self.server
        rng = self.headers.get("Range")
        route = srv.routes.get(self.path)
        with srv.lock:
            n = srv.hits.get(self.path, 0)
            srv.hits[self.path] = n + 1
        if route is None or route[1] == "404":
            srv.log.append((self.path, rng, 404))
            return self._send(404, b"not found")
        payload, mode = route
        if mode == "503once" and n == 0:
            srv.log.append((self.path, rng, 503))
            return self._send(503, b"busy")
        start = 0
        if rng and mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
        if mode == "drop" and n == 0 and start == 0:
            srv.log.append((self.path, rng, 200))
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            srv.count(len(payload) // 2)
            self.close_connection = True
            return
        if start:
            if start >= len(payload):
                srv.log.append((self.path, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = payload[start:]
            srv.log.append((self.path, rng, 206))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            body = payload
            srv.log.append((self.path, rng, 200))
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)
        srv.count(len(body))

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MisbehavingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Threaded HTTP server with per-path behaviours; use as a context manager."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: dict[str, int] = {}
        self.log: list[tuple[str, str | None, int]] = []
        self.lock = threading.Lock()
        self.bytes_sent = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)  # clients hanging up are expected

    def count(self, n: int) -> None:
        with self.lock:
            self.bytes_sent += n

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def add(self, path: str, payload: bytes, mode: str = "ok") -> str:
        self.routes[path] = (payload, mode)
        return self.url(path)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
