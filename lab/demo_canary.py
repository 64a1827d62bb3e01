#!/usr/bin/env python3
"""`make demo` step: canary deployments on the lab under steady load.

``step_canary()`` runs two canaries through ``lab/salt-run hx_deploy.canary``
while lab/loadgen.py sends steady traffic to the lab's HAProxy frontend:

1. a good release, promoted through every step;
2. a release answering 5xx to 20 % of requests, rolled back at its first step.

For every step it prints the weights set on HAProxy, the share of requests
the canary actually served (HAProxy's counters over the step, and what the
load generator saw from that version over the whole run), the canary's
error rate and response time against the stable color's, and the verdict.

    make lab-up
    .venv/bin/python -c 'import sys; sys.path.insert(0, "lab"); import demo_canary; demo_canary.step_canary()'
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from loadgen import LoadGen  # noqa: E402

FRONTEND_URL = "http://127.0.0.10:8000/"
RATE = 200  # requests/s during the canaries
STEPS = "[10, 25, 50, 100]"
STEP_INTERVAL = 8
BAD = "2.2.0-5xx20"


def _documents(text):
    decoder, pos = json.JSONDecoder(), 0
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


def salt_run(*args):
    """Run lab/salt-run, echoing the command; return (its return dict, its progress lines)."""
    print("$ lab/salt-run " + " ".join(args), flush=True)
    res = subprocess.run([os.path.join(REPO, "lab", "salt-run"), *args, "--out=json"], capture_output=True,
                         text=True, check=False, timeout=900)
    docs = list(_documents(res.stdout))
    progress = [d["event"]["message"] for d in docs if isinstance(d, dict) and d.get("suffix") == "progress"]
    rets = [d for d in docs if not (isinstance(d, dict) and d.get("suffix") == "progress")]
    if not rets:
        sys.stdout.write(res.stdout + res.stderr)
        raise SystemExit(f"demo: `lab/salt-run {' '.join(args)}` returned nothing")
    return rets[-1], progress


def _good_version():
    status, _ = salt_run("hx_deploy.status", "app=demo")
    live = status.get("live")
    running = {(slots.get(live) or {}).get("running") for slots in (status.get("versions") or {}).values()}
    return next(v for v in ("1.1.0", "1.2.0", "1.0.0") if v not in running), live


def _print_steps(ret):
    print(f"  {'step':>4} {'weight c/s':>10} {'target':>7} {'served':>7} {'requests':>8} "
          f"{'canary err':>10} {'canary ms':>9} {'stable ms':>9} {'health':>6}  verdict")
    for s in ret.get("steps") or []:
        c, st, w = s["canary"], s["stable"], s["weights"]
        served = "-" if s["share"] is None else f"{s['share']:.2f}%"
        err = "-" if c["error_rate"] is None else f"{c['error_rate']:.1f}%"
        print(f"  {s['step']:>4} {w['canary']:>4}/{w['stable']:<5} {s['percent']:>6}% {served:>7} "
              f"{c['requests'] + st['requests']:>8} {err:>10} {str(c['response_time']):>9} "
              f"{str(st['response_time']):>9} {str(s['health']['success_rate']):>5}%  "
              f"{s['verdict']}: {'; '.join(s['reasons'])[:90]}")


def _canary(version, label):
    load = LoadGen(FRONTEND_URL, rate=RATE, threads=6, timeout=5).start()
    try:
        ret, _ = salt_run("hx_deploy.canary", "app=demo", f"version={version}", f"steps={STEPS}",
                          f"step_interval={STEP_INTERVAL}", "sample_interval=1")
    finally:
        result = load.stop()
    print(f"\n{label}: {version} -> {ret.get('outcome')} ({ret.get('comment')})")
    _print_steps(ret)
    seen = result["versions"].get(version, 0)
    print(f"  load generator: {result['total']} requests, {result['failed']} failed "
          f"({result['errors']['http_5xx']} answered 5xx); {seen} answered by {version} "
          f"({100.0 * seen / max(1, result['total']):.1f}% of the whole run)")
    return ret, result


def step_canary():
    print("\n=== 6. Canary: a good release promoted step by step, then one answering 5xx rolled back\n", flush=True)
    good, live = _good_version()
    print(f"live color {live}; steps {STEPS}, {STEP_INTERVAL}s each, {RATE} requests/s through HAProxy\n")
    plan, _ = salt_run("hx_deploy.plan", "app=demo", f"version={good}", "strategy=canary", f"steps={STEPS}",
                       f"step_interval={STEP_INTERVAL}", "sample_interval=1")
    for line in plan.get("steps") or [plan.get("comment")]:
        print(f"  {line}")
    ret, result = _canary(good, "good release")
    if ret.get("outcome") != "succeeded" or result["failed"]:
        raise SystemExit("demo: the good release was not promoted cleanly")
    ret, result = _canary(BAD, "release answering 20 % 5xx")
    if ret.get("outcome") != "rolled_back" or len(ret.get("steps") or []) != 1:
        raise SystemExit("demo: the 5xx release was not rolled back at its first step")
    print(f"  rolled back at step 1 ({ret['steps'][0]['percent']}%): "
          f"only {result['failed']} of {result['total']} requests failed")
    history, progress = salt_run("hx_deploy.history", "app=demo", "limit=3")
    for line in progress:
        print(line)
    return history


if __name__ == "__main__":
    step_canary()
