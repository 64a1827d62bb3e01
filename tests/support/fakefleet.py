"""The ``hx_deploy`` runner against an in-memory fleet, without a master.

``load_runner(tmp)`` executes ``_runners/hx_deploy.py`` as Salt would load
it (``__opts__``, ``__context__``) with the salt.cache store in ``tmp``;
``FakeFleet`` answers ``hx_fleet.call`` for two app hosts and one load
balancer: weights, slots and HAProxy counters kept in memory, every call
recorded, and ``on(fun, hook)`` runs ``hook(call_number)`` before a
function answers (to send a signal at an exact point, for instance).
Used where a decision of the runner needs exact timing that real daemons
cannot give (a signal inside a weight change); every capability is also
proven through the real master in tests/integration.
"""
import importlib.util
import os

import salt.config

from tests.integration.conftest import REPO

HOSTS = ("app1", "app2")
LB = "lb1"
COLORS = ("blue", "green")


def app_pillar(**deploy):
    settings = {"bake": 2, "bake_interval": 0.5, "verify_timeout": 2, "min_requests": 0, "keep_warm": 600}
    settings.update(deploy)
    return {
        "hosts": {h: f"10.0.0.{n}" for n, h in enumerate(HOSTS, 1)},
        "lbs": [LB],
        "slots": {"blue": {"port": 8080, "service": "demo-blue"}, "green": {"port": 8081, "service": "demo-green"}},
        "source": "http://releases/demo-{version}.tar.gz",
        "deploy": settings,
        "canary": {"step_interval": 1, "sample_interval": 0.5, "min_requests": 0},
    }


class FakeFleet:
    def __init__(self, live="blue", version="1.0.0"):
        self.weights = {f"{h}_{c}": (100 if c == live else 0) for h in HOSTS for c in COLORS}
        self.counters = {server: 0 for server in self.weights}
        self.slots = {
            h: {c: ({"running": version, "link": version, "health": "ok", "state": "running"} if c == live
                    else {"running": None, "link": None, "health": None, "state": "stopped"}) for c in COLORS}
            for h in HOSTS
        }
        self.calls = []
        self.hooks = {}

    def on(self, fun, hook):
        self.hooks[fun] = hook

    def count(self, fun):
        return sum(1 for f, _a, _k in self.calls if f == fun)

    def call(self, opts, tgt, fun, arg=(), kwarg=None, tgt_type="glob", timeout=30):  # pylint: disable=unused-argument
        tgt = list(tgt) if isinstance(tgt, (list, tuple)) else [tgt]
        self.calls.append((fun, list(arg), dict(kwarg or {})))
        if fun in self.hooks:
            self.hooks[fun](self.count(fun))
        returns = {mid: {"ret": self._answer(mid, fun, list(arg), dict(kwarg or {})), "retcode": 0} for mid in tgt}
        return {"expected": sorted(tgt), "returns": returns, "missing": []}

    def _answer(self, mid, fun, arg, kwarg):
        if fun == "test.ping":
            return True
        if fun == "hx_traffic.servers":
            return {arg[0]: {s: {"weight": w, "status": "UP"} for s, w in self.weights.items()}}
        if fun == "hx_traffic.weights":
            self.weights.update(arg[1])
            return {"changed": arg[1]}
        if fun == "hx_traffic.plan":
            return {"changes": arg[1]}
        if fun == "hx_traffic.stats":
            # Every reading: 100 more requests shared by weight, all 2xx, 1 ms.
            total = sum(self.weights.values()) or 1
            for server, weight in self.weights.items():
                self.counters[server] += round(100 * weight / total)
            return {arg[0]: {"servers": {s: {"hrsp_2xx": n, "req_tot": n, "rtime": 1}
                                         for s, n in self.counters.items()}}}
        if fun == "hx_release.versions":
            return {"slots": self.slots[mid]}
        if fun in ("hx_release.install", "hx_release.activate"):
            self.slots[mid][kwarg["slot"]] = {"running": kwarg["version"], "link": kwarg["version"], "health": "ok",
                                             "state": "running"}
            return {"result": True}
        if fun in ("hx_service.stop", "hx_service.start"):
            color = arg[0].rsplit("-", 1)[-1]
            self.slots[mid][color]["state"] = "stopped" if fun.endswith("stop") else "running"
            return {"result": True}
        raise AssertionError(f"the fake fleet has no {fun}")

    def live(self):
        up = {s.rsplit("_", 1)[-1] for s, w in self.weights.items() if w > 0}
        return up.pop() if len(up) == 1 else sorted(up)


def load_any_runner(tmp, name, call, monkeypatch):
    """``_runners/<name>.py`` loaded with its dunders (salt.cache and audit log in ``tmp``, the master
    config file ``tmp/master``), ``call`` for every minion call. Fired events go to ``events``."""
    opts = salt.config.master_config(None)
    opts.update(id="fake-master", cachedir=str(tmp / "cache"), sock_dir=str(tmp / "sock"), cache="localfs",
                hx_audit_log=str(tmp / "audit.log"), conf_file=str(tmp / "master"))
    os.makedirs(opts["cachedir"], exist_ok=True)
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", os.path.join(REPO, "_runners", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.__opts__ = opts
    mod.__context__ = {}
    mod.events = []
    if hasattr(mod, "hx_events"):
        monkeypatch.setattr(mod.hx_events, "fire", lambda _opts, tag, data: mod.events.append((tag, data)))
    if hasattr(mod, "hx_fleet"):
        monkeypatch.setattr(mod.hx_fleet, "call", call)
    return mod


def load_runner(tmp, fleet, apps, monkeypatch):
    """``_runners/hx_deploy.py`` loaded with its dunders, ``fleet`` for every minion call, ``apps`` as pillar.

    The fired events are kept in the returned module's ``events``.
    """
    mod = load_any_runner(tmp, "hx_deploy", fleet.call, monkeypatch)
    monkeypatch.setattr(mod, "_apps", lambda: apps)
    return mod
