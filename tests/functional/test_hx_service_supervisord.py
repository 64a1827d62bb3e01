"""hx_service against a REAL supervisord running the demo app (loader level).

supervisord runs as a child of this test (nodaemon, unix socket in tmp_path)
and is stopped and wait()ed at teardown, after its programs are killed, so
nothing is left for a non-reaping PID 1. Health is real too: each service's
``health`` names an ``hx_health`` http check against the demo app's /health.
"""

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError
from tests.support.wait import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = os.path.join(REPO, "lab", "demoapp", "app.py")
VENV = os.path.dirname(os.path.dirname(sys.executable))
SUPERVISORD = os.path.join(VENV, "bin", "supervisord")
SUPERVISORCTL = os.path.join(VENV, "bin", "supervisorctl")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


# program name -> extra demo-app args, supervisord overrides
PROGRAMS = {
    "svc-db": ([], {}),
    "svc-api": ([], {}),
    "svc-web": ([], {}),
    "demo-blue": ([], {}),
    "crashy": (["--crash-on-start"], {"startretries": "0"}),
    "stubborn": (["--ignore-sigterm"], {}),
}


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory):
    base = tmp_path_factory.mktemp("sv")
    ports = {name: free_port() for name in PROGRAMS}
    sock = base / "supervisor.sock"
    lines = [
        "[unix_http_server]", f"file={sock}",
        "[supervisord]", "nodaemon=true", f"logfile={base / 'supervisord.log'}",
        f"pidfile={base / 'supervisord.pid'}", "loglevel=info",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "[supervisorctl]", f"serverurl=unix://{sock}",
    ]
    for name, (args, extra) in PROGRAMS.items():
        opts = {
            "command": " ".join([sys.executable, APP, "--port", str(ports[name]), "--version", f"1.0-{name}",
                                 "--control", str(base / f"{name}.control.json")] + args),
            # hx, not supervisord, restarts hx-managed services: recovery must
            # be observable, and budgets must mean something.
            "autostart": "false",
            "autorestart": "false",
            "startsecs": "1",
            "startretries": "1",
            # >= every stop_timeout used here, so hx's timeout is authoritative.
            "stopwaitsecs": "60",
            "stdout_logfile": str(base / f"{name}.out"),
            "stderr_logfile": str(base / f"{name}.err"),
        }
        opts.update(extra)
        lines.append(f"[program:{name}]")
        lines.extend(f"{k}={v}" for k, v in opts.items())
    conf = base / "supervisord.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([SUPERVISORD, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl(*args):
        return subprocess.run([SUPERVISORCTL, "-c", str(conf), *args], capture_output=True, text=True, timeout=30)

    try:
        wait_for(lambda: ctl("status").returncode in (0, 3), 20, "supervisord to answer")
        yield {"conf": str(conf), "ports": ports, "ctl": ctl, "log": base / "supervisord.log", "base": base,
               "control": lambda name: base / f"{name}.control.json"}
    finally:
        # KILL the programs first (stubborn ignores TERM; stopwaitsecs is 60),
        # then let supervisord reap them and exit; wait() reaps supervisord.
        if proc.poll() is None:
            ctl("signal", "KILL", "all")
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def services_pillar(sv, **overrides):
    ports = sv["ports"]
    svcs = {
        "svc-db": {"health": ["svc-db-http"]},
        "svc-api": {"requires": ["svc-db"], "health": ["svc-api-http"]},
        "svc-web": {"requires": ["svc-api"], "health": ["svc-web-http"],
                    "traffic": {"backend": "web", "server": "web1"}},
        "demo-blue": {"health": ["demo-blue-http"], "stop_timeout": 5},
        "crashy": {"budget": {"max": 2, "window": 900}, "start_timeout": 5},
        "stubborn": {"stop_timeout": 1.5},
    }
    svcs.update(overrides)
    checks = [
        {"name": f"{name}-http", "kind": "http", "url": f"http://127.0.0.1:{ports[name]}/health", "timeout": 2}
        for name in ("svc-db", "svc-api", "svc-web", "demo-blue")
    ]
    return {
        "hx": {
            "supervisord": {"conf": sv["conf"], "bin_env": VENV},
            "services": svcs,
            "health": {"checks": checks},
        }
    }


@pytest.fixture(scope="module")
def base_opts(tmp_path_factory):
    opts = salt.config.minion_config(None)
    root = tmp_path_factory.mktemp("minion")
    opts.update(
        id="hx-test-minion",
        file_client="local",
        cachedir=str(root / "cache"),
        sock_dir=str(root / "sock"),
        pki_dir=str(root / "pki"),
        extension_modules=str(root / "extmods"),
        module_dirs=[os.path.join(REPO, "_modules")],
        states_dirs=[os.path.join(REPO, "_states")],
        utils_dirs=[os.path.join(REPO, "_utils")],
    )
    opts["grains"] = salt.loader.grains(opts)
    return opts


class Minion:
    """A fresh loader = what a minion has after a restart (only the cachedir persists)."""

    def __init__(self, opts, pillar, test=False):
        self.opts = copy.deepcopy(opts)
        self.opts["pillar"] = pillar
        self.opts["test"] = test
        self.utils = salt.loader.utils(self.opts)
        self.mods = salt.loader.minion_mods(self.opts, utils=self.utils, context={})
        self._states = None

    def __getattr__(self, fun):
        return lambda *a, **kw: self.mods[f"hx_service.{fun}"](*a, **kw)

    @property
    def states(self):
        if self._states is None:
            serializers = salt.loader.serializers(self.opts)
            self._states = salt.loader.states(self.opts, self.mods, self.utils, serializers)
        return self._states


@pytest.fixture
def minion(base_opts, supervisor, tmp_path):
    opts = dict(base_opts, cachedir=str(tmp_path / "cache"))
    stop_all(supervisor)
    return lambda pillar=None, **kw: Minion(opts, pillar or services_pillar(supervisor), **kw)


def stop_all(sv):
    # Each test starts from every program stopped (KILL: speed, not grace).
    sv["ctl"]("signal", "KILL", "all")
    wait_for(lambda: all(s not in sv["ctl"]("status").stdout for s in ("RUNNING", "STARTING", "STOPPING", "BACKOFF")),
             15, "all programs to stop")


def sv_states(sv, progs):
    return {p: sv_state(sv, p) for p in progs}


def sv_state(sv, prog):
    out = sv["ctl"]("status", prog).stdout.split()
    return out[1] if len(out) > 1 else None


def test_hx_service_module_loads(minion):
    m = minion()
    assert "hx_service.recover" in m.mods, m.mods.missing_fun_string("hx_service.recover")
    assert "hx_health.check" in m.mods


def test_kill9_then_recover_brings_it_back_healthy(minion, supervisor):
    m = minion()
    port = supervisor["ports"]["demo-blue"]
    started = m.start("demo-blue")
    assert started["services"]["demo-blue"]["healthy"] is True
    old_pid = started["services"]["demo-blue"]["pid"]
    assert http_health(port)["pid"] == old_pid

    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: sv_state(supervisor, "demo-blue") == "EXITED", 10, "supervisord to see the kill")
    assert http_health(port) is None

    res = m.recover("demo-blue")
    assert res["outcome"] == "recovered", res
    assert res["attempts"] == 1
    assert res["evidence"]["before"]["status"] == "critical"
    assert res["evidence"]["after"]["status"] == "ok"
    assert 0 < res["time_to_recover_ms"] < 30000
    new = http_health(port)
    assert new["status"] == "ok" and new["pid"] != old_pid
    assert m.status("demo-blue")["demo-blue"]["pid"] == new["pid"]
    print(f"kill -9 -> healthy again in {res['time_to_recover_ms']} ms")

    # Healthy now: no restart, budget untouched.
    again = m.recover("demo-blue")
    assert again["outcome"] == "already_healthy" and again["attempts"] == 0
    assert http_health(port)["pid"] == new["pid"]
    stored = json.load(open(os.path.join(m.opts["cachedir"], "hx", "recovery.json")))
    assert [a["outcome"] for a in stored["services"]["demo-blue"]["attempts"]] == ["recovered"]


def test_a_service_stopped_on_purpose_is_not_recovered_until_started(minion, supervisor):
    m = minion()
    port = supervisor["ports"]["demo-blue"]
    m.start("demo-blue")
    stopped = m.stop("demo-blue", owner="alice", reason="disk swap")
    assert stopped["intent"]["want"] == "down" and stopped["intent"]["owner"] == "alice"
    view = m.status("demo-blue")["demo-blue"]
    assert view["state"] == "stopped"
    assert (view["intent"]["want"], view["intent"]["owner"], view["intent"]["reason"]) == ("down", "alice", "disk swap")

    res = minion().recover("demo-blue")  # a restarted minion: the intent is on disk
    assert res["outcome"] == "intended_down" and res["attempts"] == 0, res
    assert res["comment"] == "stopped on purpose by alice (disk swap)"
    assert sv_state(supervisor, "demo-blue") == "STOPPED" and http_health(port) is None

    m.start("demo-blue", owner="bob")
    assert m.status("demo-blue")["demo-blue"]["intent"]["want"] == "up"
    pid = http_health(port)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: sv_state(supervisor, "demo-blue") == "EXITED", 10, "supervisord to see the kill")
    assert m.recover("demo-blue")["outcome"] == "recovered"


def test_a_stop_with_a_ttl_lets_recovery_take_over_when_it_expires(minion, supervisor):
    m = minion()
    m.start("demo-blue")
    m.stop("demo-blue", owner="maintenance m-1", reason="patching", ttl=3)
    assert m.recover("demo-blue")["outcome"] == "intended_down"
    expires = m.status("demo-blue")["demo-blue"]["intent"]["expires"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)  # the ttl the stop asked for
    assert m.status("demo-blue")["demo-blue"]["intent"]["want"] == "up"
    assert m.recover("demo-blue")["outcome"] == "recovered"


def test_a_bad_intent_argument_changes_nothing(minion, supervisor):
    m = minion()
    m.start("demo-blue")
    with pytest.raises(SaltInvocationError, match="ttl: "):
        m.stop("demo-blue", ttl="forever")
    assert sv_state(supervisor, "demo-blue") == "RUNNING"
    assert m.status("demo-blue")["demo-blue"]["intent"]["want"] == "up"


def test_restart_that_does_not_fix_health_ends_quarantined(minion, supervisor):
    port = supervisor["ports"]["demo-blue"]
    pillar = services_pillar(supervisor, **{"demo-blue": {
        "health": ["demo-blue-http"], "stop_timeout": 5, "start_timeout": 3,
        "budget": {"max": 2, "window": 900}}})
    m = minion(pillar)
    m.start("demo-blue")
    control = supervisor["control"]("demo-blue")
    try:
        # The process stays RUNNING; only its health says it is broken.
        control.write_text(json.dumps({"health_fail": True}))
        assert http_health(port) is None  # 503 -> urllib raises
        pid0 = m.status("demo-blue")["demo-blue"]["pid"]
        res = m.recover("demo-blue")
        assert res["outcome"] == "quarantined", res
        assert res["attempts"] == 2
        assert [s["stopped"] for s in res["stops"]] == ["graceful", "graceful"]
        assert res["evidence"]["before"]["status"] == "critical"
        assert res["evidence"]["after"]["status"] == "critical"
        assert m.status("demo-blue")["demo-blue"]["pid"] != pid0
    finally:
        control.unlink()
    assert m.recover("demo-blue")["outcome"] == "already_healthy"


def test_flapping_service_is_quarantined(minion, supervisor):
    pillar = services_pillar(supervisor, **{"demo-blue": {
        "health": ["demo-blue-http"],
        "budget": {"max": 10, "window": 900}, "flap": {"count": 2, "window": 60}}})
    m = minion(pillar)
    m.start("demo-blue")
    outcomes = []
    for _ in range(3):
        pid = m.status("demo-blue")["demo-blue"]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: sv_state(supervisor, "demo-blue") == "EXITED", 10, "demo-blue down")
        res = m.recover("demo-blue")
        outcomes.append(res["outcome"])
    assert outcomes == ["recovered", "recovered", "quarantined"], outcomes
    assert res["quarantine"]["reason"] == "flapping"
    assert res["attempts"] == 0  # no restart once flapping is seen
    assert res["budget"]["remaining"] == 8  # the budget was not what stopped it
    assert sv_state(supervisor, "demo-blue") == "EXITED"


def test_crash_on_start_exhausts_budget_then_quarantined_without_restart(minion, supervisor):
    m = minion()
    spawns = lambda: supervisor["log"].read_text().count("spawned: 'crashy'")  # noqa: E731
    before = spawns()
    res = m.recover("crashy")
    assert res["outcome"] == "quarantined", res
    assert res["attempts"] == 2  # the pillar budget: max 2
    assert res["quarantine"]["reason"] == "budget"
    assert [a["outcome"] for a in res["history"]] == ["failed", "failed"]
    assert res["event"]["tag"] == "hx/service/hx-test-minion/crashy/quarantined"
    assert res["budget"]["remaining"] == 0
    # startretries=0: one spawn per restart attempt, so two in all.
    spawned = spawns() - before
    assert spawned == 2, spawned

    # A "restarted minion" (fresh loader, same cachedir) still holds the quarantine
    # and does not touch the service.
    fresh = Minion(m.opts, m.opts["pillar"])
    again = fresh.recover("crashy")
    assert again["outcome"] == "quarantined" and again["attempts"] == 0
    assert again["event"] is None  # the event fired once, on entry
    assert spawns() - before == spawned
    assert fresh.budget("crashy")["quarantine"]["reason"] == "budget"

    rel = fresh.release("crashy")
    assert rel["released"] is True and rel["was"]["reason"] == "budget"
    assert fresh.budget("crashy")["budget"]["remaining"] == 2
    assert fresh.release("crashy")["released"] is False


def test_start_order_follows_requires_proven_by_start_times(minion, supervisor):
    m = minion()
    res = m.start("svc-web")
    assert res["order"] == ["svc-db", "svc-api", "svc-web"]
    assert [res["services"][n]["action"] for n in res["order"]] == ["started"] * 3
    assert res["services"]["svc-web"]["traffic"] == "skipped (no traffic driver)"
    times = [http_health(supervisor["ports"][n])["started_at"] for n in res["order"]]
    assert times == sorted(times) and len(set(times)) == 3, times
    # Each dependent was spawned only after its requirement had been up for
    # startsecs=1 (minus jitter in interpreter start-up).
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 0.9, times

    disc = m.discover()
    assert disc["svc-web"]["chain"] == ["svc-db", "svc-api"]
    assert disc["svc-db"]["dependents"] == ["svc-api", "svc-web"]
    assert disc["svc-web"]["state"] == "running" and disc["svc-web"]["pid"]
    assert disc["svc-web"]["health"]["status"] == "ok"
    assert disc["crashy"]["state"] in ("stopped", "failed")  # FATAL if an earlier test ran it

    stop = m.stop(["svc-db", "svc-web", "svc-api"])
    assert stop["order"] == ["svc-web", "svc-api", "svc-db"]
    web = stop["services"]["svc-web"]
    assert web["stopped"] == "graceful" and web["drained"] is False
    assert web["drain"] == "skipped (no traffic driver)"
    assert all(stop["services"][n]["stopped"] == "graceful" for n in stop["order"])
    # STOPPED (an operator stop), not EXITED (a crash).
    assert {sv_state(supervisor, n) for n in stop["order"]} == {"STOPPED"}


def test_graceful_stop_of_sigterm_ignorer_ends_in_kill_after_stop_timeout(minion, supervisor):
    m = minion()
    m.start("stubborn")
    t0 = time.monotonic()
    res = m.stop("stubborn")["services"]["stubborn"]
    elapsed = time.monotonic() - t0
    assert res["stopped"] == "killed" and res["killed_by"] == "hx", res
    assert 1.5 <= elapsed < 15, elapsed
    assert sv_state(supervisor, "stubborn") == "STOPPED"  # not EXITED: no autorestart semantics
    assert "stopped: stubborn (terminated by SIGKILL)" in supervisor["log"].read_text()

    # The same path for a well-behaved app is graceful, well inside stop_timeout.
    m.start("demo-blue")
    res = m.stop("demo-blue")["services"]["demo-blue"]
    assert res["stopped"] == "graceful" and res["stop_ms"] < 5000


def test_unknown_service_is_an_error_and_nothing_is_touched(minion, supervisor):
    m = minion()
    before = sv_states(supervisor, PROGRAMS)
    assert "RUNNING" not in before.values()
    with pytest.raises(SaltInvocationError, match="unknown service 'nope'"):
        m.start("svc-db,nope")
    with pytest.raises(SaltInvocationError, match="unknown service 'nope'"):
        m.stop("nope")
    with pytest.raises(SaltInvocationError, match="unknown service 'nope'"):
        m.recover("nope")
    assert sv_states(supervisor, PROGRAMS) == before


@pytest.mark.parametrize(
    "override, match",
    [
        ({"svc-api": {"requires": ["svc-dbx"]}}, r"hx:services:svc-api:requires: names unknown service 'svc-dbx'"),
        ({"svc-db": {"requires": ["svc-web"]}}, r"dependency cycle: svc-db -> svc-web -> svc-api -> svc-db"),
        ({"svc-db": {"stop_timeout": "ten"}}, r"hx:services:svc-db:stop_timeout"),
        ({"svc-db": {"healthz": ["x"]}}, r"hx:services:svc-db:healthz: unknown key"),
    ],
)
def test_malformed_pillar_is_an_error_and_nothing_is_touched(minion, supervisor, override, match):
    m = minion(services_pillar(supervisor, **override))
    before = sv_states(supervisor, PROGRAMS)
    # A configuration error (no "Passed invalid arguments" and docstring), not a usage error.
    for call, arg in ((m.start, "svc-web"), (m.recover, "svc-db")):
        with pytest.raises(CommandExecutionError, match=match) as exc:
            call(arg)
        assert not isinstance(exc.value, SaltInvocationError), exc.value
    assert sv_states(supervisor, PROGRAMS) == before


def test_unknown_health_check_name_is_an_error_before_starting(minion, supervisor):
    m = minion(services_pillar(supervisor, **{"svc-db": {"health": ["no-such-check"]}}))
    before = sv_states(supervisor, PROGRAMS)
    # The name is in the pillar, not typed: a configuration error naming the key.
    with pytest.raises(CommandExecutionError, match="hx:services:svc-db:health: .*no-such-check") as exc:
        m.start("svc-web")
    assert not isinstance(exc.value, SaltInvocationError), exc.value
    assert sv_states(supervisor, PROGRAMS) == before


def test_unreachable_supervisord_is_a_clear_error(minion, supervisor, tmp_path):
    pillar = services_pillar(supervisor)
    pillar["hx"]["supervisord"]["conf"] = str(tmp_path / "nope.conf")
    (tmp_path / "nope.conf").write_text(f"[supervisorctl]\nserverurl=unix://{tmp_path}/absent.sock\n")
    with pytest.raises(CommandExecutionError, match="cannot reach supervisord"):
        minion(pillar).status("svc-db")


def test_running_state_plans_under_test_then_starts(minion, supervisor):
    before = sv_states(supervisor, PROGRAMS)
    planned = minion(test=True).states["hx_service.running"]("svc-api")
    assert planned["result"] is None
    assert planned["changes"]["plan"] == [
        {"service": "svc-db", "action": "start"},
        {"service": "svc-api", "action": "start"},
    ]
    assert sv_states(supervisor, PROGRAMS) == before

    m = minion()
    ret = m.states["hx_service.running"]("svc-api")
    assert ret["result"] is True, ret
    assert ret["changes"] == {"started": ["svc-db", "svc-api"]}
    again = m.states["hx_service.running"]("svc-api")
    assert again["result"] is True and again["changes"] == {}

    # Dead dependency: the state restarts it through recover.
    pid = m.status("svc-db")["svc-db"]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: sv_state(supervisor, "svc-db") == "EXITED", 10, "svc-db down")
    ret = m.states["hx_service.running"]("svc-api")
    assert ret["result"] is True, ret
    assert ret["changes"] in ({"started": ["svc-db"]}, {"recovered": ["svc-db"]})
