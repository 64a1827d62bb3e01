#!/usr/bin/env python3
"""Event-driven remediation figures on a real lab (beacon -> reactor -> runner).

Starts its own lab in .lab-bench/ (the main lab must be down: both use the
same loopback addresses), then:

* SIGKILL -> healthy with no command: the live demo slot on app1 is killed
  and its /health polled until a new process answers; median of ``--kills``
  runs. The hx_health beacon runs every second (the minion's loop_interval)
  with ``for_cycles: 2``.
* handling rate for a burst: ``--burst`` identical signed beacon events
  (what 100 repeats of one failure look like) handled by
  ``hx_remediate.handle`` from ``--threads`` threads at once, as the
  reactor's worker pool would: events per second, and how many led to an
  action (dedupe must keep it at most one).
* the same burst through the real path: sent by app1 to the master as one
  beacon batch, rendered by the reactor, handled by its worker pool; time
  until every event has its ``salt/run/*/ret``.

Before each kill the service's and the minion's budgets are released
(``hx_service.release``, ``hx_remediate.release``), and the bench lab's master
allows many remediations per hour: the figures are the path's, not the
budget guard's.

    .venv/bin/python bench/bench_remediation.py [--kills 5] [--burst 100] [--threads 10]
"""
import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "_utils"))
BENCH_LAB = os.path.join(REPO, ".lab-bench")
PY = sys.executable

import salt.config  # noqa: E402
import salt.crypt  # noqa: E402
import salt.runner  # noqa: E402
import salt.utils.event  # noqa: E402
import yaml  # noqa: E402

import hx_remediation  # noqa: E402


def lab(command):
    env = dict(os.environ, HX_LAB_DIR=BENCH_LAB, HX_LAB_APP_HOSTS="2")
    return subprocess.run([PY, os.path.join(REPO, "lab", "lab.py"), command], env=env, check=False,
                          capture_output=True, text=True, timeout=900)


def health(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None


def live_url():
    # blue is live right after lab-up (1.0.0 on blue, HAProxy weights blue=100)
    return "http://127.0.0.11:8080/health"


def salt_cmd(*args, timeout=120):
    cmd = [os.path.join(os.path.dirname(PY), "salt"), "-c", os.path.join(BENCH_LAB, "master"), "--out=json",
           "--static", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        return json.loads(res.stdout or "{}")
    except ValueError:
        return {}


def runner_client():
    opts = salt.config.master_config(os.path.join(BENCH_LAB, "master", "master"))
    opts["quiet"] = True
    return opts, salt.runner.RunnerClient(opts)


def run(client, fun, **kwarg):
    return client.cmd(fun, kwarg=kwarg, print_event=False, full_return=False)


def allow_many_remediations():
    """The bench lab's master-only settings, plus a per-minion budget that five kills cannot spend."""
    path = os.path.join(BENCH_LAB, "master", "hx_ops.yaml")
    with open(path, encoding="utf-8") as fh:
        conf = yaml.safe_load(fh) or {}
    conf.setdefault("hx_remediation", {})["budget"] = {"minion": {"max": 1000, "window": 3600}}
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(conf, fh)


def resolved_since(client, since):
    found = run(client, "hx_incident.list", minion="app1", since=since).get("incidents", [])
    return [i for i in found if i["status"] == "resolved"]


def kill_to_healthy(runs):
    _, client = runner_client()
    url = live_url()
    took = []
    for _ in range(runs):
        salt_cmd("app1", "hx_service.release", "demo-blue")
        run(client, "hx_remediate.release", minion="app1", by="bench")
        before = health(url)
        if not before:
            raise SystemExit(f"{url} does not answer")
        since = time.time()
        killed = time.monotonic()
        os.kill(before["pid"], signal.SIGKILL)
        deadline = killed + 120
        while time.monotonic() < deadline:
            now = health(url)
            if now and now["pid"] != before["pid"]:
                break
            time.sleep(0.05)
        else:
            raise SystemExit("not healthy again within 120 s")
        took.append(time.monotonic() - killed)
        print(f"  kill -> healthy: {took[-1]:.2f} s", flush=True)
        # The next kill must open a new incident, not count as a repeat of this one.
        deadline = time.monotonic() + 60
        while not resolved_since(client, since):
            if time.monotonic() > deadline:
                raise SystemExit("the incident was not resolved within 60 s")
            time.sleep(0.2)
    return took


def signed_event(opts, minion, check):
    data = {"check": check, "status": "critical", "previous": "ok", "value": None, "threshold": None,
            "message": "bench burst", "kind": "http", "since": time.time(), "cycles": 2,
            "ts": round(time.time(), 3), "nonce": uuid.uuid4().hex[:16]}
    key = os.path.join(BENCH_LAB, "minions", minion, "etc", "salt", "pki", "minion", "minion.pem")
    msg = hx_remediation.signed_message(minion, "hx_health", check, data)
    data["sig"] = hx_remediation.encode_sig(salt.crypt.sign_message(key, msg, algorithm=salt.crypt.PKCS1v15_SHA224))
    data["id"] = minion
    return f"salt/beacon/{minion}/hx_health/{check}", data


def burst(count, threads):
    opts, runner = runner_client()
    tag, data = signed_event(opts, "app1", "demo_blue")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(lambda _: runner.cmd("hx_remediate.handle", kwarg={"tag": tag, "data": dict(data)},
                                                     print_event=False, full_return=False), range(count)))
    took = time.monotonic() - started
    outcomes = {}
    for res in results:
        key = res.get("outcome") if isinstance(res, dict) else "error"
        outcomes[key] = outcomes.get(key, 0) + 1
    return took, outcomes


def burst_through_reactor(count):
    """app1 sends ``count`` identical signed beacon events in one batch; wait for every handle's return."""
    opts, _ = runner_client()
    tag, data = signed_event(opts, "app1", "demo_blue")
    load = {"data": None, "tag": None, "pretag": None, "events": [{"tag": tag, "data": data}] * count}
    outcomes = {}
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True) as bus:
        started = time.monotonic()
        salt_cmd("app1", "event.fire", json.dumps(load), "fire_master")
        deadline = started + 300
        while sum(outcomes.values()) < count and time.monotonic() < deadline:
            ev = bus.get_event(wait=1, tag="salt/run/", full=True)
            if not ev or ev["data"].get("fun") != "runner.hx_remediate.handle" or not ev["tag"].endswith("/ret"):
                continue
            ret = ev["data"].get("return")
            key = ret.get("outcome") if isinstance(ret, dict) else "error"
            outcomes[key] = outcomes.get(key, 0) + 1
        took = time.monotonic() - started
    return took, outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--threads", type=int, default=10)
    args = parser.parse_args()
    main_lab = subprocess.run([PY, os.path.join(REPO, "lab", "lab.py"), "status"], capture_output=True, text=True)
    if "lab: down" not in main_lab.stdout:
        raise SystemExit("the main lab is up and uses the same addresses: run `make lab-down` first")
    print(f"starting a lab in {BENCH_LAB}", flush=True)
    up = lab("up")
    try:
        if up.returncode:
            raise SystemExit(f"lab up failed:\n{up.stdout}{up.stderr}")
        allow_many_remediations()
        took = kill_to_healthy(args.kills)
        print(f"SIGKILL -> healthy through beacon/reactor/hx_remediate (beacon every 1 s, for_cycles 2): "
              f"median {statistics.median(took):.2f} s, min {min(took):.2f}, max {max(took):.2f} over {len(took)}")
        seconds, outcomes = burst(args.burst, args.threads)
        print(f"burst of {args.burst} identical signed events, hx_remediate.handle on {args.threads} threads: "
              f"{seconds:.1f} s, {args.burst / seconds:.1f} events/s; outcomes {outcomes}")
        seconds, outcomes = burst_through_reactor(args.burst)
        print(f"burst of {args.burst} identical signed events from app1 through the master's reactor: "
              f"{seconds:.1f} s, {args.burst / seconds:.1f} events/s; outcomes {outcomes}")
    finally:
        lab("down")


if __name__ == "__main__":
    main()
