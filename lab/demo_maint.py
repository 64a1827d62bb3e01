#!/usr/bin/env python3
"""Demo step: a rolling maintenance run over app1/app2 under steady traffic.

``step_maintenance()`` is meant for lab/demo.py's STEPS (after the lab is
up); ``python lab/demo_maint.py`` runs it alone against a running lab.

The run is an emergency run (``emergency=True``): the lab's clock is
whatever it is, and the demo must not wait for 02:00. Emergency is recorded
in the report (``window_respected: false``), which the demo prints.

Safety: hx_maint.run patches with ``hx_patch.apply``. The demo refuses to
start unless every app host's pillar limits patching to named packages
(``hx:maintenance:patch:pkgs``), so it never upgrades this machine's packages.
"""
import os
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import demo  # noqa: E402
import lab  # noqa: E402

HOSTS = sorted(lab.APP_HOSTS)
RATE = 100

PILLAR_HINT = """\
The lab pillar has no safe maintenance settings for {host}. Add to lab/lab.py
_app_pillar()["hx"] (then `make lab-down lab-up` or re-run the lab configure step):

    "maintenance": {{
        "backup": {{"path": os.path.join(LAB, "backups", mid), "pattern": "*.tar.gz", "max_age_hours": 24}},
        "stop_services": ["demo-blue", "demo-green"],
        "health_checks": ["salt_master"],
        "app_logs": [os.path.join(_host_dir(mid), f"demo-{{c}}.log") for c in SLOT_PORTS],
        "cleanup": {{"tmp_dirs": [os.path.join(_host_dir(mid), "tmp")], "max_age_days": 7, "pkg_cache": False}},
        "patch": {{"pkgs": ["hx-ops-lab-none"], "refresh": False}},
    }},
"""


def _settings():
    got = demo._salt_json(["lab/salt", "-L", ",".join(HOSTS), "pillar.get", "hx:maintenance", "unmask=True"])
    for host in HOSTS:
        cfg = got.get(host) or {}
        if not isinstance(cfg, dict) or not (cfg.get("patch") or {}).get("pkgs"):
            print(PILLAR_HINT.format(host=host))
            raise SystemExit(f"demo: {host}: hx:maintenance:patch:pkgs not set; not running a maintenance "
                             "that could upgrade this machine's packages")
    return got


def _backup(host, cfg):
    """A real (small) backup of the host's app releases where its pillar says backups live."""
    backup = cfg.get("backup") or {}
    if not backup.get("path"):
        print(f"{host}: no hx:maintenance:backup configured: the run will record backup_verified: false")
        return
    os.makedirs(backup["path"], exist_ok=True)
    path = os.path.join(backup["path"], time.strftime(f"{host}-%Y%m%dT%H%M%S.tar.gz", time.gmtime()))
    with tarfile.open(path, "w:gz") as tar:
        tar.add(os.path.join(lab.LAB, "hosts", host, "apps"), arcname=f"{host}/apps")
    print(f"{host}: backup written: {path}")


def step_maintenance():
    demo.banner("7. Rolling maintenance: app1 then app2 out of rotation, patched, verified, back; traffic never stops")
    from loadgen import LoadGen  # pylint: disable=import-outside-toplevel

    settings = _settings()
    for host in HOSTS:
        _backup(host, settings[host])
    print("emergency=True: the demo runs now instead of waiting for the maintenance window; "
          "the report records it (window_respected: false)\n")
    demo.show_progress(["lab/salt-run", "hx_maint.plan", "tgt=app*", "batch=1", "emergency=True"])
    load = LoadGen(f"http://{lab.FRONTEND}/", rate=RATE, threads=4, timeout=5).start()
    started = time.monotonic()
    res = demo.run(["lab/salt-run", "hx_maint.run", "tgt=app*", "batch=1", "emergency=True", "--out=json"],
                   show=False, check=False)
    took = time.monotonic() - started
    result = load.stop()
    docs = list(demo._json_documents(res.stdout))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("suffix") == "progress":
            print(doc["event"]["message"])
    ret = next((d for d in reversed(docs) if isinstance(d, dict) and "outcome" in d), None)
    if ret is None:
        sys.stdout.write(res.stdout + res.stderr)
        raise SystemExit("demo: hx_maint.run returned nothing")
    print(f"\nrun {ret['run']}: {ret['outcome']} in {took:.1f}s"
          + (f" ({ret['reason']})" if ret.get("reason") else ""))
    print(f"traffic through {lab.FRONTEND}: {result['total']} requests, {result['failed']} failed, "
          f"versions {result['versions']}")
    for host, row in sorted(ret["hosts"].items()):
        print(f"  {host}: {row.get('outcome')}" + (f" at {row['failed_step']}: {row['reason']}"
                                                   if row.get("failed_step") else ", back in rotation"))
    print("compliance: " + ", ".join(f"{k}={v}" for k, v in sorted(ret["compliance"].items())))
    print(f"report: {ret['report']['json']}")
    if ret["report"].get("csv"):
        with open(ret["report"]["csv"], encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        print(f"summary CSV {ret['report']['csv']} (last lines):")
        for line in [lines[0]] + lines[-len(ret["hosts"]):]:
            print("  " + line)
    if ret["outcome"] != "succeeded" or result["failed"]:
        raise SystemExit("demo: the maintenance run was not clean")


def main():
    step_maintenance()
    return 0


if __name__ == "__main__":
    sys.exit(main())
