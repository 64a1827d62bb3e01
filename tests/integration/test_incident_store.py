"""The incident store on Salt's localfs cache and on a real redis-server (Salt's redis driver).

No master is needed: the desk and the ``hx_incident`` runner run on master
opts pointing at the chosen cache, the runner through ``salt.runner.RunnerClient``.
"""
import os
import threading
import time

import pytest

import salt.config
import salt.runner

import hx_incidents
from tests.support.webhook import Receiver

FIRED = []
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def receiver():
    recv = Receiver().start()
    yield recv
    recv.stop()


@pytest.fixture(params=["localfs", "redis"])
def opts(request, tmp_path, receiver):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    o = salt.config.master_config(None)
    o.update(
        conf_file=str(conf_dir / "master"),
        cachedir=str(tmp_path / "cache"),
        sock_dir=str(tmp_path / "sock"),
        pki_dir=str(tmp_path / "pki"),
        runner_dirs=[os.path.join(REPO, "_runners")],
        utils_dirs=[os.path.join(REPO, "_utils")],
        hx_incident={
            "escalation_timeout": 2,
            "channels": {"pd": {"kind": "pagerduty", "url": receiver.url + "/pd", "routing_key": "KEY-SECRET"}},
            "levels": [{"name": "L1", "notify": ["pd"]}, {"name": "L2", "notify": ["pd"]}, {"name": "L3"}],
            "delivery": {"timeout": 2, "retries": 1, "backoff": 0.1},
        },
    )
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        o.update({"cache": "redis", "cache.redis.host": "127.0.0.1", "cache.redis.port": server.port})
    os.makedirs(o["sock_dir"], exist_ok=True)
    os.makedirs(os.path.join(o["cachedir"], "proc"), exist_ok=True)  # RunnerClient's job files
    yield o
    if request.param == "redis":
        import redis  # pylint: disable=import-outside-toplevel

        redis.Redis(host="127.0.0.1", port=o["cache.redis.port"]).flushall()


def new(desk, now, check="app_http"):
    cls = hx_incidents.classify("service_down", "critical")
    inc = hx_incidents.new_incident(hx_incidents.make_id(now, "web1", set(desk.store.ids())), "web1", check, "app",
                                    cls, now, "service down on web1: app", status="critical")
    inc["escalation_timeout"] = 2
    return inc


def open_or_repeat(desk, check="app_http"):
    key = hx_incidents.dedupe_key("web1", check, "app")
    with desk.locked(key):
        active = desk.store.active_for(key)
        if active:
            desk.store.put(hx_incidents.note_repeat(active, time.time()))
            return active["id"], False
        inc = new(desk, time.time(), check)
        desk.create(inc)
        return inc["id"], True


def test_dedupe_under_concurrency_escalation_and_ack(opts, receiver):
    FIRED.clear()
    desk = hx_incidents.make_desk(opts, fire=lambda tag, data: FIRED.append(tag))
    results = []
    threads = [threading.Thread(target=lambda: results.append(open_or_repeat(desk))) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    created = [r for r in results if r[1]]
    assert len(results) == 20 and len(created) == 1, results
    inc_id = created[0][0]

    fresh = hx_incidents.make_desk(opts, fire=lambda tag, data: FIRED.append(tag))  # a second desk reads the same store
    rec = fresh.store.get(inc_id)
    assert rec["repeats"] == 19 and rec["status"] == "open"
    assert [i["id"] for i in fresh.store.all()] == [inc_id]

    fresh.escalate(inc_id, "remediation failed")
    assert fresh.store.get(inc_id)["level"] == 1
    assert fresh.escalate_due() == []  # not due yet
    time.sleep(2.1)
    assert [e["level"] for e in fresh.escalate_due()] == ["L2"]
    fresh.acknowledge(inc_id, "alice")
    time.sleep(2.1)
    assert fresh.escalate_due() == []
    fresh.resolve(inc_id, "alice", "fixed")
    assert fresh.store.active_for(rec["dedupe"]) is None
    actions = [p["body"]["event_action"] for p in receiver.posts if p["path"] == "/pd"]
    assert actions == ["trigger", "trigger", "acknowledge", "resolve"], actions
    assert {p["body"]["dedup_key"] for p in receiver.posts} == {inc_id}

    assert [t for t in FIRED if t.startswith(f"hx/incident/{inc_id}/")] == [
        f"hx/incident/{inc_id}/{s}" for s in ("open", "escalated", "escalated", "acknowledged", "resolved")]

    # a new occurrence after the resolution is a new incident
    again, was_new = open_or_repeat(fresh)
    assert was_new and again != inc_id


# The runner through RunnerClient, on redis only: the localfs path runs through a real
# master in test_remediation.py, and every call here waits out event sends to no master.
@pytest.mark.parametrize("opts", ["redis"], indirect=True)
def test_runner_list_show_ack_report(opts, request):
    desk = hx_incidents.make_desk(opts, fire=lambda tag, data: None)
    first = new(desk, time.time())
    desk.create(first)
    other = hx_incidents.new_incident("INC-1-db1", "db1", "system:disk:/", "/",
                                      hx_incidents.classify("disk", "warning"), 1.0, "disk 85 % on db1")
    desk.create(other)

    client = salt.runner.RunnerClient(opts)
    request.addfinalizer(client.destroy)
    listed = client.cmd("hx_incident.list", kwarg={"status": "active"}, print_event=False)
    assert isinstance(listed, dict), listed
    assert [i["id"] for i in listed["incidents"]] == [first["id"], "INC-1-db1"], "P1 before P3"
    assert hx_incidents.matches(other, severity="P3") and not hx_incidents.matches(other, minion="db1", since=2)

    acked = client.cmd("hx_incident.ack", [first["id"]], kwarg={"by": "bob"}, print_event=False)
    assert acked["result"] and acked["incident"]["acknowledged_by"] == "bob"
    again = client.cmd("hx_incident.ack", [first["id"]], print_event=False)
    assert again["result"] is False and "cannot move" in again["comment"]

    missing = client.cmd("hx_incident.show", ["INC-0-nope"], print_event=False)
    assert missing["result"] is False and missing["retcode"]

    rep = client.cmd("hx_incident.report", [first["id"]], print_event=False)
    assert rep["path"] == os.path.join(opts["cachedir"], "hx", "reports", first["id"] + ".md")
    with open(rep["path"], encoding="utf-8") as fh:
        text = fh.read()
    for heading in ("## Summary", "## Impact", "## Detection", "## Timeline", "## Remediation actions",
                    "## Root cause", "## Action items"):
        assert heading in text
    assert "KEY-SECRET" not in text


def test_planned_work_resolves_the_incidents_it_explains(opts, receiver):
    desk = hx_incidents.make_desk(opts, fire=lambda tag, data: None)
    now = time.time()
    cls = hx_incidents.classify("endpoint_failure", "critical")
    made = {}
    for minion, service, check in (("web1", "demo-green", "green_http"), ("web2", "demo-green", "green_http"),
                                   ("web1", "demo-blue", "blue_http"), ("web9", "demo-green", "green_http")):
        inc = hx_incidents.new_incident(hx_incidents.make_id(now, minion, set(desk.store.ids())), minion, check,
                                        service, cls, now, f"endpoint failure on {minion}", status="critical",
                                        service=service)
        desk.create(inc)
        made[(minion, service)] = inc["id"]
    done = desk.resolve_planned(["web1", "web2"], "demo-green", "deployment demo-1",
                                "demo-green parked by deployment demo-1: stopped on purpose")
    assert sorted(done) == sorted([made[("web1", "demo-green")], made[("web2", "demo-green")]])
    for key, inc_id in made.items():
        rec = desk.store.get(inc_id)
        if inc_id in done:
            assert rec["status"] == "resolved" and rec["resolved_by"] == "deployment demo-1"
            assert "stopped on purpose" in rec["timeline"][-1]["text"], rec["timeline"][-1]
        else:
            assert rec["status"] == "open", key
    assert desk.resolve_planned(["web1", "web2"], "demo-green", "x", "again") == []
