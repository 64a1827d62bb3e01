"""Loader-level tests of the hx_health execution module and state, against
real HTTP servers and real processes on 127.0.0.1."""
import collections
import http.server
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import hx_history
import pytest
import salt.config
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError
from saltfactories.utils.functional import Loaders

REPO = pathlib.Path(__file__).resolve().parents[2]



class Handler(http.server.BaseHTTPRequestHandler):
    # Nagle + delayed ACK stalls keep-alive responses (docs/architecture.md, measured traps).
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    release = threading.Event()
    flaky_left = [0]

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code, body=b'{"status": "ok"}'):
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests): expected

    def do_GET(self):  # noqa: N802 - http.server naming
        if self.path == "/ok":
            self._send(200)
        elif self.path == "/fail":
            self._send(500, b"boom")
        elif self.path == "/missing":
            self._send(404, b"nope")
        elif self.path == "/degraded":
            self._send(200, b'{"status": "degraded"}')
        elif self.path == "/delay":
            time.sleep(0.25)
            self._send(200)
        elif self.path == "/slow":
            # Hang past any client timeout; teardown releases it.
            self.release.wait(10)
            self._send(200)
        elif self.path == "/flaky":
            if self.flaky_left[0] > 0:
                self.flaky_left[0] -= 1
                self._send(503, b"starting")
            else:
                self._send(200)
        else:
            self._send(404, b"")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    Handler.release.clear()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        Handler.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("hx_health")
    for sub in ("pillar", "files", "pki", "sock", "extmods", "cache"):
        (root / sub).mkdir()
    (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - hx\n", encoding="utf-8")
    (root / "pillar" / "hx.sls").write_text("{}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def loaders(tree):
    opts = salt.config.minion_config(None)
    opts.update(
        id="hx-functional",
        file_client="local",
        cachedir=str(tree / "cache"),
        pki_dir=str(tree / "pki"),
        sock_dir=str(tree / "sock"),
        extension_modules=str(tree / "extmods"),
        log_file=str(tree / "minion.log"),
        file_roots={"base": [str(tree / "files")]},
        pillar_roots={"base": [str(tree / "pillar")]},
        module_dirs=[str(REPO / "_modules")],
        states_dirs=[str(REPO / "_states")],
        utils_dirs=[str(REPO / "_utils")],
    )
    return Loaders(opts)


@pytest.fixture
def set_pillar(loaders, tree):
    def _set(health):
        (tree / "pillar" / "hx.sls").write_text(
            yaml.safe_dump({"hx": {"health": health}}), encoding="utf-8"
        )
        loaders.reload_all()

    yield _set
    _set({})


@pytest.fixture(autouse=True)
def reset(loaders):
    try:
        yield
    finally:
        loaders.reset_state()  # clears __context__ and the cachedir (history)


@pytest.fixture
def mod(loaders):
    return loaders.modules.hx_health


@pytest.fixture
def history_path(loaders):
    return os.path.join(loaders.opts["cachedir"], "hx", "health_history.jsonl")


# ------------------------------------------------------------ http


def test_http_ok(mod, server):
    result = mod.http(f"{server}/ok", timeout=2, body_match='"status": "ok"')
    assert result["status"] == "ok", result
    assert result["error"] is None and result["http_status"] == 200
    assert 0 < result["value"] < 2000
    assert result["threshold"] == {"warning": None, "critical": 2000.0}


def test_http_body_mismatch(mod, server):
    result = mod.http(f"{server}/degraded", timeout=2, body_match='"status": "ok"')
    assert (result["status"], result["error"]) == ("critical", "body_mismatch")


def test_http_500_is_critical_5xx(mod, server):
    result = mod.http(f"{server}/fail", timeout=2)
    assert (result["status"], result["error"], result["http_status"]) == ("critical", "http_5xx", 500)


def test_http_unexpected_status(mod, server):
    result = mod.http(f"{server}/missing", timeout=2)
    assert (result["status"], result["error"]) == ("critical", "http_status")
    assert mod.http(f"{server}/missing", expect_status=[200, 404])["status"] == "ok"


def test_http_timeout_is_bounded_and_critical(mod, server):
    start = time.monotonic()
    result = mod.http(f"{server}/slow", timeout=0.5)
    elapsed = time.monotonic() - start
    assert (result["status"], result["error"]) == ("critical", "timeout"), result
    assert elapsed < 2.0


def test_http_refused(mod, closed_port):
    result = mod.http(f"http://127.0.0.1:{closed_port}/health", timeout=2)
    assert (result["status"], result["error"]) == ("critical", "refused"), result


def test_http_dns_failure(mod):
    result = mod.http("http://hx-no-such-host.invalid/health", timeout=2)
    assert (result["status"], result["error"]) == ("critical", "dns"), result


def test_http_latency_warning_tier(mod, server):
    result = mod.http(f"{server}/delay", timeout=2, warning_ms=100, critical_ms=1500)
    assert result["status"] == "warning", result
    result = mod.http(f"{server}/delay", timeout=2, warning_ms=50, critical_ms=100)
    assert result["status"] == "critical", result


def test_http_latency_defaults_from_pillar(mod, server, set_pillar, loaders):
    set_pillar({"thresholds": {"response_time": {"critical": 100}}})
    result = loaders.modules.hx_health.http(f"{server}/delay", timeout=2)
    assert result["status"] == "critical"
    assert result["threshold"]["critical"] == 100.0


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"url": "ftp://x/"}, "url"),
        ({"url": "http://x/", "timeout": 0}, "timeout"),
        ({"url": "http://x/", "timeout": 61}, "timeout"),
        ({"url": "http://x/", "expect_status": "ok"}, "expect_status"),
    ],
)
def test_http_bad_arguments(mod, kwargs, needle):
    with pytest.raises(SaltInvocationError, match=needle):
        mod.http(**kwargs)


# ------------------------------------------------------------ tcp


def test_tcp(mod, server, closed_port):
    port = int(server.rsplit(":", 1)[1])
    ok = mod.tcp("127.0.0.1", port, timeout=2)
    assert ok["status"] == "ok" and ok["error"] is None and ok["value"] >= 0
    refused = mod.tcp("127.0.0.1", closed_port, timeout=2)
    assert (refused["status"], refused["error"]) == ("critical", "refused")
    dns = mod.tcp("hx-no-such-host.invalid", 80, timeout=2)
    assert (dns["status"], dns["error"]) == ("critical", "dns")
    with pytest.raises(SaltInvocationError, match="port"):
        mod.tcp("127.0.0.1", 70000)


# ------------------------------------------------------------ process


def test_process_counts_live_processes_not_zombies(mod, tmp_path):
    import psutil

    # A unique executable name gives the child a unique comm (process name).
    comm = f"hxz{os.getpid() % 100000}"
    exe = tmp_path / comm
    exe.symlink_to(sys.executable)
    marker = f"hx-proc-marker-{os.getpid()}-{time.monotonic_ns()}"
    child = subprocess.Popen([str(exe), "-c", "import time; time.sleep(60)", marker])
    try:
        assert psutil.Process(child.pid).name() == comm
        for kwargs in ({"pattern": marker}, {"name": comm}):
            alive = mod.process(**kwargs)
            assert (alive["status"], alive["value"]) == ("ok", 1), alive
            assert alive["pids"] == [child.pid]
        assert mod.process(pattern=marker, min_count=2)["status"] == "critical"
        # Kill without reaping: the child stays a zombie, which is not alive.
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "child never became a zombie"
            time.sleep(0.01)
        for kwargs in ({"pattern": marker}, {"name": comm}):
            dead = mod.process(**kwargs)
            assert (dead["status"], dead["value"]) == ("critical", 0), dead
    finally:
        child.kill()
        child.wait()


def test_process_by_exact_name(mod):
    import psutil

    own_name = psutil.Process(os.getppid()).name()
    assert mod.process(name=own_name)["value"] >= 1
    assert mod.process(name="hx-surely-not-running")["status"] == "critical"
    with pytest.raises(SaltInvocationError, match="exactly one"):
        mod.process()


# ------------------------------------------------------------ system


def test_system_metrics_shape(mod):
    result = mod.system()
    metrics = result["metrics"]
    assert {"cpu", "memory", "load"} <= set(metrics)
    assert any(name.startswith("disk:") for name in metrics)
    for metric in metrics.values():
        assert set(metric) >= {"status", "value", "warning", "critical", "message"}
    assert metrics["load"]["critical"] == 5.0
    assert result["status"] in ("ok", "warning", "critical", "unknown")


def test_system_thresholds_pillar_then_argument(set_pillar, loaders):
    set_pillar({"thresholds": {"cpu": {"warning": 0, "critical": 0}}})
    mod = loaders.modules.hx_health
    assert mod.system()["metrics"]["cpu"]["status"] == "critical"  # value >= 0 always
    relaxed = mod.system(thresholds={"cpu": {"warning": None, "critical": None}})
    assert relaxed["metrics"]["cpu"]["status"] == "ok"


@pytest.mark.parametrize("thresholds, key", [({"cpux": {"critical": 1}}, "cpux"),
                                             ({"cpu": {"critical": float("inf")}}, "cpu.critical"),
                                             ({"load": {"warning": float("nan")}}, "load.warning"),
                                             ({"disk": {"critical": 101}}, "disk.critical")])
def test_system_bad_thresholds(mod, thresholds, key):
    with pytest.raises(SaltInvocationError, match=key):
        mod.system(thresholds=thresholds)


def test_real_mounts_filter(loaders):
    part = collections.namedtuple("part", "device mountpoint fstype opts")
    parts = [
        part("overlay", "/", "overlay", "rw,relatime"),
        part("proc", "/proc", "proc", "rw"),
        part("tmpfs", "/run", "tmpfs", "rw"),
        part("/dev/sdb", "/data", "ext4", "rw,noatime"),
        part("/dev/sdc", "/ro", "ext4", "ro,noatime"),
        part("/dev/sdb", "/data", "ext4", "rw,noatime"),
        part("/dev/loop0", "/snap/x", "squashfs", "ro"),
        part("/dev/sdd", "/rootfs", "xfs", "rw,errors=remount-ro"),
    ]
    # reach the private helper through the loaded module's globals
    real_mounts = loaders.modules.hx_health.system.__globals__["_real_mounts"]
    assert real_mounts(parts) == ["/", "/data", "/rootfs"]


# ------------------------------------------------------------ check


def test_check_defaults_to_system_and_records_history(mod, history_path, loaders):
    result = mod.check()
    assert result["minion"] == "hx-functional"
    assert abs(result["timestamp"] - time.time()) < 60
    names = set(result["checks"])
    assert {"system:cpu", "system:memory", "system:load"} <= names
    assert any(n.startswith("system:disk:") for n in names)
    for entry in result["checks"].values():
        assert entry["kind"] == "system"
        assert set(entry) >= {"status", "value", "threshold", "message"}
    samples, corrupt = hx_history.read(history_path)
    assert len(samples) == 1 and corrupt == 0
    assert samples[0]["c"]["system:cpu"][0] == result["checks"]["system:cpu"]["status"]
    assert samples[0]["d"]  # disk percentages for the forecast


def _checks(server, closed_port):
    return [
        {"name": "app", "kind": "http", "url": f"{server}/ok", "timeout": 2},
        {"name": "broken", "kind": "http", "url": f"{server}/fail", "timeout": 2},
        {"name": "port", "kind": "tcp", "host": "127.0.0.1", "port": closed_port, "timeout": 1},
    ]


def test_check_configured_critical_sets_retcode(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)})
    result = loaders.modules.hx_health.check()
    assert result["status"] == "critical"
    assert {n: c["status"] for n, c in result["checks"].items()} == {
        "app": "ok",
        "broken": "critical",
        "port": "critical",
    }
    assert result["checks"]["broken"]["error"] == "http_5xx"
    assert result["checks"]["port"]["kind"] == "tcp"
    assert loaders.context.get("retcode") == 2


def test_check_named_subset_ok_leaves_retcode(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)})
    result = loaders.modules.hx_health.check(names="app")
    assert list(result["checks"]) == ["app"]
    assert result["status"] == "ok"
    assert loaders.context.get("retcode", 0) == 0


def test_check_unknown_name(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)})
    with pytest.raises(SaltInvocationError, match="unknown check name\\(s\\): nope"):
        loaders.modules.hx_health.check(names=["app", "nope"])


def test_check_malformed_config(set_pillar, loaders, history_path):
    set_pillar({"checks": [{"name": "app", "kind": "http", "url": "http://x/", "timout": 2}]})
    # A configuration error, not a usage error: no "Passed invalid arguments" and docstring.
    with pytest.raises(CommandExecutionError) as exc:
        loaders.modules.hx_health.check()
    assert not isinstance(exc.value, SaltInvocationError)
    assert "hx:health:checks[0] (app): key 'timout' is not allowed for kind http" in str(exc.value)
    assert not os.path.exists(history_path)


@pytest.mark.parametrize("pillar, call, key", [
    ({"thresholds": {"cpu": {"critical": "high"}}}, ("system", {}), "hx:health:thresholds"),
    ({"thresholds": {"disk": {"critical": None}}}, ("forecast", {}), "hx:health:thresholds: disk critical"),
    ({"checks": [{"name": "s", "kind": "system", "thresholds": {"cpu": {"warning": 99}}}]}, ("check", {}),
     r"hx:health:checks\[0\] \(s\)\.thresholds\.cpu: warning \(99"),
    # valid alone, not over the pillar's: the check's own thresholds, named as such
    ({"checks": [{"name": "s", "kind": "system", "thresholds": {"cpu": {"warning": 60}}}],
      "thresholds": {"cpu": {"warning": 40, "critical": 50}}}, ("check", {}), r"hx:health:checks \(s\)\.thresholds\.cpu: warning \(60"),
    ({"sla": {"availabilty": 99}}, ("sla", {}), "hx:health:sla: unknown key"),
    ({"sla": {"availability": 150}}, ("sla", {}), "hx:health:sla: key 'availability'"),
    ({"checks": "app"}, ("checks", {}), "hx:health:checks"),
])
def test_pillar_errors_are_configuration_errors_naming_the_key(set_pillar, loaders, pillar, call, key):
    set_pillar(pillar)
    fun, kwargs = call
    with pytest.raises(CommandExecutionError, match=key) as exc:
        getattr(loaders.modules.hx_health, fun)(**kwargs)
    assert not isinstance(exc.value, SaltInvocationError), exc.value


def test_typed_arguments_stay_usage_errors_naming_the_argument(set_pillar, loaders):
    set_pillar({"sla": {"availability": 99}, "thresholds": {"cpu": {"critical": 90}}})
    mod = loaders.modules.hx_health
    with pytest.raises(SaltInvocationError, match="^availability must be a percentage"):
        mod.sla(availability=150)
    with pytest.raises(SaltInvocationError, match=r"^thresholds\.cpu: warning \(95\) is greater"):
        mod.system(thresholds={"cpu": {"warning": 95}})


def test_history_limit_name_and_max_samples(set_pillar, loaders, server, closed_port, history_path):
    set_pillar({"checks": _checks(server, closed_port)[:2], "history": {"max_samples": 2}})
    mod = loaders.modules.hx_health
    for _ in range(3):
        mod.check()
    with open(history_path, encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 2
    hist = mod.history()
    assert hist["path"] == history_path and len(hist["samples"]) == 2
    only = mod.history(name="broken", limit=1)
    assert len(only["samples"]) == 1
    assert only["samples"][0]["checks"] == {"broken": {"status": "critical", "value": 
        only["samples"][0]["checks"]["broken"]["value"]}}
    with pytest.raises(SaltInvocationError, match="limit"):
        mod.history(limit=0)


def test_bad_max_samples(set_pillar, loaders):
    set_pillar({"history": {"max_samples": "lots"}})
    with pytest.raises(CommandExecutionError, match="hx:health:history: key 'max_samples'"):
        loaders.modules.hx_health.check()


def test_sla_from_recorded_checks(set_pillar, loaders, server, closed_port):
    mod = loaders.modules.hx_health
    assert mod.sla()["status"] == "unknown"
    set_pillar({"checks": _checks(server, closed_port)[:1]})
    mod = loaders.modules.hx_health
    mod.check()
    mod.check()
    report = mod.sla()
    assert report["status"] == "met", report
    assert report["checks"]["app"]["availability"] == 100.0
    assert report["response_time"]["samples"] == 2
    # pillar targets apply, an argument beats pillar (reloading wipes the cachedir)
    set_pillar({"checks": _checks(server, closed_port)[:1], "sla": {"response_time_ms": 0.001}})
    mod = loaders.modules.hx_health
    mod.check()
    assert mod.sla()["status"] == "violated"
    assert mod.sla(response_time_ms=10000)["status"] == "met"
    with pytest.raises(SaltInvocationError, match="availability"):
        mod.sla(availability=150)


def test_sla_violated_by_failing_endpoint(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)[:2]})
    mod = loaders.modules.hx_health
    mod.check()
    report = mod.sla()
    assert report["status"] == "violated"
    assert report["checks"]["broken"]["availability"] == 0.0
    assert report["error_rate"]["pct"] == 50.0


def test_forecast_from_history(loaders, history_path):
    now = time.time()
    for i in range(7):  # / grows 1 %/h from 80 %, reaches 90 % ~4 h from now
        hx_history.append(history_path, {"t": now - (6 - i) * 3600, "c": {}, "d": {"/": 80.0 + i}})
    mod = loaders.modules.hx_health
    report = mod.forecast()
    mount = report["mounts"]["/"]
    assert mount["status"] == "warning", report
    assert mount["hours_to_critical"] == pytest.approx(4.0, abs=0.05)
    assert mod.forecast(horizon_hours=2)["mounts"]["/"]["status"] == "ok"
    with pytest.raises(SaltInvocationError, match="horizon_hours"):
        mod.forecast(horizon_hours=0)


def test_forecast_empty_history(mod):
    report = mod.forecast()
    assert report["status"] == "unknown" and report["reason"]


def test_corrupt_history_line_tolerated(mod, history_path):
    mod.check()
    with open(history_path, "a", encoding="utf-8") as handle:
        handle.write('{"t": 12, "c": {"sys')
    mod.check()
    hist = mod.history()
    assert len(hist["samples"]) == 2 and hist["corrupt_lines"] == 1


# ------------------------------------------------------------ state


def _state(loaders, **kwargs):
    ret = loaders.states.hx_health.passing(name="gate", **kwargs)
    return ret.full_return


def test_passing_ok(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)})
    ret = _state(loaders, checks=["app"], timeout=5, interval=0.1)
    assert ret["result"] is True, ret
    assert ret["changes"] == {}
    assert "app" in ret["comment"]


def test_passing_times_out_naming_failures(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)})
    start = time.monotonic()
    ret = _state(loaders, timeout=0.3, interval=0.1)
    assert time.monotonic() - start < 5
    assert ret["result"] is False
    assert "broken=critical" in ret["comment"] and "port=critical" in ret["comment"]
    assert "app=" not in ret["comment"]
    assert "Timed out" in ret["comment"]


def test_passing_waits_for_recovery(set_pillar, loaders, server, closed_port):
    flaky = {"name": "flaky", "kind": "http", "url": f"{server}/flaky", "timeout": 2}
    set_pillar({"checks": [flaky]})
    Handler.flaky_left[0] = 2
    ret = _state(loaders, checks=["flaky"], timeout=10, interval=0.05)
    assert ret["result"] is True, ret
    assert "(3 poll(s))" in ret["comment"]


def test_passing_allow_warning(set_pillar, loaders, server):
    slowish = {"name": "slowish", "kind": "http", "url": f"{server}/delay", "timeout": 2, "warning_ms": 50}
    set_pillar({"checks": [slowish]})
    assert _state(loaders, timeout=0, interval=1)["result"] is False
    assert _state(loaders, timeout=0, interval=1, allow_warning=True)["result"] is True


def test_passing_test_mode_runs_nothing(set_pillar, loaders, server, closed_port, history_path):
    set_pillar({"checks": _checks(server, closed_port)})
    ret = _state(loaders, checks=["app", "broken"], timeout=30, interval=3, test=True)
    assert ret["result"] is None
    assert ret["comment"] == (
        "Would wait up to 30 s, polling every 3 s, until health checks app, broken are all ok"
    )
    assert not os.path.exists(history_path)


def test_passing_unknown_check_fails_without_waiting(set_pillar, loaders, server, closed_port):
    set_pillar({"checks": _checks(server, closed_port)})
    start = time.monotonic()
    ret = _state(loaders, checks=["nope"], timeout=30)
    assert time.monotonic() - start < 5
    assert ret["result"] is False
    assert "nope" in ret["comment"]


@pytest.mark.parametrize("extra, key", [
    ({"checks": [{"name": "app", "kind": "http", "url": "http://x/", "timout": 2}]}, "hx:health:checks[0] (app)"),
    # found only when a poll runs: a ConfigError must not be polled until the timeout like trouble
    ({"history": {"max_samples": "lots"}}, "hx:health:history: key 'max_samples'"),
])
def test_passing_bad_pillar_fails_without_waiting(set_pillar, loaders, server, closed_port, extra, key):
    set_pillar(dict({"checks": _checks(server, closed_port)[:1]}, **extra))
    start = time.monotonic()
    ret = _state(loaders, timeout=30)
    assert time.monotonic() - start < 5
    assert ret["result"] is False and key in ret["comment"], ret["comment"]


@pytest.mark.parametrize("kwargs", [{"timeout": -1}, {"interval": 0}, {"timeout": "soon"},
                                    {"timeout": float("inf")}, {"interval": float("nan")}, {"timeout": 1e12},
                                    {"timeout": True}])
def test_passing_bad_arguments(loaders, kwargs):
    start = time.monotonic()
    ret = _state(loaders, **kwargs)
    assert time.monotonic() - start < 5  # refused, not waited on
    assert ret["result"] is False and ret["changes"] == {}
    assert ret["comment"].startswith(f"{list(kwargs)[0]}: must be a number"), ret["comment"]


def test_history_file_is_json_lines(mod, history_path):
    mod.check()
    with open(history_path, encoding="utf-8") as handle:
        sample = json.loads(handle.readline())
    assert set(sample) == {"t", "c", "d"}
