#!/usr/bin/env python3
"""The hx-ops local lab: a real salt-master and minions on loopback, under .lab/.

    lab.py up       start the lab (harmless when it already runs)
    lab.py down     stop everything the lab started and remove .lab/
    lab.py status   show what runs and where; also written to .lab/lab.json

Every daemon runs under one "keeper" supervisord owned by the lab. The keeper
reaps its children, which matters where PID 1 does not reap orphans: a salt
daemon started with -d and later killed would stay behind as a zombie there.
"""
import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A second lab (benchmarks with more app hosts) lives in another folder.
LAB = os.path.abspath(os.environ.get("HX_LAB_DIR") or os.path.join(REPO, ".lab"))
APP_HOST_COUNT = int(os.environ.get("HX_LAB_APP_HOSTS") or 2)
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
STATE = os.path.join(LAB, "lab.json")
KEEPER_CONF = os.path.join(LAB, "keeper", "supervisord.conf")
MINIONS = {"lb1": {"hx_roles": ["lb"]}}
MINIONS.update({f"app{n}": {"hx_roles": ["app"]} for n in range(1, APP_HOST_COUNT + 1)})
INSTALL_PLACEHOLDER = "/srv/hx-ops"
# Every host gets its own loopback address, so each can serve on the ports a
# real host uses (blue 8080, green 8081) on one machine.
LB_ADDR = "127.0.0.10"
APP_HOSTS = {f"app{n}": f"127.0.0.{10 + n}" for n in range(1, APP_HOST_COUNT + 1)}
FRONTEND = f"{LB_ADDR}:8000"
SLOT_PORTS = {"blue": 8080, "green": 8081}
# Versions built into .lab/artifacts at lab-up; knobs make the broken ones.
RELEASES = {
    "1.0.0": [],
    "1.1.0": [],
    "1.2.0": [],
    "2.0.0-bad": ["--health-fail"],
    "2.1.0-5xx": ["--error-rate", "0.3"],
    "2.2.0-5xx20": ["--error-rate", "0.2"],
    "2.3.0-slow": ["--slow-ms", "60"],
}
FIRST_VERSION = "1.0.0"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def _yaml(path, data):
    _write(path, yaml.safe_dump(data, default_flow_style=False, sort_keys=False))


def _render_install_conf(name):
    """The lab uses the same snippets an operator installs, pointed at this checkout."""
    with open(os.path.join(REPO, "conf", name), encoding="utf-8") as fh:
        return fh.read().replace(INSTALL_PLACEHOLDER, REPO)


def _host_dir(mid):
    return os.path.join(LAB, "hosts", mid)


def _apps_pillar():
    """hx:apps:demo as the master and every minion see it."""
    return {
        "demo": {
            "hosts": dict(APP_HOSTS),
            "lbs": ["lb1"],
            "backend": "demo",
            "frontend": {"bind": FRONTEND},
            "slots": {c: {"port": p, "service": f"demo-{c}"} for c, p in SLOT_PORTS.items()},
            "source": "salt://releases/demo-{version}.tar.gz",
            "keep": 5,
            "deploy": {"bake": 20, "bake_interval": 2, "keep_warm": 600},
        }
    }


def _common_checks(ports):
    return [
        {"name": "system", "kind": "system"},
        {"name": "salt_master", "kind": "tcp", "host": "127.0.0.1", "port": ports["ret_port"], "timeout": 2},
    ]


def _supervisor_pillar(mid):
    return {
        "conf": os.path.join(_host_dir(mid), "supervisord.conf"),
        "bin_env": os.path.dirname(VENV_BIN),
        # salt://hx/app writes the app slots' programs here.
        "include_dir": os.path.join(_host_dir(mid), "conf.d"),
        "log_dir": _host_dir(mid),
    }


def _app_pillar(mid, ports):
    """An app host: its supervisord, the two slots of the demo app and their checks."""
    addr = APP_HOSTS[mid]
    services, checks = {}, _common_checks(ports)
    for color, port in SLOT_PORTS.items():
        services[f"demo-{color}"] = {
            "provider": "supervisord",
            "health": [f"demo_{color}"],
            "stop_timeout": 10,
            # A release that never turns healthy fails its install in 15 s.
            "start_timeout": 15,
        }
        # Either color is idle (stopped) half the time: checked by name only.
        checks.append(
            {"name": f"demo_{color}", "kind": "http", "url": f"http://{addr}:{port}/health", "timeout": 2,
             "on_demand": True}
        )
    return {
        # The health beacon watches what should be up (the live color) and the
        # reactor hands every transition to hx_remediate.handle.
        "beacons": {"hx_health": [{"for_cycles": 2}]},
        "hx": {
            "role": "app",
            "supervisord": _supervisor_pillar(mid),
            "services": services,
            "apps": {
                "demo": {
                    "address": addr,
                    "root": os.path.join(_host_dir(mid), "apps"),
                    "run": f"{sys.executable} {{slot_dir}}/app.py --release-dir {{slot_dir}} --bind {{address}}"
                    f" --port {{port}} --control {_host_dir(mid)}/{{app}}-{{color}}.control.json",
                }
            },
            # Pillar lists replace each other when merged: repeat the common checks.
            "health": {"checks": checks, "thresholds": LAB_THRESHOLDS},
            # Rolling maintenance (hx_maint.run): patching is limited to a package
            # that does not exist, so the lab never upgrades this machine.
            "maintenance": {
                "backup": {"path": os.path.join(LAB, "backups", mid), "pattern": "*.tar.gz", "max_age_hours": 24},
                "stop_services": ["demo-blue", "demo-green"],
                "health_checks": ["salt_master"],
                "app_logs": [os.path.join(_host_dir(mid), f"demo-{c}.log") for c in SLOT_PORTS],
                "cleanup": {"tmp_dirs": [os.path.join(_host_dir(mid), "tmp")], "max_age_days": 7, "pkg_cache": False},
                "patch": {"pkgs": ["hx-ops-lab-none"], "refresh": False},
            },
        }
    }


def _lb_pillar(mid, ports):
    hdir = _host_dir(mid)
    return {
        "hx": {
            "supervisord": _supervisor_pillar(mid),
            "services": {"haproxy": {"provider": "supervisord", "stop_timeout": 10}},
            "traffic": {
                "driver": "haproxy",
                "haproxy": {
                    "socket": os.path.join(hdir, "haproxy", "admin.sock"),
                    "master_socket": os.path.join(hdir, "haproxy", "master.sock"),
                    "config": os.path.join(hdir, "haproxy", "haproxy.cfg"),
                    "state_file": os.path.join(hdir, "haproxy", "server-state"),
                    "pidfile": os.path.join(hdir, "haproxy", "haproxy.pid"),
                    "binary": shutil.which("haproxy") or "/usr/sbin/haproxy",
                },
            },
            "health": {
                "checks": _common_checks(ports)
                + [{"name": "demo_frontend", "kind": "http", "url": f"http://{FRONTEND}/health", "timeout": 2}],
                "thresholds": LAB_THRESHOLDS,
            },
        }
    }


def _supervisord_conf(mid, programs):
    """A host's own supervisord: the process manager hx_service drives there.

    autorestart is off on purpose: recovery is hx_service.recover's job (with
    its budget and health verification), not a blind respawn; one hx restart
    is one spawn (startretries=0). stopwaitsecs is at least the service's
    stop_timeout so hx, not supervisord, decides when to kill.
    """
    hdir = _host_dir(mid)
    lines = [
        "[unix_http_server]",
        f"file={hdir}/supervisor.sock",
        "[supervisord]",
        f"logfile={hdir}/supervisord.log",
        f"pidfile={hdir}/supervisord.pid",
        f"childlogdir={hdir}",
        "nodaemon=true",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{hdir}/supervisor.sock",
        "[include]",
        f"files={hdir}/conf.d/*.conf",
    ]
    for name, command in programs.items():
        lines += [
            f"[program:{name}]",
            f"command={command}",
            "autostart=false",
            "autorestart=false",
            "startretries=0",
            "startsecs=1",
            "stopwaitsecs=15",
            f"stdout_logfile={hdir}/{name}.log",
            "redirect_stderr=true",
        ]
    return "\n".join(lines) + "\n"


def _lb_programs(mid):
    hap = _lb_pillar(mid, {"ret_port": 0})["hx"]["traffic"]["haproxy"]
    return {
        "haproxy": f"{hap['binary']} -W -db -f {hap['config']} -p {hap['pidfile']} -S {hap['master_socket']},mode,600"
    }


def _incident_settings(ports):
    url = f"http://127.0.0.1:{ports['receiver_port']}"
    return {
        "hx_incident": {
            "escalation_timeout": 120,
            "channels": {
                "pd": {"kind": "pagerduty", "routing_key": "lab-routing-key", "url": f"{url}/pagerduty"},
                "slack": {"kind": "slack", "url": f"{url}/slack"},
                "am": {"kind": "alertmanager", "url": f"{url}/alertmanager"},
            },
            "levels": [
                {"name": "L1", "notify": ["pd", "slack"], "contacts": ["team lead"]},
                {"name": "L2", "notify": ["pd", "slack"], "contacts": ["engineering manager"]},
                {"name": "L3", "notify": ["slack"], "contacts": ["executives"]},
            ],
            "on_open": ["pd", "am", "slack"],
            "delivery": {"timeout": 2, "retries": 2, "backoff": 0.2},
        }
    }


# The lab packs a dozen daemons onto a small machine: CPU and load thresholds
# are raised so they report real trouble, not the lab's own busyness.
LAB_THRESHOLDS = {"cpu": {"warning": 90, "critical": 98}, "load": {"warning": 12, "critical": 24}}


def _lab_pillar(ports):
    return {
        "hx": {
            "apps": _apps_pillar(),
            "health": {"checks": _common_checks(ports), "thresholds": LAB_THRESHOLDS},
        }
    }


def build_releases():
    out = os.path.join(LAB, "artifacts", "releases")
    for version, flags in RELEASES.items():
        subprocess.run(
            [sys.executable, os.path.join(REPO, "lab", "build_release.py"), version, "--out", out, *flags],
            check=True,
            capture_output=True,
            timeout=60,
        )


def configure(ports):
    user = getpass.getuser()
    logs = os.path.join(LAB, "logs")
    os.makedirs(logs, exist_ok=True)
    master_dir = os.path.join(LAB, "master")
    _yaml(
        os.path.join(master_dir, "master"),
        {
            "id": "lab-master",
            "root_dir": master_dir,
            "user": user,
            "interface": "127.0.0.1",
            "publish_port": ports["publish_port"],
            "ret_port": ports["ret_port"],
            "auto_accept": True,
            "worker_threads": 4,
            "log_file": os.path.join(master_dir, "master.log"),
            "log_level_logfile": "info",
            "default_include": "master.d/*.conf",
        },
    )
    _write(os.path.join(master_dir, "master.d", "hx.conf"), _render_install_conf("master.d/hx.conf"))
    # Master-only incident settings (channels are secrets: never in pillar).
    _yaml(os.path.join(master_dir, "hx_ops.yaml"), _incident_settings(ports))
    # Sorted after hx.conf, so the lab's own pillar root comes first.
    # Sorted after hx.conf: the lab's own pillar root comes first, and release
    # artifacts are served as salt://releases/.
    _yaml(
        os.path.join(master_dir, "master.d", "lab.conf"),
        {
            "pillar_roots": {"base": [os.path.join(LAB, "pillar"), os.path.join(REPO, "pillar")]},
            "file_roots": {"base": [os.path.join(REPO, "salt"), os.path.join(LAB, "artifacts")]},
        },
    )
    top = {"*": ["lab"]}
    _yaml(os.path.join(LAB, "pillar", "lab.sls"), _lab_pillar(ports))
    # App hosts start with no program: salt://hx/app adds the slots.
    hosts = {mid: (_app_pillar, lambda _mid: {}) for mid in APP_HOSTS}
    hosts["lb1"] = (_lb_pillar, _lb_programs)
    for mid, (pillar, programs) in hosts.items():
        top[mid] = [f"lab_{mid}"]
        _yaml(os.path.join(LAB, "pillar", f"lab_{mid}.sls"), pillar(mid, ports))
        _write(os.path.join(_host_dir(mid), "supervisord.conf"), _supervisord_conf(mid, programs(mid)))
    _yaml(os.path.join(LAB, "pillar", "top.sls"), {"base": top})
    for mid, grains in MINIONS.items():
        mdir = os.path.join(LAB, "minions", mid)
        _yaml(
            os.path.join(mdir, "minion"),
            {
                "id": mid,
                "root_dir": mdir,
                "user": user,
                "master": "127.0.0.1",
                "master_port": ports["ret_port"],
                "publish_port": ports["publish_port"],
                "acceptance_wait_time": 1,
                "random_reauth_delay": 0,
                "log_file": os.path.join(mdir, "minion.log"),
                "log_level_logfile": "info",
                "grains": grains,
                "default_include": "minion.d/*.conf",
            },
        )
        _write(os.path.join(mdir, "minion.d", "hx.conf"), _render_install_conf("minion.d/hx.conf"))
    # Salt keeps a log_file inside root_dir; .lab/logs links to each one.
    os.symlink(os.path.join(master_dir, "master.log"), os.path.join(logs, "master.log"))
    for mid in MINIONS:
        os.symlink(os.path.join(LAB, "minions", mid, "minion.log"), os.path.join(logs, f"minion-{mid}.log"))
    programs = {"salt-master": [os.path.join(VENV_BIN, "salt-master"), "-c", master_dir, "-l", "quiet"]}
    for mid in MINIONS:
        programs[f"minion-{mid}"] = [
            os.path.join(VENV_BIN, "salt-minion"),
            "-c",
            os.path.join(LAB, "minions", mid),
            "-l",
            "quiet",
        ]
    # Where incident notifications go in the lab (Slack/PagerDuty/Alertmanager formats).
    programs["receiver"] = [
        sys.executable, "-m", "tests.support.webhook", "--port", str(ports["receiver_port"]),
        "--log", os.path.join(LAB, "receiver.jsonl"),
    ]
    for mid in list(APP_HOSTS) + ["lb1"]:
        programs[f"supervisord-{mid}"] = [
            sys.executable,
            "-m",
            "supervisor.supervisord",
            "-c",
            os.path.join(_host_dir(mid), "supervisord.conf"),
        ]
    keeper_dir = os.path.dirname(KEEPER_CONF)
    lines = [
        "[unix_http_server]",
        f"file={keeper_dir}/supervisor.sock",
        "[supervisord]",
        f"logfile={logs}/keeper.log",
        f"pidfile={keeper_dir}/supervisord.pid",
        f"childlogdir={logs}",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]",
        f"serverurl=unix://{keeper_dir}/supervisor.sock",
    ]
    for name, argv in programs.items():
        lines += [
            f"[program:{name}]",
            "command=" + " ".join(argv),
            f"directory={REPO}",
            "autorestart=true",
            "startsecs=1",
            "stopasgroup=true",
            "killasgroup=true",
            "stopwaitsecs=15",
            f"stdout_logfile={logs}/{name}.out",
            "redirect_stderr=true",
        ]
    _write(KEEPER_CONF, "\n".join(lines) + "\n")
    return programs


def _keeper_pid():
    try:
        with open(os.path.join(os.path.dirname(KEEPER_CONF), "supervisord.pid"), encoding="utf-8") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if KEEPER_CONF not in " ".join(proc.cmdline()):
            return None
    except psutil.Error:
        return None
    return pid


def _ctl(*args, check=True):
    return subprocess.run(
        [sys.executable, "-m", "supervisor.supervisorctl", "-c", KEEPER_CONF, *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def _salt(*args, timeout=60):
    cmd = [os.path.join(VENV_BIN, "salt"), "-c", os.path.join(LAB, "master"), "--out=json", "--static", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        return json.loads(res.stdout or "{}")
    except ValueError:
        return {}


def _wait(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise SystemExit(f"lab: timed out after {timeout}s waiting for {what}; see {LAB}/logs")


def up(_args):
    if _keeper_pid():
        print("lab: already up")
        return status(_args)
    if os.path.isdir(LAB):
        _sweep()  # a previous lab that died uncleanly
        shutil.rmtree(LAB)
    ports = {"publish_port": _free_port(), "ret_port": _free_port(), "receiver_port": _free_port()}
    configure(ports)
    build_releases()
    _write(os.path.join(LAB, "ports.json"), json.dumps(ports))
    # Run by path through the interpreter so even the keeper's own zombie, if
    # PID 1 never reaps it, is a "python" process rather than a daemon name.
    subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", KEEPER_CONF], check=True, timeout=30)
    _wait("the keeper", lambda: _keeper_pid() is not None, 20)
    print("lab: waiting for the master and minions to answer ...", flush=True)
    _wait("minions " + ", ".join(MINIONS), lambda: set(_salt("*", "test.ping", "-t", "5")) >= set(MINIONS), 120)
    print("lab: syncing hx-ops extensions to the minions and the master ...", flush=True)
    sync()
    bootstrap()
    return status(_args)


def bootstrap():
    """The app slots, the first release on blue of every app host, then HAProxy on lb1 (blue live)."""
    hosts = ",".join(APP_HOSTS)
    print(f"lab: applying hx.app on {', '.join(APP_HOSTS)} ...", flush=True)
    got = _salt("-L", hosts, "state.apply", "hx.app", timeout=180)
    failed = {m: [v.get("comment") for v in (r or {}).values() if isinstance(v, dict) and not v.get("result")]
              for m, r in got.items()} if isinstance(got, dict) else {}
    if set(got) < set(APP_HOSTS) or any(failed.values()) or any(not isinstance(r, dict) for r in got.values()):
        raise SystemExit(f"lab: state.apply hx.app failed: {json.dumps(got, indent=1)[:2000]}")
    print(f"lab: installing demo {FIRST_VERSION} into blue on {', '.join(APP_HOSTS)} ...", flush=True)
    got = _salt("-L", hosts, "hx_release.install", "app=demo", f"version={FIRST_VERSION}", "slot=blue", timeout=180)
    bad = {m: r for m, r in got.items() if not isinstance(r, dict)} if set(got) >= set(APP_HOSTS) else got
    if bad or set(got) < set(APP_HOSTS):
        raise SystemExit(f"lab: hx_release.install failed: {json.dumps(got, indent=1)[:2000]}")
    print("lab: applying hx.haproxy on lb1 ...", flush=True)
    got = _salt("lb1", "state.apply", "hx.haproxy", timeout=180).get("lb1")
    failed = [v.get("comment") for v in (got or {}).values() if isinstance(v, dict) and not v.get("result")]
    if not isinstance(got, dict) or failed:
        raise SystemExit(f"lab: state.apply hx.haproxy on lb1 failed: {failed or got}")


def sync():
    """The master's runners first, then the minions (docs/install.md says why)."""
    # A minion's first synced beacon event reaches the reactor at once, and the
    # reactor keeps the runner client it builds for it (reactor_refresh_interval,
    # 60 s): built before hx_remediate is on the master, it drops every reaction
    # for that minute.
    res = subprocess.run(
        [os.path.join(VENV_BIN, "salt-run"), "-c", os.path.join(LAB, "master"), "--out=json", "saltutil.sync_all"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"lab: salt-run saltutil.sync_all failed:\n{res.stdout}{res.stderr}")
    synced = _salt("*", "saltutil.sync_all", "refresh=True", timeout=120)
    missing = set(MINIONS) - set(synced)
    if missing:
        raise SystemExit(f"lab: saltutil.sync_all got no answer from {', '.join(sorted(missing))}")


def _lab_processes():
    """Every live process whose command line points into this lab."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if LAB + os.sep in " ".join(proc.info["cmdline"] or []) + os.sep:
                found.append(proc)
        except psutil.Error:
            continue
    return [p for p in found if p.pid != os.getpid()]


def _sweep():
    procs = _lab_processes()
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def down(_args):
    pid = _keeper_pid()
    if pid:
        # `stop all` stops the daemons in parallel; `shutdown` alone goes one by one.
        _ctl("stop", "all", check=False)
        _ctl("shutdown", check=False)
        _wait("the keeper to exit", lambda: _keeper_pid() is None, 60)
    _sweep()
    left = _lab_processes()
    if left:
        raise SystemExit("lab: processes still running: " + ", ".join(str(p.pid) for p in left))
    if os.path.isdir(LAB):
        shutil.rmtree(LAB)
    print("lab: down, nothing left running")


def collect():
    info = {"up": False, "repo": REPO, "daemons": [], "urls": {}, "cli": {}}
    pid = _keeper_pid()
    if not pid:
        return info
    info["up"] = True
    with open(os.path.join(LAB, "ports.json"), encoding="utf-8") as fh:
        ports = json.load(fh)
    info["daemons"].append({"name": "keeper (supervisord)", "pid": pid, "state": "RUNNING"})
    out = _ctl("status", check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        entry = {"name": parts[0], "state": parts[1], "pid": None}
        if "pid" in parts:
            entry["pid"] = int(parts[parts.index("pid") + 1].rstrip(","))
        info["daemons"].append(entry)
    info["urls"] = {
        "salt master (publish)": f"tcp://127.0.0.1:{ports['publish_port']}",
        "salt master (return)": f"tcp://127.0.0.1:{ports['ret_port']}",
    }
    info["cli"] = {
        "salt": os.path.join(REPO, "lab", "salt"),
        "salt-run": os.path.join(REPO, "lab", "salt-run"),
        "salt-call": os.path.join(REPO, "lab", "salt-call"),
    }
    info["urls"]["demo app through HAProxy"] = f"http://{FRONTEND}/"
    info["urls"]["notification receiver"] = f"http://127.0.0.1:{ports['receiver_port']} (log: {LAB}/receiver.jsonl)"
    for mid, addr in APP_HOSTS.items():
        for color, port in SLOT_PORTS.items():
            info["urls"][f"demo on {mid} ({color})"] = f"http://{addr}:{port}/"
    info["minions"] = list(MINIONS)
    info["logs"] = os.path.join(LAB, "logs")
    return info


def status(_args):
    info = collect()
    if not info["up"]:
        print("lab: down (start it with `make lab-up`)")
        return 0
    _write(STATE, json.dumps(info, indent=2) + "\n")
    print(f"{'daemon':<24} {'state':<10} pid")
    for d in info["daemons"]:
        print(f"{d['name']:<24} {d['state']:<10} {d['pid'] or '-'}")
    print()
    for name, url in info["urls"].items():
        print(f"{name:<24} {url}")
    print(f"\nminions: {', '.join(info['minions'])}   logs: {info['logs']}   json: {STATE}")
    print("try:    lab/salt '*' hx_health.check   |   lab/salt-run hx_report.health")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "sync"])
    args = parser.parse_args()
    if args.command == "sync":
        return sync()
    return {"up": up, "down": down, "status": status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
