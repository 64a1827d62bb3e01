"""Real HTTP servers on 127.0.0.1 for health-check tests.

Paths: ``/ok`` 200, ``/error`` 500, ``/slow`` answers 200 after ``slow_s``;
anything else 404. ``/health`` is ``/ok``. Nagle is off: with keep-alive the
standard server otherwise stalls on delayed ACKs (docs/architecture.md, measured traps).
"""
import functools
import http.server
import json
import socket
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server API)
        self.server.hits.append(self.path)
        if self.path in ("/ok", "/health"):
            code, body = 200, {"status": "ok"}
        elif self.path == "/error":
            code, body = 500, {"status": "error"}
        elif self.path == "/slow":
            time.sleep(self.server.slow_s)
            code, body = 200, {"status": "ok", "slow": True}
        else:
            code, body = 404, {"status": "not found"}
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Server:
    """A threaded HTTP server; ``start()``/``stop()`` may be called late."""

    def __init__(self, port=0, slow_s=3.0):
        self.port = port or free_port()
        self.slow_s = slow_s
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hits = []
        self._httpd.slow_s = self.slow_s
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def hits(self):
        return list(self._httpd.hits) if self._httpd else []

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None


def free_port():
    """A port nothing listens on right now (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StaticServer(Server):
    """Serves the files of a directory (release artifacts) on 127.0.0.1."""

    def __init__(self, directory, port=0):
        super().__init__(port=port)
        self.directory = str(directory)

    def start(self):
        handler = functools.partial(_QuietStatic, directory=self.directory)
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self._httpd.hits = []
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self


class _QuietStatic(http.server.SimpleHTTPRequestHandler):
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass
