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
import time
import urllib.request

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


def show_progress(argv):
    """Run a runner and print only the text it shows while running (its table)."""
    res = run(argv + ["--out=json"], show=False, check=False)
    for doc in _json_documents(res.stdout):
        if isinstance(doc, dict) and doc.get("suffix") == "progress":
            print(doc["event"]["message"])


def _salt_json(argv):
    static = ["--static"] if argv[0] == "lab/salt" else []
    res = run(argv + ["--out=json"] + static, show=False, check=False)
    # salt-run prints its progress events before the return: keep the return.
    docs = [d for d in _json_documents(res.stdout) if not (isinstance(d, dict) and d.get("suffix") == "progress")]
    if not docs:
        sys.stdout.write(res.stdout + res.stderr)
        raise SystemExit(f"demo: `{' '.join(argv)}` gave no JSON")
    return docs[-1]


def _slot(live):
    return f"demo-{live}", f"http://{lab.APP_HOSTS['app1']}:{lab.SLOT_PORTS[live]}/health"


def _wait(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out after {timeout}s waiting for {what}")


def _health_pid(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return json.loads(resp.read()).get("pid")
    except (OSError, ValueError):
        return None


def _receiver_lines():
    path = os.path.join(lab.LAB, "receiver.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _describe_post(post):
    body = post["body"]
    if post["path"].startswith("/pagerduty"):
        return f"PagerDuty {body.get('event_action')} dedup_key={body.get('dedup_key')}"
    if post["path"].startswith("/alertmanager"):
        alert = body[0] if isinstance(body, list) and body else {}
        return f"Alertmanager {alert.get('labels', {}).get('alertname')} endsAt={alert.get('endsAt')}"
    return f"Slack: {str(body.get('text', ''))[:90]}"


def step_incident():
    live, _ = _live_version()
    service, url = _slot(live)
    banner(f"3. Incident response: SIGKILL {service} (the live color) on app1; no command after that")
    before = {i["id"] for i in _salt_json(["lab/salt-run", "hx_incident.list"]).get("incidents", [])}
    posts_before = len(_receiver_lines())
    pid = _health_pid(url)
    if not pid:
        raise SystemExit(f"demo: {service} on app1 does not answer {url}")
    print(f"{service} on app1 runs as pid {pid}; sending SIGKILL at {time.strftime('%H:%M:%S')}")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # 90 s: a reaction lost on the way is retried by the beacon's 60 s repeat.
    try:
        _wait(f"{service} healthy again", lambda: (_health_pid(url) or pid) != pid, 90)
    except SystemExit:
        print(f"NOT REMEDIATED within 90 s. Look at: lab/salt-run hx_remediate.status; "
              f"{lab.LAB}/logs/master.log (hx_remediate lines); lab/salt app1 beacons.list")
        raise
    healthy = time.monotonic() - killed
    print(f"healthy again (new pid {_health_pid(url)}) {healthy:.1f}s after the kill: "
          "beacon -> reactor -> hx_remediate.handle -> hx_service.recover")

    def resolved():
        for inc in _salt_json(["lab/salt-run", "hx_incident.list", "minion=app1"]).get("incidents", []):
            if inc["id"] not in before and inc.get("status") == "resolved":
                return inc
        return None

    inc = _wait("the incident to be resolved", resolved, 90)
    full = _salt_json(["lab/salt-run", "hx_incident.show", inc["id"]]).get("incident") or {}
    print(f"\nincident {full.get('id')} [{full.get('priority')}] {full.get('status')}: {full.get('summary')}")
    opened = full.get("first_bad_at") or full.get("opened_at") or 0
    for entry in full.get("timeline", []):
        print(f"  +{entry['t'] - opened:6.2f}s  {entry['kind']:<13} {entry.get('text', '')[:110]}")
    _wait("the resolve notification", lambda: any(
        p["path"].startswith("/pagerduty") and p["body"].get("event_action") == "resolve"
        for p in _receiver_lines()[posts_before:]), 30)
    print("\nnotifications received by the lab's webhook receiver:")
    for post in _receiver_lines()[posts_before:]:
        print(f"  {_describe_post(post)}")
    print(f"\ntime from kill to healthy: {healthy:.1f}s (beacon checks every second, 2 cycles of hysteresis)")


def step_recover():
    live, _ = _live_version()
    service, _url = _slot(live)
    banner(f"4. Manual recovery: automatic remediation switched off, SIGKILL {service}, hx_service.recover by hand")
    before = {i["id"] for i in _salt_json(["lab/salt-run", "hx_incident.list"]).get("incidents", [])}
    run(["lab/salt-run", "hx_remediate.disable", "reason=demo: manual recovery"], show=False)
    try:
        status = _salt_json(["lab/salt", "app1", "hx_service.status", service])["app1"][service]
        pid = status.get("pid")
        if not pid:
            raise SystemExit(f"demo: {service} is not running on app1: {status}")
        print(f"{service} on app1 runs as pid {pid}; sending SIGKILL")
        os.kill(pid, signal.SIGKILL)
        ret = _salt_json(["lab/salt", "app1", "hx_service.recover", service])["app1"]
        if not isinstance(ret, dict) or ret.get("outcome") != "recovered":
            raise SystemExit(f"demo: recovery did not succeed: {ret}")
        after = _salt_json(["lab/salt", "app1", "hx_service.status", service])["app1"][service]
        print(
            f"outcome: {ret['outcome']} after {ret['attempts']} attempt(s); "
            f"time to recover: {ret['time_to_recover_ms']} ms; new pid {after.get('pid')}; "
            f"budget left: {ret['budget']['remaining']} of {ret['budget']['max']} per {ret['budget']['window']} s"
        )
    finally:
        run(["lab/salt-run", "hx_remediate.enable"], show=False, check=False)
    # If the beacon saw the outage before the manual fix, the incident it
    # opened was escalated (nothing was allowed to act): close it as a person would.
    for inc in _salt_json(["lab/salt-run", "hx_incident.list", "minion=app1"]).get("incidents", []):
        if inc["id"] not in before and inc.get("status") not in ("resolved",):
            run(["lab/salt-run", "hx_incident.ack", inc["id"], "by=demo"], show=False, check=False)
            run(["lab/salt-run", "hx_incident.resolve", inc["id"], "by=demo", "note=recovered by hand"],
                show=False, check=False)
            print(f"incident {inc['id']} (opened while remediation was off) acknowledged and resolved by hand")


def _live_version():
    status = _salt_json(["lab/salt-run", "hx_deploy.status", "app=demo"])
    live = status.get("live")
    versions = {(slots.get(live) or {}).get("running") for slots in (status.get("versions") or {}).values()}
    return live, versions


def _deploy_under_load(version, label):
    from loadgen import LoadGen  # pylint: disable=import-outside-toplevel

    load = LoadGen(f"http://{lab.FRONTEND}/", rate=100, threads=4, timeout=5).start()
    started = time.monotonic()
    res = run(["lab/salt-run", "hx_deploy.blue_green", "app=demo", f"version={version}", "bake=8", "--out=json"],
              show=False, check=False)
    took = time.monotonic() - started
    result = load.stop()
    ret = next((d for d in _json_documents(res.stdout) if isinstance(d, dict) and "outcome" in d), None)
    if ret is None:
        sys.stdout.write(res.stdout + res.stderr)
        raise SystemExit(f"demo: hx_deploy.blue_green {version} returned nothing")
    print(
        f"{label}: {version} -> {ret['outcome']} in {took:.1f}s; "
        f"requests sent {result['total']}, failed {result['failed']}; "
        f"versions served {result['versions']}"
    )
    if ret.get("reason"):
        print(f"   reason: {ret['reason'][:300]}")
    return ret, result


def step_blue_green():
    banner("5. Blue-green: deploy a new version under steady load, then a broken one")
    live, versions = _live_version()
    print(f"live color {live}, running {', '.join(sorted(v for v in versions if v))}")
    good = "1.2.0" if "1.1.0" in versions else "1.1.0"
    ret, result = _deploy_under_load(good, "good release")
    if ret["outcome"] != "succeeded" or result["failed"]:
        raise SystemExit("demo: the good release did not deploy cleanly")
    ret, result = _deploy_under_load("2.0.0-bad", "release failing /health")
    if ret["outcome"] != "failed" or result["failed"] or "2.0.0-bad" in result["versions"]:
        raise SystemExit("demo: the broken release was not stopped before traffic moved")
    ret, result = _deploy_under_load("2.1.0-5xx", "release answering 30 % 5xx")
    if ret["outcome"] != "rolled_back":
        raise SystemExit("demo: the 5xx release was not rolled back during bake")
    show_progress(["lab/salt-run", "hx_deploy.history", "app=demo", "limit=4"])


def step_next():
    banner("Go on by hand")
    print(
        "  lab/salt '*' hx_health.check          # every check on every minion\n"
        "  lab/salt app1 hx_health.sla           # availability from the recorded samples\n"
        "  lab/salt app1 hx_health.forecast      # when will a disk fill up?\n"
        "  lab/salt-run hx_report.health         # the fleet table again\n"
        "  lab/salt app1 hx_service.discover     # managed services: state, pid, uptime, health\n"
        "  lab/salt-run hx_incident.list                              # incidents, P1 first\n"
        "  lab/salt-run hx_incident.report <INC-id>                   # the postmortem draft\n"
        "  lab/salt-run hx_deploy.status app=demo                     # live color, weights, versions\n"
        "  lab/salt-run hx_deploy.plan app=demo version=1.2.0         # what a deployment would do\n"
        "  lab/salt-run hx_deploy.rollback app=demo                   # back to the previous version\n"
        "  lab/salt-run state.orchestrate orch.blue_green pillar='{\"app\": \"demo\", \"version\": \"1.1.0\"}'\n"
        "  lab/salt-run hx_maint.plan tgt='app*' batch=1              # a rolling maintenance run, planned\n"
        "  make lab-status                       # what runs where (also .lab/lab.json)\n"
        "  make lab-down                         # stop everything and remove .lab/\n"
    )


def _later_steps():
    # demo_maint imports this module: import it once this one is loaded.
    from demo_canary import step_canary  # pylint: disable=import-outside-toplevel
    from demo_maint import step_maintenance  # pylint: disable=import-outside-toplevel

    return [step_canary, step_maintenance]


STEPS = [step_lab, step_health, step_incident, step_recover, step_blue_green]


def main():
    for step in STEPS + _later_steps() + [step_next]:
        step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
