#!/usr/bin/env python3
"""Steady HTTP load for tests, the demo and benchmarks (standard library only).

N worker threads each keep one HTTP/1.1 keep-alive connection (http.client)
to URL and send GETs at a total target rate (requests/s, spread over the
threads) or as fast as they can. Every response is counted by its
``X-App-Version`` header (the demo app sets it) in total and per second.

A failed request is counted, never retried: the point is to measure drops.
Failures are told apart:

``connect``      a new connection refused/reset, or a send/receive error on it
``closed_idle``  a *reused* keep-alive connection closed by the server before
                 it answered (HAProxy < 2.7 and nginx close idle client
                 connections when a reload retires the old worker; real
                 clients retry such requests, RFC 9112 9.3.1 — this one
                 counts them instead)
``timeout``      no answer within ``timeout`` s
``http_5xx`` / ``http_4xx``

After a failure the connection is closed and the next request opens a new
one. ``keepalive=False`` sends ``Connection: close`` (a new connection per
request: what "refused connections" means across a reload).

Library::

    lg = LoadGen("http://127.0.0.1:8000/", rate=200, threads=4).start()
    ...                      # switch traffic
    result = lg.stop()       # {"total", "ok", "failed", "errors", "versions", "timeline", ...}

CLI (prints the result as JSON)::

    python lab/loadgen.py http://127.0.0.1:8000/ --rate 200 --duration 10
"""

import argparse
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

ERROR_KINDS = ("connect", "closed_idle", "timeout", "http_5xx", "http_4xx")


class LoadGen:
    def __init__(self, url, rate=200.0, threads=4, duration=None, count=None, timeout=5.0, path=None,
                 version_header="X-App-Version", keep_samples=20, keepalive=True):
        """``rate`` 0/None = as fast as possible; ``duration`` s / ``count`` requests bound the run."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url: only http://host[:port]/path is supported, got {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = path or (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.rate = float(rate or 0)
        self.threads = max(1, int(threads))
        self.duration = duration
        self.count = count
        self.timeout = timeout
        self.version_header = version_header
        self.keepalive = keepalive
        self.keep_samples = keep_samples
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = []
        self._issued = 0
        self.started = None
        self.ended = None
        self.total = 0
        self.ok = 0
        self.errors = {kind: 0 for kind in ERROR_KINDS}
        self.versions = {}
        self.status = {}
        self.timeline = {}  # second -> {version|"failed": count}
        self.samples = []  # the first few failures: what exactly happened
        self.latency_ms_max = 0.0
        self._latency_sum = 0.0

    # -- control ---------------------------------------------------------

    def start(self):
        self.started = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._worker, args=(i,), name=f"loadgen-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def wait(self, timeout=None):
        """Block until a duration/count bound ends the run (or ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._workers:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.result()

    def stop(self):
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        return self.result()

    def running(self):
        return any(t.is_alive() for t in self._workers)

    def snapshot(self):
        """Counts so far without stopping (for progress and 'wait until N on green')."""
        return self.result()

    # -- work ------------------------------------------------------------

    def _take_ticket(self):
        with self._lock:
            if self.count is not None and self._issued >= self.count:
                return False
            self._issued += 1
            return True

    def _worker(self, index):
        conn = None
        per_thread = self.rate / self.threads if self.rate > 0 else 0
        interval = 1.0 / per_thread if per_thread else 0.0
        # Stagger threads so the total rate is smooth, not bursts of N.
        next_at = time.monotonic() + (interval * index / self.threads if interval else 0)
        end = self.started + self.duration if self.duration else None
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if interval:
                    if next_at > now:
                        if self._stop.wait(next_at - now):
                            break
                    # Behind schedule (a slow answer): do not burst to catch up.
                    next_at = max(next_at + interval, time.monotonic() - interval)
                    if end is not None and time.monotonic() >= end:
                        break
                if not self._take_ticket():
                    break
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn = self._one(conn)
        finally:
            if conn is not None:
                conn.close()

    def _one(self, conn):
        began = time.monotonic()
        version, kind, detail, code = None, None, None, None
        reused = conn.sock is not None
        try:
            conn.request("GET", self.path, headers={"Connection": "keep-alive" if self.keepalive else "close"})
            resp = conn.getresponse()
            resp.read()
            code = resp.status
            version = resp.getheader(self.version_header)
            if resp.will_close:
                conn.close()  # the server said Connection: close; next request reconnects
            if code >= 500:
                kind = "http_5xx"
            elif code >= 400:
                kind = "http_4xx"
        except (socket.timeout, TimeoutError) as exc:
            kind, detail = "timeout", repr(exc)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            kind, detail = ("closed_idle" if reused else "connect"), repr(exc)
        except (OSError, http.client.HTTPException) as exc:
            kind, detail = "connect", repr(exc)
        elapsed = time.monotonic() - began
        self._record(began, version, kind, detail, code, elapsed)
        if kind in ("timeout", "connect"):
            conn.close()
            return None
        return conn

    def _record(self, began, version, kind, detail, code, elapsed):
        second = int(began - self.started)
        with self._lock:
            self.total += 1
            if code is not None:
                self.status[code] = self.status.get(code, 0) + 1
            slot = self.timeline.setdefault(second, {})
            if kind:
                self.errors[kind] += 1
                slot["failed"] = slot.get("failed", 0) + 1
                if len(self.samples) < self.keep_samples:
                    self.samples.append({"t": round(began - self.started, 3), "kind": kind, "status": code,
                                         "version": version, "detail": detail})
            else:
                self.ok += 1
                key = version or "unknown"
                self.versions[key] = self.versions.get(key, 0) + 1
                slot[key] = slot.get(key, 0) + 1
                self._latency_sum += elapsed
                self.latency_ms_max = max(self.latency_ms_max, elapsed * 1000)
            self.ended = time.monotonic()

    # -- results ---------------------------------------------------------

    def result(self):
        with self._lock:
            elapsed = ((self.ended or time.monotonic()) - self.started) if self.started else 0.0
            failed = sum(self.errors.values())
            return {
                "url": self.url,
                "total": self.total,
                "ok": self.ok,
                "failed": failed,
                "errors": dict(self.errors),
                "status": {str(k): v for k, v in sorted(self.status.items())},
                "versions": dict(self.versions),
                "timeline": [dict(second=s, **counts) for s, counts in sorted(self.timeline.items())],
                "samples": list(self.samples),
                "elapsed_s": round(elapsed, 3),
                "rps": round(self.total / elapsed, 1) if elapsed > 0 else 0.0,
                "latency_ms_avg": round(self._latency_sum * 1000 / self.ok, 2) if self.ok else None,
                "latency_ms_max": round(self.latency_ms_max, 2),
            }

    def versions_since(self, second):
        """Versions answered from ``second`` (relative to start) on: 'all traffic on green afterwards'."""
        with self._lock:
            out = {}
            for s, counts in self.timeline.items():
                if s >= second:
                    for key, n in counts.items():
                        out[key] = out.get(key, 0) + n
            return out

    def elapsed(self):
        return time.monotonic() - self.started if self.started else 0.0


def main(argv=None):
    p = argparse.ArgumentParser(description="steady HTTP load; prints a JSON result")
    p.add_argument("url")
    p.add_argument("--rate", type=float, default=200.0, help="total requests/s; 0 = as fast as possible")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--count", type=int, default=None, help="stop after this many requests")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, s")
    p.add_argument("--no-keepalive", action="store_true", help="a new connection per request")
    args = p.parse_args(argv)
    lg = LoadGen(args.url, rate=args.rate, threads=args.threads, duration=args.duration, count=args.count,
                 timeout=args.timeout, keepalive=not args.no_keepalive).start()
    try:
        if args.duration is None and args.count is None:
            while lg.running():
                time.sleep(0.2)
        result = lg.wait()
    except KeyboardInterrupt:
        result = lg.stop()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
