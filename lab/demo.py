#!/usr/bin/env python3
"""`make demo`: bring the lab up and walk through what hx-ops does on it.

Each step prints the command an operator would type and what it showed.
The lab stays up afterwards so the user can go on by hand.
"""
import json
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import lab  # noqa: E402  (lab.py sits beside this file)


def banner(text):
    print(f"\n=== {text}\n", flush=True)


def run(argv, show=True, check=True):
    """Run a lab CLI wrapper, echoing the command as the user would type it."""
    print("$ " + " ".join(argv), flush=True)
    res = subprocess.run([os.path.join(REPO, argv[0])] + argv[1:], capture_output=True, text=True, check=False)
    if show:
        sys.stdout.write(res.stdout)
    if res.returncode and check:
        sys.stdout.write(res.stderr)
        raise SystemExit(f"demo: `{' '.join(argv)}` exited {res.returncode}")
    return res


def step_lab():
    banner("1. The lab: a real salt-master and three minions (lb1, app1, app2) on loopback")
    lab.up(None)


def step_health():
    banner("2. Fleet health: hx_health.check on every minion, gathered by the master")
    # Exit code 2 means some check is critical (a busy demo machine can be);
    # the table is the point here, so only a missing answer stops the demo.
    res = run(["lab/salt-run", "hx_report.health", "--out=json"], show=False, check=False)
    text = res.stdout
    report = None
    for chunk in _json_documents(text):
        if isinstance(chunk, dict) and "minions" in chunk:
            report = chunk
        elif isinstance(chunk, dict) and chunk.get("suffix") == "progress":
            print(chunk["event"]["message"])
    if report is None:
        sys.stdout.write(text + res.stderr)
        raise SystemExit("demo: hx_report.health returned nothing")
    if report["missing"]:
        raise SystemExit("demo: minions did not answer: " + ", ".join(report["missing"]))
    print("\nper minion: " + ", ".join(f"{m}={s}" for m, s in sorted(report["minions"].items())))


def _json_documents(text):
    decoder = json.JSONDecoder()
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            nxt = text.find("\n{", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        yield obj


def _salt_json(argv):
    res = run(argv + ["--out=json", "--static"], show=False, check=False)
    try:
        return json.loads(res.stdout)
    except ValueError:
        sys.stdout.write(res.stdout + res.stderr)
        raise SystemExit(f"demo: `{' '.join(argv)}` gave no JSON") from None


def step_recover():
    banner("3. Automatic recovery: SIGKILL the demo app on app1, hx_service.recover brings it back")
    status = _salt_json(["lab/salt", "app1", "hx_service.status", "demo-blue"])["app1"]["demo-blue"]
    pid = status.get("pid")
    if not pid:
        raise SystemExit(f"demo: demo-blue is not running on app1: {status}")
    print(f"demo-blue on app1 runs as pid {pid}; sending SIGKILL")
    os.kill(pid, signal.SIGKILL)
    ret = _salt_json(["lab/salt", "app1", "hx_service.recover", "demo-blue"])["app1"]
    if not isinstance(ret, dict) or ret.get("outcome") != "recovered":
        raise SystemExit(f"demo: recovery did not succeed: {ret}")
    after = _salt_json(["lab/salt", "app1", "hx_service.status", "demo-blue"])["app1"]["demo-blue"]
    print(
        f"outcome: {ret['outcome']} after {ret['attempts']} attempt(s); "
        f"time to recover: {ret['time_to_recover_ms']} ms; new pid {after.get('pid')}; "
        f"budget left: {ret['budget']['remaining']} of {ret['budget']['max']} per {ret['budget']['window']} s"
    )


def step_next():
    banner("Go on by hand")
    print(
        "  lab/salt '*' hx_health.check          # every check on every minion\n"
        "  lab/salt app1 hx_health.sla           # availability from the recorded samples\n"
        "  lab/salt app1 hx_health.forecast      # when will a disk fill up?\n"
        "  lab/salt-run hx_report.health         # the fleet table again\n"
        "  lab/salt app1 hx_service.discover     # managed services: state, pid, uptime, health\n"
        "  make lab-status                       # what runs where (also .lab/lab.json)\n"
        "  make lab-down                         # stop everything and remove .lab/\n"
    )


STEPS = [step_lab, step_health, step_recover, step_next]


def main():
    for step in STEPS:
        step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
