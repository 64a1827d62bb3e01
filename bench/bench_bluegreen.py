#!/usr/bin/env python3
"""Blue-green figures on a real lab (salt-master, minions, HAProxy, supervisord).

For each number of app hosts (default 2, 4, 8) the bench starts its own lab
in .lab-bench/ (the main lab must be down: both use the same loopback
addresses), then:

* with 2 hosts: 10 consecutive deployments under steady load through HAProxy:
  failed requests per deployment, and the time from the start of the
  "switch" phase to the last response served by the old color (the moment
  all traffic is on the new color), median over the runs;
* for every size: the orchestration's own overhead = total deployment time
  minus the configured waits (bake=0 here, so the whole duration is
  overhead: preflight, install + health, LB checks, switch, read-back).

    .venv/bin/python bench/bench_bluegreen.py [--sizes 2,4,8] [--deploys 10]
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))
BENCH_LAB = os.path.join(REPO, ".lab-bench")
PY = sys.executable
VENV_BIN = os.path.dirname(PY)

from loadgen import LoadGen  # noqa: E402

FRONT = ("127.0.0.10", 8000)


def lab(command, hosts):
    env = dict(os.environ, HX_LAB_DIR=BENCH_LAB, HX_LAB_APP_HOSTS=str(hosts))
    return subprocess.run([PY, os.path.join(REPO, "lab", "lab.py"), command], env=env, check=False,
                          capture_output=True, text=True, timeout=900)


def salt_run(*args):
    res = subprocess.run([os.path.join(VENV_BIN, "salt-run"), "-c", os.path.join(BENCH_LAB, "master"),
                          "--out=json", *args], capture_output=True, text=True, timeout=600, check=False)
    docs, decoder, pos, text = [], json.JSONDecoder(), 0, res.stdout
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        docs.append(obj)
    rets = [d for d in docs if not (isinstance(d, dict) and d.get("suffix") == "progress")]
    return rets[-1] if rets else {"result": False, "comment": res.stdout + res.stderr}


class Probe:
    """Back-to-back requests recording (time, version) of every response."""

    def __init__(self):
        self.seen = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection(*FRONT, timeout=5)
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                self.seen.append((time.time(), resp.getheader("X-App-Version")))
            except (OSError, http.client.HTTPException):
                conn = None

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)


def deploy(version, bake):
    started = time.monotonic()
    ret = salt_run("hx_deploy.blue_green", "app=demo", f"version={version}", f"bake={bake}")
    return ret, time.monotonic() - started


def switch_started(deployment):
    hist = salt_run("hx_deploy.history", "app=demo", "limit=3")
    record = (hist.get("records") or {}).get(deployment) or {}
    return next((p["at"] for p in record.get("phases", []) if p["phase"] == "switch"), None)


def under_load(runs):
    failed, latencies = [], []
    versions = ["1.1.0", "1.2.0"]
    for n in range(runs):
        version = versions[n % 2]
        probe = Probe().start()
        load = LoadGen(f"http://{FRONT[0]}:{FRONT[1]}/", rate=150, threads=4, timeout=5).start()
        ret, _took = deploy(version, bake=2)
        result = load.stop()
        probe.stop()
        if ret.get("outcome") != "succeeded":
            raise SystemExit(f"deployment {n + 1} did not succeed: {ret.get('comment')}")
        failed.append(result["failed"])
        at = switch_started(ret["deployment"])
        last_old = max((t for t, v in probe.seen if t >= at and v != version), default=at)
        latencies.append((last_old - at) * 1000)
        print(f"  deployment {n + 1:2d}: {version}, {result['total']} requests, {result['failed']} failed, "
              f"switch -> all on new color {latencies[-1]:.0f} ms", flush=True)
    return failed, latencies


def overhead(runs):
    took = []
    for n in range(runs):
        ret, seconds = deploy(["1.1.0", "1.2.0"][n % 2], bake=0)
        if ret.get("outcome") != "succeeded":
            raise SystemExit(f"deployment did not succeed: {ret.get('comment')}")
        took.append(seconds)
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2,4,8")
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--overhead-runs", type=int, default=3)
    args = parser.parse_args()
    main_lab = subprocess.run([PY, os.path.join(REPO, "lab", "lab.py"), "status"], capture_output=True, text=True)
    if "lab: down" not in main_lab.stdout:
        raise SystemExit("the main lab is up and uses the same addresses: run `make lab-down` first")
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        print(f"== {size} app hosts: starting a lab in {BENCH_LAB}", flush=True)
        up = lab("up", size)
        try:
            if up.returncode:
                raise SystemExit(f"lab up failed:\n{up.stdout}{up.stderr}")
            if size == 2 and args.deploys:
                failed, latencies = under_load(args.deploys)
                print(f"  {args.deploys} deployments under load: failed requests {sum(failed)} "
                      f"(per deployment {failed}); switch -> all traffic on the new color: "
                      f"median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms", flush=True)
            took = overhead(args.overhead_runs)
            results[size] = statistics.median(took)
            print(f"  orchestration overhead (bake=0): median {results[size]:.1f} s over {len(took)} deployments",
                  flush=True)
        finally:
            lab("down", size)
    base = results.get(min(results)) if results else None
    print("\napp hosts  overhead_s  vs_smallest")
    for size, secs in sorted(results.items()):
        print(f"{size:9d}  {secs:10.1f}  {secs / base:10.2f}x")


if __name__ == "__main__":
    main()
