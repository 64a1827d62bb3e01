#!/usr/bin/env python3
"""hx-ops demo app: a tiny standard-library HTTP service to deploy, break and heal.

Endpoints
    GET /health   200 {"status": "ok", "version", "pid", "started_at", "reloads"}
                  503 {"status": "fail", ...} when health_fail is set
    GET /         200 "demo-app <version>\\n" with header X-App-Version
                  500 for a random share ``error_rate`` of requests

Knobs (command line flags give the start values; a control file, re-read on
every request, overrides them at runtime so demos can break a live service)::

    --slow-ms N        delay every response by N ms           control: "slow_ms": 500
    --health-fail      /health answers 503                    control: "health_fail": true
    --error-rate R     share (0..1) of / answered with 500    control: "error_rate": 0.2
    --control FILE     JSON file with the keys above, plus "crash": true to
                       exit(1) on the next request (env HX_DEMO_CONTROL too)
    --crash-on-start   exit 1 immediately (a service that dies on start)
    --ignore-sigterm   ignore SIGTERM (only SIGKILL stops it)
    --release-dir DIR  run as an installed release: the version comes from
                       DIR/VERSION (an explicit --version wins) and
                       DIR/knobs.json (same keys as the control file) gives
                       the start values of the knobs a flag left at its
                       default, so a "broken" release is just a tarball
                       whose knobs.json says {"health_fail": true}

SIGTERM stops accepting connections, lets in-flight requests finish (at most
--drain-timeout s) and exits 0. SIGHUP is a "reload": it re-reads the control
file and counts reloads (shown by /health).
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED_AT = time.time()


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.inflight = 0
        self.reloads = 0
        self.stopping = threading.Event()

    def knobs(self):
        knobs = {
            "slow_ms": self.args.slow_ms,
            "health_fail": self.args.health_fail,
            "error_rate": self.args.error_rate,
            "crash": False,
        }
        path = self.args.control
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    data = json.load(fh)
            except FileNotFoundError:
                data = {}
            except (OSError, ValueError) as exc:
                # A half-written control file must not take the service down.
                log(f"control file {path} unreadable: {exc}")
                data = {}
            if isinstance(data, dict):
                for key in knobs:
                    if key in data:
                        knobs[key] = data[key]
        return knobs


def log(msg, **fields):
    fields.update({"ts": round(time.time(), 3), "pid": os.getpid(), "msg": msg})
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Keep-alive + Nagle + delayed ACK stalls python backends (452 rps vs 9,200).
    disable_nagle_algorithm = True
    # Idle keep-alive connections must not hold a thread forever.
    timeout = 30
    server_version = "hx-demoapp"

    def log_message(self, fmt, *args):  # quiet access log; stdout carries events
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", self.server.state.args.version)
        if self.server.state.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        state = self.server.state
        with state.lock:
            state.inflight += 1
        try:
            self._handle(state)
        finally:
            with state.lock:
                state.inflight -= 1

    do_HEAD = do_GET

    def _handle(self, state):
        knobs = state.knobs()
        if knobs.get("crash"):
            log("crash requested by control file")
            os._exit(1)
        slow = knobs.get("slow_ms") or 0
        if slow:
            time.sleep(float(slow) / 1000.0)
        version = state.args.version
        path = self.path.split("?", 1)[0]
        if path == "/health":
            body = {
                "version": version,
                "pid": os.getpid(),
                "started_at": STARTED_AT,
                "reloads": state.reloads,
            }
            if knobs.get("health_fail"):
                body["status"] = "fail"
                self._send(503, json.dumps(body))
            else:
                body["status"] = "ok"
                self._send(200, json.dumps(body))
        elif path == "/":
            rate = float(knobs.get("error_rate") or 0)
            if rate > 0 and random.random() < rate:
                self._send(500, f"demo-app {version} injected error\n", "text/plain")
            else:
                self._send(200, f"demo-app {version}\n", "text/plain")
        else:
            self._send(404, json.dumps({"error": "not found", "path": path}))


class Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive threads must not block exit
    allow_reuse_address = True


RELEASE_KNOBS = {"slow_ms": int, "health_fail": bool, "error_rate": float}


def apply_release(args):
    """Version and knob defaults from an installed release directory.

    Read once, at start: the release is immutable and the slot link the
    directory was reached through may be switched while this process runs.
    """
    rel = os.path.realpath(args.release_dir)
    if args.version is None:
        with open(os.path.join(rel, "VERSION"), encoding="utf-8") as fh:
            args.version = fh.read().strip() or "0.0.0"
    try:
        with open(os.path.join(rel, "knobs.json"), encoding="utf-8") as fh:
            knobs = json.load(fh)
    except FileNotFoundError:
        knobs = {}
    if not isinstance(knobs, dict):
        raise ValueError("knobs.json must hold a JSON object")
    for key, kind in RELEASE_KNOBS.items():
        # A flag given on the command line (not at its default) wins over the release.
        if key in knobs and not getattr(args, key):
            setattr(args, key, kind(knobs[key]))
    args.release_dir = rel


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="hx-ops demo app")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--version", default=None)
    p.add_argument("--slow-ms", type=int, default=0)
    p.add_argument("--health-fail", action="store_true")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--control", default=os.environ.get("HX_DEMO_CONTROL"))
    p.add_argument("--crash-on-start", action="store_true")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--release-dir", default=None)
    args = p.parse_args(argv)
    if args.release_dir:
        try:
            apply_release(args)
        except (OSError, ValueError) as exc:
            p.error(f"--release-dir {args.release_dir}: {exc}")
    if args.version is None:
        args.version = "0.0.0"
    if not 0.0 <= args.error_rate <= 1.0:
        p.error("--error-rate must be between 0 and 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.crash_on_start:
        log("crash-on-start requested", version=args.version)
        return 1
    state = State(args)
    server = Server((args.bind, args.port), Handler)
    server.state = state

    def on_term(signum, frame):
        if state.stopping.is_set():
            return
        state.stopping.set()
        log("SIGTERM: draining", inflight=state.inflight)
        # shutdown() blocks until serve_forever returns, and this handler runs
        # on the thread inside serve_forever: hand it to another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    def on_hup(signum, frame):
        state.reloads += 1
        log("SIGHUP: reload", reloads=state.reloads, knobs=state.knobs())

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    log("started", version=args.version, port=args.port, bind=args.bind, started_at=STARTED_AT,
        release_dir=args.release_dir)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    deadline = time.monotonic() + args.drain_timeout
    while state.inflight > 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.server_close()
    log("stopped", inflight_left=state.inflight)
    return 0


if __name__ == "__main__":
    sys.exit(main())
