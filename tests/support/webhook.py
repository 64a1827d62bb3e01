"""A webhook receiver on 127.0.0.1 that records every POST (Slack, PagerDuty, Alertmanager).

``Receiver().start()``; ``.url``; ``.posts`` -> ``[{"path", "body", "headers", "t"}]``;
``.fail_next(n, status=500, retry_after=None, echo=False)`` answers the next ``n`` POSTs
with ``status`` (``echo``: the body repeats the request's path, body and
Authorization header, as some receivers do in their error text);
``.hang_next(n, seconds)`` answers the next ``n`` only after ``seconds`` (a
client with a shorter timeout times out); ``.stop()`` makes it "down"
(connections refused) and ``.start()`` brings it back on the same port. Nagle
is off (docs/architecture.md, measured traps).

The lab runs it as its notification receiver (every POST appended to a
JSON-lines file)::

    python -m tests.support.webhook --port 9095 --log .lab/receiver.jsonl
"""
import http.server
import json
import threading
import time

from tests.support.httpserver import free_port


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 (http.server API)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        recv = self.server.receiver
        with recv.lock:
            status, retry_after, echo, hang = 202, None, False, 0
            if recv.failures:
                status, retry_after, echo, hang = recv.failures.pop(0)
            post = {"path": self.path, "body": body, "headers": dict(self.headers), "t": time.time(), "status": status,
                    "hung": bool(hang)}
            recv.all_posts.append(post)
            if recv.log_path:
                with open(recv.log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({k: v for k, v in post.items() if k != "headers"}) + "\n")
        if hang:
            time.sleep(hang)  # the product's own timeout is what the test waits for
        answer = {"status": "ok" if status < 300 else "error"}
        if echo:
            answer.update(path=self.path, request=body, authorization=self.headers.get("Authorization"))
        payload = json.dumps(answer).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class Receiver:
    def __init__(self, port=None, log_path=None):
        self.port = port or free_port()
        self.log_path = log_path
        self.lock = threading.Lock()
        self.all_posts = []
        self.failures = []
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def posts(self):
        """Accepted POSTs (answered 2xx in time), oldest first."""
        with self.lock:
            return [p for p in self.all_posts if p["status"] < 300 and not p["hung"]]

    def fail_next(self, n, status=500, retry_after=None, echo=False):
        with self.lock:
            self.failures.extend([(status, retry_after, echo, 0)] * n)

    def hang_next(self, n, seconds):
        """The next ``n`` POSTs are answered (202) only after ``seconds``; they count as failed posts."""
        with self.lock:
            self.failures.extend([(202, None, False, seconds)] * n)

    def clear(self):
        with self.lock:
            self.all_posts.clear()
            self.failures.clear()

    def start(self):
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.receiver = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def wait_for(self, pred, timeout=30, what="webhook posts"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for p in self.posts if pred(p)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {self.posts}")


def main():
    import argparse  # pylint: disable=import-outside-toplevel

    parser = argparse.ArgumentParser(description="webhook receiver on 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="append every POST here as a JSON line")
    args = parser.parse_args()
    recv = Receiver(args.port, log_path=args.log).start()
    try:
        recv._thread.join()  # pylint: disable=protected-access
    except KeyboardInterrupt:
        recv.stop()


if __name__ == "__main__":
    main()
