"""The deployment test fleet: two app hosts and a load balancer on loopback.

hx-m1 and hx-m2 are app hosts (127.0.0.21 / .22, each with its own
supervisord running demo-blue and demo-green from installed releases);
hx-m1 is also the load balancer (a real HAProxy child process driven
through hx_traffic). Release artifacts (VERSIONS, built by
lab/build_release.py) are served over http. Used by the blue-green and
canary integration tests and the canary benchmark::

    fl = Fleet(tmp, pillar_tree, salt_cli, salt_run_cli).start()
    load = fl.load(rate=300)
    fl.run.run("hx_deploy.canary", "app=demo", "version=1.1.0")
    load.stop(); fl.stop()
"""
import os
import subprocess
import sys
import time

from loadgen import LoadGen
from tests.integration.conftest import MASTER_ID, REPO
from tests.support import httpserver
from tests.support.haproxy import HAProxy
from tests.support.supervisor import Supervisor

HOSTS = {"hx-m1": "127.0.0.21", "hx-m2": "127.0.0.22"}
VERSIONS = {
    "1.0.0": [],
    "1.1.0": [],
    "1.2.0": [],
    "1.3.0": [],
    "2.0.0-bad": ["--health-fail"],
    "2.1.0-5xx": ["--error-rate", "0.3"],
    "2.2.0-5xx20": ["--error-rate", "0.2"],
    # 60 ms on every answer: well under any absolute limit, 30x the stable color.
    "2.3.0-slow": ["--slow-ms", "60"],
}
RATE = 150  # requests/s through HAProxy during deployments


class Fleet:
    def __init__(self, tmp, pillar_tree, salt_cli, salt_run_cli, runner_cli=None):
        self.tmp = tmp
        self.pillar_tree = pillar_tree
        self.salt_cli = salt_cli
        self.run = salt_run_cli  # what an operator types: deployments, refusals, exit codes
        self.read = runner_cli or salt_run_cli  # status and history reads, in-process when given
        self.ports = {"blue": httpserver.free_port(), "green": httpserver.free_port()}
        self.artifacts = tmp / "artifacts"
        self.static = None
        self.sups = {}
        self.hap = None
        self.canary = None  # hx:apps:demo:canary of the master's pillar, when set

    def app(self, canary=None, **deploy):
        settings = {"bake": 3, "bake_interval": 1, "verify_timeout": 20, "min_requests": 10, "keep_warm": 600}
        settings.update(deploy)
        out = {
            "hosts": dict(HOSTS),
            "lbs": ["hx-m1"],
            "backend": "demo",
            "slots": {c: {"port": p, "service": f"demo-{c}"} for c, p in self.ports.items()},
            "source": self.static.url + "/demo-{version}.tar.gz",
            "deploy": settings,
        }
        if canary is not None:
            out["canary"] = canary
        return out

    def minion_pillar(self, mid, traffic=None):
        addr = HOSTS[mid]
        data = {
            "hx": {
                "apps": {"demo": dict(self.app(), address=addr, root=str(self.tmp / mid / "apps"))},
                "supervisord": {"conf": self.sups[mid].conf, "bin_env": os.path.dirname(os.path.dirname(sys.executable))},
                "services": {
                    f"demo-{c}": {"provider": "supervisord", "health": [f"demo_{c}"], "start_timeout": 8}
                    for c in self.ports
                },
                "health": {
                    "checks": [
                        {"name": f"demo_{c}", "kind": "http", "url": f"http://{addr}:{p}/health", "timeout": 1}
                        for c, p in self.ports.items()
                    ]
                },
            }
        }
        if mid == "hx-m1":
            data["hx"].update(traffic or self.hap.pillar()["hx"])
        return data

    def set_pillar(self, master_app=None, traffic=None):
        pillars = {MASTER_ID: {"hx": {"apps": {"demo": master_app or self.app(canary=self.canary)}}}}
        for mid in HOSTS:
            pillars[mid] = self.minion_pillar(mid, traffic=traffic if mid == "hx-m1" else None)
        self.pillar_tree.set_many(pillars)

    def start(self):
        for version, flags in VERSIONS.items():
            subprocess.run(
                [sys.executable, os.path.join(REPO, "lab", "build_release.py"), version, "--out", str(self.artifacts), *flags],
                check=True,
                capture_output=True,
                timeout=60,
            )
        self.static = httpserver.StaticServer(self.artifacts).start()
        for mid, addr in HOSTS.items():
            root = self.tmp / mid / "apps" / "demo"
            programs = {
                f"demo-{c}": {
                    "command": f"{sys.executable} {root}/{c}/app.py --release-dir {root}/{c} --bind {addr} --port {p}",
                    "startretries": 0,
                    "stopwaitsecs": 15,
                }
                for c, p in self.ports.items()
            }
            sup_dir = self.tmp / mid / "supervisor"
            sup_dir.mkdir(parents=True)
            self.sups[mid] = Supervisor(sup_dir, programs).start()
        servers = {}
        for mid, addr in HOSTS.items():
            servers[f"{mid}_blue"] = (addr, self.ports["blue"], 100)
            servers[f"{mid}_green"] = (addr, self.ports["green"], 0)
        hap_dir = self.tmp / "haproxy"
        hap_dir.mkdir()
        # The formula's reload-safe defaults (salt/hx/haproxy/haproxy.cfg.jinja).
        self.hap = HAProxy(hap_dir, backends={"demo": servers}, extra_defaults=["option idle-close-on-response"]).start()
        self.set_pillar()
        installed = self.salt_cli.run_many("hx_release.install", "app=demo", "version=1.0.0", "slot=blue",
                                           minions=list(HOSTS), _timeout=120)
        for mid, ret in installed.items():
            assert ret.returncode == 0, (mid, ret)
        return self

    def stop(self):
        if self.hap:
            self.hap.stop()
        for sup in self.sups.values():
            sup.stop()
        if self.static:
            self.static.stop()

    # -- observations ---------------------------------------------------------
    def weights(self):
        ret = self.salt_cli.run("hx_traffic.servers", "demo", minion_tgt="hx-m1")
        return {s: row["weight"] for s, row in ret.data["demo"].items()}

    def live(self):
        weights = self.weights()
        live = {s.split("_")[-1] for s, w in weights.items() if w > 0}
        assert len(live) == 1, weights
        return live.pop()

    def deploy(self, version, *args):
        return self.run.run("hx_deploy.blue_green", "app=demo", f"version={version}", *args, _timeout=240)

    def load(self, rate=RATE, threads=4):
        return LoadGen(self.hap.url, rate=rate, threads=threads, timeout=5).start()

    def sample_versions(self, count=200):
        probe = LoadGen(self.hap.url, rate=0, threads=2, count=count, timeout=5).start()
        deadline = time.monotonic() + 30
        while probe.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        return probe.stop()
