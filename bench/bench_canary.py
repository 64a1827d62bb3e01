#!/usr/bin/env python3
"""Canary figures on a real lab (salt-master, minions, HAProxy, supervisord).

Starts its own lab in .lab-bench/ (the main lab must be down: both use the
same loopback addresses), sends steady load through HAProxy and measures:

* share accuracy: for every step of ``--good`` promoted canaries, the share
  of requests the canary served (HAProxy's counters over the step) against
  the step's percentage: absolute error in percentage points, per step and
  overall (max, mean);
* rollback speed: for ``--bad`` canaries of a release answering 20 % 5xx,
  the time from the failing step's verdict (the ``step`` phase) to the
  canary at weight 0 on every LB, read back (the ``rolled_back`` phase),
  and the failed requests each let through.

    .venv/bin/python bench/bench_canary.py [--good 3] [--bad 3] [--rate 400]
    .venv/bin/python bench/bench_canary.py --lab .lab     # on a lab already up (left up)
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "lab"))
BENCH_LAB = os.path.join(REPO, ".lab-bench")  # --lab points it at a lab already up
PY = sys.executable
VENV_BIN = os.path.dirname(PY)

from loadgen import LoadGen  # noqa: E402

FRONT = "http://127.0.0.10:8000/"
STEPS = [5, 10, 25, 50, 75, 100]
GOOD = ("1.1.0", "1.2.0")
BAD = "2.2.0-5xx20"


def lab(command):
    env = dict(os.environ, HX_LAB_DIR=BENCH_LAB, HX_LAB_APP_HOSTS="2")
    return subprocess.run([PY, os.path.join(REPO, "lab", "lab.py"), command], env=env, check=False,
                          capture_output=True, text=True, timeout=900)


def salt_run(*args):
    res = subprocess.run([os.path.join(VENV_BIN, "salt-run"), "-c", os.path.join(BENCH_LAB, "master"),
                          "--out=json", *args], capture_output=True, text=True, timeout=900, check=False)
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


def canary(version, steps, interval, rate):
    load = LoadGen(FRONT, rate=rate, threads=8, timeout=5).start()
    try:
        ret = salt_run("hx_deploy.canary", "app=demo", f"version={version}", f"steps={json.dumps(steps)}",
                       f"step_interval={interval}", "sample_interval=1")
    finally:
        result = load.stop()
    return ret, result


def record(deployment):
    hist = salt_run("hx_deploy.history", "app=demo", "limit=5")
    return (hist.get("records") or {}).get(deployment) or {}


def accuracy(runs, rate, interval):
    errors = {}
    for n in range(runs):
        version = GOOD[n % len(GOOD)]
        ret, result = canary(version, STEPS, interval, rate)
        if ret.get("outcome") != "succeeded":
            raise SystemExit(f"good canary {version}: {ret.get('outcome')}: {ret.get('comment')}")
        row = []
        for step in ret["steps"]:
            err = abs(step["share"] - step["percent"])
            errors.setdefault(step["percent"], []).append(err)
            row.append(f"{step['percent']}%: {step['share']:.2f} "
                       f"({step['canary']['requests'] + step['stable']['requests']} req)")
        print(f"  canary {version}: {', '.join(row)}; failed requests {result['failed']}", flush=True)
    return errors


def rollback_speed(runs, rate, interval):
    times, failed = [], []
    for _ in range(runs):
        ret, result = canary(BAD, [10, 100], interval, rate)
        if ret.get("outcome") != "rolled_back":
            raise SystemExit(f"bad canary: {ret.get('outcome')}: {ret.get('comment')}")
        phases = record(ret["deployment"]).get("phases") or []
        verdict = next(p["at"] for p in phases if p["phase"] == "step" and p.get("verdict") == "fail")
        zero = next(p["at"] for p in phases if p["phase"] == "rolled_back")
        times.append((zero - verdict) * 1000)
        failed.append(result["failed"])
        step = ret["steps"][0]
        print(f"  {BAD}: fail after {step['canary']['requests']} canary requests "
              f"({step['canary']['error_rate']}% 5xx); verdict -> weight 0 verified in {times[-1]:.0f} ms; "
              f"failed requests {result['failed']} of {result['total']}", flush=True)
    return times, failed


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--good", type=int, default=3, help="promoted canaries for the share accuracy")
    p.add_argument("--bad", type=int, default=3, help="failing canaries for the rollback time")
    p.add_argument("--rate", type=float, default=400, help="requests/s through HAProxy")
    p.add_argument("--interval", type=float, default=6, help="seconds per step")
    p.add_argument("--lab", default=None, help="use the lab already up in this folder (e.g. .lab); left up")
    args = p.parse_args()
    global BENCH_LAB  # pylint: disable=global-statement
    own = args.lab is None
    if own:
        main_lab = subprocess.run([PY, os.path.join(REPO, "lab", "lab.py"), "status"], capture_output=True,
                                  text=True, check=False)
        if "lab: down" not in main_lab.stdout:
            raise SystemExit("the main lab is up and uses the same addresses: run `make lab-down` first "
                             "(or measure on it with --lab .lab)")
        print(f"== starting a lab in {BENCH_LAB}", flush=True)
        up = lab("up")
    else:
        BENCH_LAB = os.path.abspath(args.lab)
    try:
        if own and up.returncode:
            raise SystemExit(f"lab up failed:\n{up.stdout}{up.stderr}")
        print(f"== share accuracy: steps {STEPS}, {args.interval:g}s each, {args.rate:g} requests/s", flush=True)
        errors = accuracy(args.good, args.rate, args.interval)
        print(f"== rollback: {BAD} at 10 %", flush=True)
        times, failed = rollback_speed(args.bad, args.rate, args.interval)
    finally:
        if own:
            lab("down")
    print("\nstep %   abs error pp (max)   abs error pp (mean)")
    for percent, errs in sorted(errors.items()):
        print(f"{percent:>6}   {max(errs):18.3f}   {statistics.mean(errs):19.3f}")
    flat = [e for errs in errors.values() for e in errs]
    print(f"all steps: max {max(flat):.3f} pp, mean {statistics.mean(flat):.3f} pp over {len(flat)} steps")
    print(f"failing step verdict -> canary at weight 0 (verified): median {statistics.median(times):.0f} ms, "
          f"max {max(times):.0f} ms over {len(times)} runs; failed requests per run {failed}")


if __name__ == "__main__":
    main()
