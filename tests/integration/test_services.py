"""hx_service through a real master, minion and supervisord running real processes."""
import os
import sys
import time

import pytest
import requests

from tests.support import httpserver
from tests.support.supervisor import Supervisor, demo_command

VENV = os.path.dirname(os.path.dirname(sys.executable))
SERVICES = ("db", "api", "web", "crashy", "stubborn")


@pytest.fixture(scope="module")
def ports():
    return {name: httpserver.free_port() for name in SERVICES}


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory, ports):
    programs = {
        "db": {"command": demo_command(ports["db"])},
        "api": {"command": demo_command(ports["api"])},
        "web": {"command": demo_command(ports["web"])},
        "crashy": {"command": demo_command(ports["crashy"], "1.0.0", "--crash-on-start"), "startretries": 0},
        # supervisord's own grace is long on purpose: hx's stop_timeout must decide.
        "stubborn": {"command": demo_command(ports["stubborn"], "1.0.0", "--ignore-sigterm"), "stopwaitsecs": 60},
    }
    sup = Supervisor(tmp_path_factory.mktemp("supervisor"), programs).start()
    yield sup
    sup.stop()


def service_pillar(sup, ports, **overrides):
    services = {
        "db": {"provider": "supervisord", "health": ["db_http"]},
        "api": {"provider": "supervisord", "requires": ["db"], "health": ["api_http"]},
        "web": {"provider": "supervisord", "requires": ["api"], "health": ["web_http"]},
        "crashy": {"provider": "supervisord", "health": ["crashy_http"], "budget": {"max": 3, "window": 900}},
        "stubborn": {"provider": "supervisord", "health": ["stubborn_http"], "stop_timeout": 2},
    }
    for name, extra in overrides.items():
        services[name].update(extra)
    checks = [
        {"name": f"{name}_http", "kind": "http", "url": f"http://127.0.0.1:{ports[name]}/health", "timeout": 1}
        for name in SERVICES
    ]
    return {
        "hx": {
            "supervisord": {"conf": sup.conf, "bin_env": VENV},
            "services": services,
            "health": {"checks": checks},
        }
    }


@pytest.fixture
def services(pillar, supervisor, ports):
    pillar.set("hx-m1", service_pillar(supervisor, ports))
    yield supervisor
    for name in SERVICES:
        supervisor.ctl("stop", name)


def started_at(port):
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["started_at"]


def test_start_follows_dependency_order(salt_cli, services, ports):
    ret = salt_cli.run("hx_service.start", "web", minion_tgt="hx-m1")
    assert ret.returncode == 0, ret
    stamps = {name: started_at(ports[name]) for name in ("db", "api", "web")}
    assert stamps["db"] < stamps["api"] < stamps["web"], stamps

    stop = salt_cli.run("hx_service.stop", "db,api,web", minion_tgt="hx-m1")
    assert stop.returncode == 0, stop
    assert all(services.pid(name) is None for name in ("db", "api", "web"))


def test_kill9_then_recover_brings_it_back_healthy(salt_cli, services, ports):
    # Started through hx: the previous test's hx_service.stop left db intended down.
    assert salt_cli.run("hx_service.start", "db", minion_tgt="hx-m1").returncode == 0
    old_pid = services.pid("db")
    os.kill(old_pid, 9)

    ret = salt_cli.run("hx_service.recover", "db", minion_tgt="hx-m1")

    assert ret.returncode == 0, ret
    assert ret.data["outcome"] == "recovered", ret.data
    assert ret.data["time_to_recover_ms"] > 0
    new_pid = services.pid("db")
    assert new_pid and new_pid != old_pid
    assert requests.get(f"http://127.0.0.1:{ports['db']}/health", timeout=2).status_code == 200


def test_recover_of_a_healthy_service_does_nothing(salt_cli, services):
    services.ctl("start", "db")
    pid = services.pid("db")
    ret = salt_cli.run("hx_service.recover", "db", minion_tgt="hx-m1")
    assert ret.data["outcome"] == "already_healthy", ret.data
    assert services.pid("db") == pid


def test_crash_on_start_exhausts_budget_then_quarantines(salt_cli, services, event_listener, master):
    since = time.time()
    first = salt_cli.run("hx_service.recover", "crashy", "attempts=1", minion_tgt="hx-m1")
    assert first.data["outcome"] == "failed", first.data
    assert first.data["attempts"] == 1
    assert services.spawn_count("crashy") == 1

    rest = salt_cli.run("hx_service.recover", "crashy", minion_tgt="hx-m1")
    assert rest.data["outcome"] == "quarantined", rest.data
    assert rest.data["attempts"] == 2, "the budget of 3 allowed two more restarts"
    spawns = services.spawn_count("crashy")
    assert spawns == 3

    again = salt_cli.run("hx_service.recover", "crashy", minion_tgt="hx-m1")
    assert again.data["outcome"] == "quarantined"
    assert services.spawn_count("crashy") == spawns, "a quarantined service was started again"

    events = event_listener.wait_for_events(
        [(master.id, "hx/service/hx-m1/crashy/quarantined")], timeout=30, after_time=since
    )
    assert events.found_all_events, events.missed

    released = salt_cli.run("hx_service.release", "crashy", minion_tgt="hx-m1")
    assert released.returncode == 0, released
    after = salt_cli.run("hx_service.recover", "crashy", "attempts=1", minion_tgt="hx-m1")
    assert after.data["outcome"] == "failed", after.data
    assert services.spawn_count("crashy") == spawns + 1


def test_graceful_stop_of_a_process_ignoring_sigterm_ends_in_kill(salt_cli, services):
    assert services.ctl("start", "stubborn").returncode == 0
    started = time.monotonic()
    ret = salt_cli.run("hx_service.stop", "stubborn", minion_tgt="hx-m1")
    elapsed = time.monotonic() - started
    assert ret.returncode == 0, ret
    assert "killed" in str(ret.data), ret.data
    assert elapsed >= 2, "killed before stop_timeout"
    assert services.pid("stubborn") is None


def test_bad_names_and_malformed_pillar_touch_nothing(salt_cli, pillar, services, supervisor, ports):
    services.ctl("start", "db")
    pid = services.pid("db")

    ret = salt_cli.run("hx_service.restart", "db,nosuch", minion_tgt="hx-m1")
    assert ret.returncode != 0
    assert "nosuch" in ret.stdout
    assert services.pid("db") == pid

    pillar.set("hx-m1", service_pillar(supervisor, ports, api={"requires": ["db", "ghost"]}))
    ret = salt_cli.run("hx_service.stop", "db", minion_tgt="hx-m1")
    assert ret.returncode != 0
    assert "ghost" in ret.stdout
    assert services.pid("db") == pid

    pillar.set("hx-m1", service_pillar(supervisor, ports, db={"stop_timeout": "soon"}))
    ret = salt_cli.run("hx_service.stop", "db", minion_tgt="hx-m1")
    assert ret.returncode != 0
    assert "stop_timeout" in ret.stdout
    assert services.pid("db") == pid

    pillar.set("hx-m1", service_pillar(supervisor, ports, db={"requires": ["web"]}))
    ret = salt_cli.run("hx_service.start", "web", minion_tgt="hx-m1")
    assert ret.returncode != 0
    assert "cycle" in ret.stdout.lower()
    assert services.pid("web") is None


def test_running_state_plans_under_test_then_starts_the_chain(salt_cli, services):
    planned = salt_cli.run("state.single", "hx_service.running", "name=api", "test=True", minion_tgt="hx-m1")
    state = next(iter(planned.data.values()))
    assert state["result"] is None, state
    assert services.pid("api") is None and services.pid("db") is None

    applied = salt_cli.run("state.single", "hx_service.running", "name=api", minion_tgt="hx-m1")
    state = next(iter(applied.data.values()))
    assert state["result"] is True, state
    assert state["changes"], state
    assert services.pid("api") and services.pid("db")

    again = salt_cli.run("state.single", "hx_service.running", "name=api", minion_tgt="hx-m1")
    state = next(iter(again.data.values()))
    assert state["result"] is True and not state["changes"], state


def test_fleet_services_report(salt_cli, salt_run_cli, services, pillar, ports):
    # Earlier tests stopped web through hx (intended down): start the chain through hx (intended
    # up again), then stop web behind hx's back — down and meant to run.
    assert salt_cli.run("hx_service.start", "web", minion_tgt="hx-m1").returncode == 0
    services.ctl("stop", "web")
    ret = salt_run_cli.run("hx_report.services", "tgt=hx-m1")
    rows = {r["service"]: r for r in ret.data["rows"]}
    assert rows["db"]["state"] == "running"
    assert rows["db"]["health"] == "ok" and rows["db"]["attention"] is None
    assert rows["web"]["state"] == "stopped" and rows["web"]["attention"] == "stopped"
    assert ret.returncode != 0, "a stopped service must make the report fail"
    assert "db" in ret.stdout and "web" in ret.stdout

    # Stopped on purpose: shown with its intent, no longer a reason to fail (db, api, web only:
    # crashy and stubborn are the other tests' and would fail the report on their own).
    data = service_pillar(services, ports)
    for name in ("crashy", "stubborn"):
        del data["hx"]["services"][name]
    pillar.set("hx-m1", data)
    stop = salt_cli.run("hx_service.stop", "api,web", "owner=alice", "reason=disk swap", minion_tgt="hx-m1")
    assert stop.returncode == 0, stop
    try:
        ret = salt_run_cli.run("hx_report.services", "tgt=hx-m1")
        rows = {r["service"]: r for r in ret.data["rows"]}
        assert rows["web"]["intent"] == "down: alice (disk swap)" and rows["web"]["attention"] is None, rows["web"]
        assert ret.returncode == 0, ret.data["comment"]
        assert "down: alice (disk swap)" in ret.stdout

        # Intended down but running (started behind hx's back): drift, named.
        services.ctl("start", "api")
        ret = salt_run_cli.run("hx_report.services", "tgt=hx-m1")
        assert ret.returncode != 0
        assert "hx-m1/api (running, though intended down)" in ret.data["comment"], ret.data["comment"]
    finally:
        # hx_service.start records the intents up again; the fixture stops everything afterwards.
        assert salt_cli.run("hx_service.start", "web", minion_tgt="hx-m1").returncode == 0
