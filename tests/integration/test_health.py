"""hx_health through a real master and minions, against real HTTP servers."""
import time

import pytest

from tests.support import httpserver


@pytest.fixture
def servers():
    up = httpserver.Server(slow_s=3).start()
    yield up
    up.stop()


def _checks(server, refused_port):
    return [
        {"name": "web_ok", "kind": "http", "url": server.url + "/ok", "timeout": 1},
        {"name": "web_500", "kind": "http", "url": server.url + "/error", "timeout": 1},
        {"name": "web_slow", "kind": "http", "url": server.url + "/slow", "timeout": 1},
        {"name": "web_down", "kind": "http", "url": f"http://127.0.0.1:{refused_port}/health", "timeout": 1},
        {"name": "port_open", "kind": "tcp", "host": "127.0.0.1", "port": server.port, "timeout": 1},
        {"name": "port_closed", "kind": "tcp", "host": "127.0.0.1", "port": refused_port, "timeout": 1},
    ]


def test_check_from_master_reports_each_failure_distinctly(salt_cli, pillar, servers):
    refused = httpserver.free_port()
    pillar.set("hx-m1", {"hx": {"health": {"checks": _checks(servers, refused)}}})

    ret = salt_cli.run("hx_health.check", minion_tgt="hx-m1")

    data = ret.data
    assert isinstance(data, dict), ret
    checks = data["checks"]
    assert checks["web_ok"]["status"] == "ok"
    assert checks["web_500"]["status"] == "critical"
    assert checks["web_500"]["error"] == "http_5xx"
    assert checks["web_slow"]["status"] == "critical"
    assert checks["web_slow"]["error"] == "timeout"
    assert checks["web_down"]["status"] == "critical"
    assert checks["web_down"]["error"] == "refused"
    assert checks["port_open"]["status"] == "ok"
    assert checks["port_closed"]["status"] == "critical"
    assert data["status"] == "critical"
    # The slow server must not hold the check past its own 1 s timeout.
    assert checks["web_slow"]["value"] is None or checks["web_slow"]["value"] < 2500


def test_salt_call_exit_code_follows_overall_status(minions, pillar, servers):
    call = minions["hx-m1"].salt_call_cli(timeout=60)
    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "web_ok", "kind": "http", "url": servers.url + "/ok", "timeout": 1}]}}})
    ok = call.run("hx_health.check")
    assert ok.returncode == 0, ok
    assert ok.data["status"] == "ok"

    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "web_500", "kind": "http", "url": servers.url + "/error", "timeout": 1}]}}})
    bad = call.run("hx_health.check")
    assert bad.returncode != 0, bad
    assert bad.data["status"] == "critical"


def test_malformed_check_config_names_the_bad_key(salt_cli, pillar):
    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "web", "kind": "http", "url": "http://127.0.0.1:1/", "timout": 1}]}}})
    ret = salt_cli.run("hx_health.check", minion_tgt="hx-m1")
    assert ret.returncode != 0
    assert "timout" in str(ret.data) + ret.stdout


def test_history_and_sla_accumulate_from_real_checks(salt_cli, pillar, servers):
    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "sla_web", "kind": "http", "url": servers.url + "/ok", "timeout": 1}]}}})
    for _ in range(3):
        assert salt_cli.run("hx_health.check", minion_tgt="hx-m1").data["status"] == "ok"
    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "sla_web", "kind": "http", "url": servers.url + "/error", "timeout": 1}]}}})
    assert salt_cli.run("hx_health.check", minion_tgt="hx-m1").data["status"] == "critical"

    sla = salt_cli.run("hx_health.sla", minion_tgt="hx-m1").data
    web = sla["checks"]["sla_web"]
    assert web["samples"] == 4
    assert web["availability"] == pytest.approx(75.0)
    assert web["met"] is False
    assert sla["status"] == "violated"


def test_passing_gate_waits_for_a_late_server(salt_run_cli, pillar):
    late = httpserver.Server()
    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "late_web", "kind": "http", "url": late.url + "/health", "timeout": 1}]}}})
    starter = __import__("threading").Timer(4.0, late.start)
    started = time.monotonic()
    starter.start()
    try:
        ret = salt_run_cli.run(
            "state.orchestrate", "orch.health_gate",
            'pillar={"tgt": "hx-m1", "checks": ["late_web"], "timeout": 40, "interval": 1}',
        )
    finally:
        starter.join()
        late.stop()
    elapsed = time.monotonic() - started
    assert ret.returncode == 0, ret
    assert elapsed >= 4.0, "the gate passed before the server existed"


def test_passing_gate_fails_when_checks_never_pass_and_plans_under_test(salt_run_cli, pillar):
    port = httpserver.free_port()
    pillar.set("hx-m1", {"hx": {"health": {"checks": [
        {"name": "never", "kind": "http", "url": f"http://127.0.0.1:{port}/health", "timeout": 1}]}}})
    pillar_arg = 'pillar={"tgt": "hx-m1", "checks": ["never"], "timeout": 3, "interval": 1}'

    planned = salt_run_cli.run("state.orchestrate", "orch.health_gate", pillar_arg, "test=True")
    assert planned.returncode == 0, planned
    assert "would" in planned.stdout.lower()

    failed = salt_run_cli.run("state.orchestrate", "orch.health_gate", pillar_arg)
    assert failed.returncode != 0, failed
    assert "never" in failed.stdout


def test_minions_cannot_read_pillar_tests_or_docs(salt_cli, minions):
    files = salt_cli.run("cp.list_master", minion_tgt="hx-m1").data
    assert "_modules/hx_health.py" in files
    assert "orch/health_gate.sls" in files
    leaked = [f for f in files if f.split("/")[0] in ("pillar", "tests", "docs", "conf", "lab", "bench")]
    assert leaked == []
    assert not any(f.endswith((".md", "requirements.lock", "Makefile")) for f in files)


@pytest.fixture(scope="module")
def down_m2(minions):
    """hx-m2 stopped once for the tests that need a minion that does not answer (the last in this module)."""
    with minions["hx-m2"].stopped():
        yield


def test_passing_gate_fails_on_a_down_minion(salt_run_cli, down_m2):
    ret = salt_run_cli.run(
        "state.orchestrate", "orch.health_gate",
        'pillar={"tgt": "hx-m*", "timeout": 5, "interval": 1}',
    )
    assert ret.returncode != 0, ret
    assert "hx-m2" in ret.stdout


def test_fleet_report_lists_a_stopped_minion(salt_run_cli, down_m2):
    ret = salt_run_cli.run("hx_report.health", "tgt=hx-m*", "timeout=5")
    assert ret.returncode != 0
    data = ret.data
    assert data["minions"]["hx-m2"] == "no answer"
    assert data["missing"] == ["hx-m2"]
    assert data["minions"]["hx-m1"] in ("ok", "warning", "critical")
    assert "no answer" in ret.stdout
