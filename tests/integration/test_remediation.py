"""Beacon -> reactor -> hx_remediate -> incident, through a real master, minions and supervisord.

Notifications go to a real HTTP receiver on 127.0.0.1 (tests/support/webhook.py)
configured in the master's ``hx_ops.yaml``, which the runners re-read on every
call, so each test sets its own channels and timeouts.
"""
import datetime
import json
import os
import signal
import statistics
import sys
import time

import psutil
import pytest
import yaml

import hx_audit
import hx_history
import hx_lease
import hx_remediation
import hx_store
from tests.support import httpserver
from tests.support.beacon_events import fire_from, sign
from tests.support.probes import beacon_running, healthy
from tests.support.supervisor import Supervisor, demo_command
from tests.support.webhook import Receiver
from tests.support.wait import wait_for

VENV = os.path.dirname(os.path.dirname(sys.executable))
PROGRAMS = ("demo", "crashy", "stormy")


@pytest.fixture(scope="module")
def ports():
    return {name: httpserver.free_port() for name in PROGRAMS}


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory, ports):
    programs = {
        "demo": {"command": demo_command(ports["demo"])},
        "stormy": {"command": demo_command(ports["stormy"])},
        "crashy": {"command": demo_command(ports["crashy"], "1.0.0", "--crash-on-start"), "startretries": 0},
    }
    sup = Supervisor(tmp_path_factory.mktemp("supervisor"), programs).start()
    yield sup
    sup.stop()


ESCALATE_S = 8


@pytest.fixture
def receiver():
    recv = Receiver().start()
    yield recv
    recv.stop()


@pytest.fixture
def hx_config(master):
    """Writes the master's hx_ops.yaml (read by the runners at call time); removed afterwards."""
    path = os.path.join(master.config_dir, "hx_ops.yaml")

    def write(receiver_url, timeout=2, remediation=None, **extra_incident):
        incident = {
            "escalation_timeout": timeout,
            "channels": {
                "pd": {"kind": "pagerduty", "url": receiver_url + "/pd", "routing_key": "ROUTING-KEY-SECRET"},
                "am": {"kind": "alertmanager", "url": receiver_url},
                "slack": {"kind": "slack", "url": receiver_url + "/slack/T000/SECRETHOOK"},
            },
            "levels": [
                {"name": "L1", "notify": ["pd"], "contacts": ["team lead"]},
                {"name": "L2", "notify": ["pd", "slack"], "contacts": ["engineering manager"]},
                {"name": "L3", "notify": ["slack"], "contacts": ["executives"]},
            ],
            "on_open": ["pd", "am"],
            "delivery": {"timeout": 2, "retries": 2, "backoff": 0.2},
        }
        incident.update(extra_incident)
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump({"hx_incident": incident, "hx_remediation": {"recheck_timeout": 20, **(remediation or {})}}, fh)

    yield write
    if os.path.exists(path):
        os.remove(path)


def service_pillar(sup, ports, beacon=True, **extra):
    checks = [
        {"name": f"{name}_http", "kind": "http", "url": f"http://127.0.0.1:{ports[name]}/health", "timeout": 1}
        for name in PROGRAMS
    ]
    checks += extra.pop("checks", [])
    data = {
        "hx": {
            "supervisord": {"conf": sup.conf, "bin_env": VENV},
            "services": {
                # Tests here kill demo and stormy again and again, each its own story: a restart
                # budget for the whole module and only a relapse within 5 s counting towards
                # flapping, so one test's recovery is not held against the next one's (budgets and
                # flapping have their own test, with crashy).
                "demo": {"provider": "supervisord", "health": ["demo_http"], "start_timeout": 10,
                         "budget": {"max": 50, "window": 900}, "flap": {"window": 5}},
                "stormy": {"provider": "supervisord", "health": ["stormy_http"], "start_timeout": 10,
                           "budget": {"max": 50, "window": 900}, "flap": {"window": 5}},
                "crashy": {"provider": "supervisord", "health": ["crashy_http"], "start_timeout": 5,
                           "budget": {"max": 2, "window": 900}},
            },
            "health": {"checks": checks},
        }
    }
    data["hx"].update(extra)
    if beacon:
        names = beacon if isinstance(beacon, list) else ["demo_http"]
        # No ``interval``: Salt counts it in loop_interval ticks while the beacon
        # callback runs once a second; salt-factories sets loop_interval 0.05,
        # so ``interval: 1`` would mean 20 s. Without it the beacon runs every second.
        data["beacons"] = {"hx_health": [{"for_cycles": 2}, {"horizon": 0}, {"checks": names}]}
    return data


def incidents(cli, **filters):
    ret = cli.run("hx_incident.list", *[f"{k}={v}" for k, v in filters.items()])
    assert ret.returncode == 0, ret
    return ret.data["incidents"]


def show(cli, inc_id):
    ret = cli.run("hx_incident.show", inc_id)
    assert ret.returncode == 0, ret
    return ret.data["incident"]


def audit(master, what=None):
    return hx_audit.read(master.config, what=what)


@pytest.fixture
def lab(pillar, supervisor, ports, hx_config, receiver, local_cli):
    hx_config(receiver.url)
    yield supervisor
    local_cli.run("hx_service.release", "crashy", minion_tgt="hx-m1")  # needs the service pillar
    pillar.clear()  # beacon off first, or stopping the programs below opens incidents
    for name in PROGRAMS:
        supervisor.ctl("stop", name)


def test_kill9_is_recovered_without_a_command(
        salt_run_cli, pillar, lab, ports, receiver, master, runner_cli, local_cli):
    assert lab.ctl("start", "demo").returncode == 0
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports))
    wait_for(lambda: beacon_running(local_cli, "hx-m1", since + 1), 30, "the hx_health beacon to run")

    old = lab.pid("demo")
    killed_at = time.monotonic()
    os.kill(old, 9)
    wait_for(lambda: lab.pid("demo") not in (None, old) and healthy(ports["demo"]), 60, "demo to come back")
    recovered_s = time.monotonic() - killed_at
    print(f"\nkill -9 -> healthy again through beacon/reactor/runner: {recovered_s:.2f} s")

    found = wait_for(
        lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["status"] == "resolved"],
        60, "the incident to be resolved")
    assert len(incidents(runner_cli, minion="hx-m1", since=since)) == 1
    inc = show(runner_cli, found[0]["id"])
    assert inc["id"].startswith("INC-") and inc["id"].endswith("-hx-m1")
    assert (inc["type"], inc["severity"], inc["priority"]) == ("service_down", "critical", "P1")
    kinds = [e["kind"] for e in inc["timeline"]]
    for kind in ("detected", "classified", "verification", "notification", "status", "action"):
        assert kind in kinds, (kind, inc["timeline"])
    assert "recovered" in json.dumps(inc["timeline"])
    assert inc["level"] == 0, "a fixed incident is not escalated"

    pd = receiver.wait_for(lambda p: p["path"] == "/pd" and p["body"]["event_action"] == "resolve", 30, "PD resolve")
    trigger = [p for p in receiver.posts if p["path"] == "/pd" and p["body"]["event_action"] == "trigger"]
    assert trigger and trigger[0]["body"]["dedup_key"] == pd[0]["body"]["dedup_key"] == inc["id"]
    am = [p for p in receiver.posts if p["path"] == "/api/v2/alerts"]
    assert am and am[0]["body"][0]["labels"]["incident"] == inc["id"]
    assert {"labels", "annotations", "startsAt", "endsAt", "generatorURL"} <= set(am[-1]["body"][0])
    assert "ROUTING-KEY-SECRET" not in json.dumps(inc), "a secret leaked into the incident record"

    recover_lines = [a for a in audit(master, "remediate.recover") if a["ts"] >= since]
    assert len(recover_lines) == 1 and recover_lines[0]["result"] == "recovered", recover_lines

    rep = salt_run_cli.run("hx_incident.report", inc["id"])
    assert rep.returncode == 0, rep
    assert os.path.isfile(rep.data["path"])
    assert "Time to recover" in rep.data["text"] and inc["id"] in rep.data["text"]


def test_a_recheck_the_minion_did_not_answer_is_retried_at_its_next_report(
        pillar, lab, ports, minions, receiver, hx_config, runner_cli, local_cli):
    """hx-m1's salt-minion is SIGSTOPped when its report of a dead demo arrives (sent by salt-call
    with hx-m1's key), so the master's re-check gets no answer (an overloaded master looks the
    same): the incident is opened and escalated once, nothing is done, and the minion's next
    report of the condition re-checks and remediates instead of being counted as a duplicate."""
    assert runner_cli.run("hx_remediate.release", "hx-m1").returncode == 0
    # No unacknowledged-escalation step while the test runs: the level then counts only the
    # escalations remediation itself made.
    hx_config(receiver.url, timeout=3600, remediation={"recheck_timeout": 2})
    assert lab.ctl("start", "demo").returncode == 0
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    since = time.time()
    dead = lab.pid("demo")
    os.kill(dead, signal.SIGKILL)
    wait_for(lambda: lab.pid("demo") is None, 15, "supervisord to see demo killed")

    def report(repeat):
        payload = {"check": "demo_http", "status": "critical", "previous": "critical" if repeat else "ok",
                   "ts": time.time(), "nonce": f"retry-{since}-{repeat}", **({"repeat": repeat} if repeat else {})}
        return [{"tag": "salt/beacon/hx-m1/hx_health/demo_http",
                 "data": dict(sign(minions["hx-m1"], "hx-m1", "demo_http", payload), id="hx-m1")}]

    daemon = psutil.Process(minions["hx-m1"].pid)
    stopped = [daemon, *daemon.children(recursive=True)]
    for proc in stopped:
        proc.suspend()
    try:
        # salt-call authenticates as hx-m1 on its own: the report reaches the master while the
        # daemon that would answer the re-check is stopped.
        sent = minions["hx-m1"].salt_call_cli().run(
            "event.fire_master", "data=null", "tag=hx-retry-test", f"preload={json.dumps({'events': report(0)})}")
        assert sent.returncode == 0 and sent.data is True, sent
        inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["level"] == 1],
                       60, "the incident of an unanswered re-check, escalated")[0]
    finally:
        for proc in stopped:
            proc.resume()
    first = show(runner_cli, inc["id"])
    assert "did not answer" in json.dumps(first["timeline"]), first["timeline"]
    assert lab.pid("demo") is None, "nothing is done to a host whose minion did not answer"

    fire_from(local_cli, "hx-m1", report(1))
    wait_for(lambda: lab.pid("demo") not in (None, dead) and healthy(ports["demo"]), 60,
             "demo to be recovered at the minion's next report")
    done = wait_for(lambda: (lambda r: r if r["status"] == "resolved" else None)(show(runner_cli, inc["id"])),
                    60, "the incident to be resolved by the retry")
    assert len(incidents(runner_cli, minion="hx-m1", since=since)) == 1, "the retry opened no second incident"
    assert done["level"] == 1, "escalated once, for the unanswered re-check"
    text = json.dumps(done["timeline"])
    assert "after its report #1" in text and "recovered" in text, done["timeline"]


def test_service_that_keeps_dying_is_quarantined_and_escalated(
        salt_cli, salt_run_cli, pillar, lab, ports, receiver, hx_config, runner_cli):
    # Long enough that an ack reliably lands between L2 and L3: the master's
    # own schedule (hx_incident.escalate_due every 30 s) escalates too.
    hx_config(receiver.url, timeout=ESCALATE_S)
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=["crashy_http"]))

    inc = wait_for(
        lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["status"] == "escalated"],
        90, "the crashy incident to be escalated")[0]
    rec = show(runner_cli, inc["id"])
    assert rec["level"] == 1, rec
    assert "quarantined" in json.dumps(rec["timeline"])
    budget = salt_cli.run("hx_service.budget", "crashy", minion_tgt="hx-m1")
    assert budget.data["quarantine"], budget.data
    receiver.wait_for(lambda p: p["path"] == "/pd" and p["body"]["event_action"] == "trigger", 30, "PD trigger")

    # No ack within the timeout: L2, from an explicit escalate_due or the master's schedule.
    def at_l2():
        assert salt_run_cli.run("hx_incident.escalate_due").returncode == 0
        found = show(runner_cli, inc["id"])
        return found if found["level"] >= 2 else None

    rec = wait_for(at_l2, ESCALATE_S * 4, "escalation to L2")
    assert rec["level"] == 2, rec["timeline"]
    receiver.wait_for(lambda p: p["path"].startswith("/slack/"), 30, "L2 Slack message")

    ack = salt_run_cli.run("hx_incident.ack", inc["id"], "by=alice")
    assert ack.returncode == 0, ack
    assert ack.data["incident"]["status"] == "acknowledged"
    receiver.wait_for(lambda p: p["path"] == "/pd" and p["body"]["event_action"] == "acknowledge", 30, "PD ack")
    # Let the moment L3 would have been due pass: an acknowledged incident stays at L2.
    due = rec.get("next_escalation_at")
    assert due, rec
    time.sleep(max(0.0, due + 0.5 - time.time()))
    salt_run_cli.run("hx_incident.escalate_due")
    rec = show(runner_cli, inc["id"])
    assert rec["level"] == 2 and rec["status"] == "acknowledged", "ack must stop escalation"

    done = salt_run_cli.run("hx_incident.resolve", inc["id"], "by=alice", "note=fixed the crash")
    assert done.data["incident"]["status"] == "resolved"


def test_forged_events_run_nothing_and_are_audited(
        salt_cli, salt_run_cli, pillar, lab, ports, minions, master, runner_cli, local_cli):
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    assert lab.pid("demo") is None  # the condition is real: demo is down on hx-m1
    payload = {"check": "demo_http", "status": "critical", "previous": "ok", "ts": time.time(), "nonce": "x"}

    # 1. event.send from hx-m2 naming hx-m1 in the tag: the master attaches hx-m2 as sender.
    ret = salt_cli.run("event.send", "salt/beacon/hx-m1/hx_health/demo_http", json.dumps(dict(payload, id="hx-m1")),
                       minion_tgt="hx-m2")
    assert ret.returncode == 0, ret
    # 2. a beacon-shaped batch from hx-m2: looks exactly like hx-m1's beacon, but unsigned
    fire_from(local_cli, "hx-m2", [{"tag": "salt/beacon/hx-m1/hx_health/demo_http", "data": dict(payload, id="hx-m1")}])
    # 3. the same, signed with hx-m2's own key
    forged = sign(minions["hx-m2"], "hx-m1", "demo_http", payload)
    fire_from(local_cli, "hx-m2", [{"tag": "salt/beacon/hx-m1/hx_health/demo_http", "data": dict(forged, id="hx-m1")}])

    rejected = wait_for(lambda: (lambda r: r if len(r) >= 3 else None)(
        [a for a in audit(master, "remediate.reject") if a["ts"] >= since]), 60, "three audited rejections")
    reasons = " | ".join(a["reason"] for a in rejected)
    assert "'hx-m2' is not the minion named in the tag" in reasons
    assert "unsigned" in reasons
    assert "signature does not verify" in reasons
    assert all(a["target"] == "hx-m1" for a in rejected)
    time.sleep(2)
    assert lab.pid("demo") is None, "a forged event restarted a service"
    assert incidents(runner_cli, minion="hx-m1", since=since) == []
    assert not [a for a in audit(master) if a["ts"] >= since and a["what"].startswith("remediate.recover")]

    # An incident id is a cache key and a report's file name: a path or a newline never gets there.
    for fun, bad in (("hx_incident.show", "../../../etc/passwd"), ("hx_incident.ack", "INC-1-hx-m1\n"),
                     ("hx_incident.report", "INC-1-hx-m1/../../x")):
        ret = salt_run_cli.run(fun, bad)
        assert ret.returncode != 0 and "is not an incident id" in json.dumps(ret.data), (fun, ret)


def test_event_storm_leads_to_one_remediation(
        salt_cli, pillar, lab, ports, minions, master, event_listener, runner_cli, local_cli):
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    assert lab.pid("stormy") is None  # down: the storm is about a real condition
    # A real storm: 100 signed beacon events, each with its own nonce.
    events = [{"tag": "salt/beacon/hx-m1/hx_health/stormy_http", "data": dict(sign(
        minions["hx-m1"], "hx-m1", "stormy_http",
        {"check": "stormy_http", "status": "critical", "previous": "ok", "ts": time.time(), "nonce": f"s{i}"}),
        id="hx-m1")} for i in range(100)]
    fire_from(local_cli, "hx-m1", events)

    ping_started = time.monotonic()
    ping = salt_cli.run("test.ping", minion_tgt="hx-m1")
    assert ping.returncode == 0 and ping.data is True, ping
    print(f"\ntest.ping during the storm: {time.monotonic() - ping_started:.2f} s")

    wait_for(lambda: healthy(ports["stormy"]), 60, "stormy to be recovered")
    rets = wait_for(lambda: (lambda r: r if len(r) >= 100 else None)([
        e for e in event_listener.get_events([(master.id, "salt/run/*/ret")], after_time=since)
        if e.data.get("fun") == "runner.hx_remediate.handle"]), 120, "100 handled events")
    outcomes = {}
    for e in rets:
        out = (e.data.get("return") or {}).get("outcome")
        outcomes[out] = outcomes.get(out, 0) + 1
    print(f"storm outcomes: {outcomes}")
    assert outcomes.get("remediated") == 1, outcomes
    assert sum(outcomes.values()) == 100
    assert set(outcomes) <= {"remediated", "duplicate", "stale"}, outcomes

    # The same signed event again, within max_event_age: a replay, refused before anything else.
    replayed_at = time.time()
    fire_from(local_cli, "hx-m1", events[:1])
    line = wait_for(lambda: [a for a in audit(master, "remediate.reject") if a["ts"] >= replayed_at], 60,
                    "the replay to be rejected")[0]
    assert "replayed event: nonce 's0' from hx-m1" in line["reason"], line

    found = incidents(runner_cli, minion="hx-m1", since=since)
    assert len(found) == 1, found
    assert found[0]["status"] == "resolved"
    assert found[0]["repeats"] >= 1
    assert lab.spawn_count("stormy") == 1
    assert len([a for a in audit(master, "remediate.recover") if a["ts"] >= since]) == 1


def test_undeliverable_notifications_are_retried_then_recorded(pillar, lab, ports, hx_config, receiver, runner_cli):
    receiver.stop()  # down: connections refused
    hx_config(receiver.url)
    since = time.time()
    checks = [{"name": "ghost_proc", "kind": "process", "pattern": "no-such-process-hx-test"}]
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=["ghost_proc"], checks=checks))

    inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since)
                            if i["check"] == "ghost_proc" and i["status"] == "escalated"], 60, "ghost incident")[0]
    rec = wait_for(lambda: (lambda r: r if any(e["kind"] == "notification" for e in r["timeline"]) else None)(
        show(runner_cli, inc["id"])), 30, "a notification entry")
    assert (rec["type"], rec["priority"]) == ("process_down", "P1")
    failed = [e for e in rec["timeline"] if e["kind"] == "notification" and not e.get("ok")]
    assert failed, rec["timeline"]
    assert "3 attempt(s)" in failed[0]["text"]
    assert "SECRET" not in json.dumps(rec)
    runner_cli.run("hx_incident.resolve", inc["id"], "by=test")


def open_window_on_hx_m1(salt_cli, pillar, lab, ports):
    """hx-m1's pillar declares a maintenance window open now (demo stopped)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    window = {"name": "hx-test", "start": (now - datetime.timedelta(hours=1)).strftime("%H:%M"),
              "end": (now + datetime.timedelta(hours=1)).strftime("%H:%M")}
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False, maintenance={"windows": [window]}))
    assert salt_cli.run("hx_maint.window_open", minion_tgt="hx-m1").data["open"] is True
    assert lab.pid("demo") is None


def report_demo_down(minions, local_cli, nonce):
    """hx-m1's beacon reports demo_http critical, signed."""
    payload = sign(minions["hx-m1"], "hx-m1", "demo_http",
                   {"check": "demo_http", "status": "critical", "previous": "ok", "ts": time.time(), "nonce": nonce})
    fire_from(local_cli, "hx-m1", [{"tag": "salt/beacon/hx-m1/hx_health/demo_http", "data": dict(payload, id="hx-m1")}])


def test_an_open_window_holds_remediation_back_in_mode_configured(
        salt_cli, pillar, lab, ports, minions, master, hx_config, receiver, runner_cli, local_cli):
    hx_config(receiver.url, remediation={"maintenance": "configured"})
    since = time.time()
    open_window_on_hx_m1(salt_cli, pillar, lab, ports)
    report_demo_down(minions, local_cli, "m")

    line = wait_for(lambda: [a for a in audit(master, "remediate.suppress") if a["ts"] >= since], 60,
                    "the suppression to be audited")[0]
    assert line["reason"] == "maintenance" and "hx-test" in line["detail"], line
    inc = show(runner_cli, line["incident"])
    assert inc["status"] == "open" and inc["level"] == 0, "held back for maintenance: recorded, not escalated"
    assert any(e["kind"] == "suppressed" for e in inc["timeline"])
    # The audit line is written after the decision: no action can follow it.
    assert lab.pid("demo") is None, "remediation ran inside the maintenance window"
    runner_cli.run("hx_incident.resolve", inc["id"], "by=test")


def test_maintenance_holds_back_only_the_batch_a_live_run_is_working_on(
        salt_cli, pillar, lab, ports, minions, master, runner_cli, local_cli):
    """In the default mode ("lease") an open window alone holds nothing back; the live maintenance
    lease does, for the hosts of its batch. The lease here is what hx_maint.run writes (its own
    test checks it does), held by this test's process on the master's cache."""
    since = time.time()
    open_window_on_hx_m1(salt_cli, pillar, lab, ports)
    store = hx_store.Store(master.config)
    token = "test-lease-token"
    store.put("hx/maint/locks", "fleet", hx_lease.new(
        token, "maint", "fleet", "mtest", "tester", master.id, os.getpid(), time.time(), 300,
        what="maintenance run mtest on hx-m*", batch=["hx-m1"]))

    opened = []
    try:
        report_demo_down(minions, local_cli, "lease-1")
        line = wait_for(lambda: [a for a in audit(master, "remediate.suppress") if a["ts"] >= since], 60,
                        "the suppression to be audited")[0]
        assert line["reason"] == "maintenance", line
        assert "hx-m1 is in the batch of maintenance run mtest on hx-m* by tester" in line["detail"], line
        opened.append(line["incident"])
        inc = show(runner_cli, line["incident"])
        assert inc["status"] == "open" and inc["level"] == 0, "held back for maintenance: recorded, not escalated"
        assert lab.pid("demo") is None, "remediation ran on a host of the batch under work"

        # The run moves on to hx-m2: hx-m1's next report is judged again, and acted on.
        assert store.update("hx/maint/locks", "fleet", token, batch=["hx-m2"])
        acted_from = time.time()
        report_demo_down(minions, local_cli, "lease-2")
        # Re-check and verification (recheck_timeout 20 s each in this module's hx_ops.yaml),
        # restarted within demo's start_timeout (10 s).
        wait_for(lambda: lab.pid("demo") is not None and healthy(ports["demo"]), 2 * 20 + 10,
                 "demo to be remediated once its host left the batch")
        rec = wait_for(lambda: (lambda r: r if r["status"] == "resolved" else None)(show(runner_cli, inc["id"])), 60,
                       "the held-back incident to be resolved by its remediation")
        assert [a for a in audit(master, "remediate.suppress") if a["ts"] >= acted_from] == []
        assert any(e["kind"] == "suppressed" for e in rec["timeline"]), rec["timeline"]
        assert any("planned work had held it back" in json.dumps(e) for e in rec["timeline"] if e["kind"] == "status"), \
            rec["timeline"]
    finally:
        store.release("hx/maint/locks", "fleet", token)
        # The module's tests share hx-m1's remediation budget (5 an hour): this one's restart is not theirs.
        runner_cli.run("hx_remediate.release", "hx-m1")
        for inc_id in opened:
            if show(runner_cli, inc_id)["status"] != "resolved":
                runner_cli.run("hx_incident.resolve", inc_id, "by=test")


def test_a_problem_held_back_longer_than_hold_max_escalates_once_and_nothing_runs(
        salt_cli, pillar, lab, ports, minions, master, hx_config, receiver, runner_cli, local_cli):
    """A live lease whose batch never ends: the next report after hold_max escalates (people must
    look: the work may be stuck); the lease still holds the host, so nothing runs."""
    hold_max = 2
    # The escalation timer must not climb levels here: the levels are what this test reads.
    hx_config(receiver.url, timeout=600, remediation={"hold_max": hold_max})
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    assert lab.pid("demo") is None
    store = hx_store.Store(master.config)
    token = "test-hold-token"
    store.put("hx/maint/locks", "fleet", hx_lease.new(
        token, "maint", "fleet", "mstuck", "tester", master.id, os.getpid(), time.time(), 300,
        what="maintenance run mstuck on hx-m*", batch=["hx-m1"]))

    def held():
        return [a for a in audit(master, "remediate.suppress") if a["ts"] >= since]

    opened = []
    try:
        report_demo_down(minions, local_cli, "hold-1")
        first = wait_for(held, 60, "the first suppression")[0]
        opened.append(first["incident"])
        assert "hold_max" not in first["detail"], first
        assert show(runner_cli, first["incident"])["level"] == 0
        # hold_max is a promise in wall-clock seconds from the first suppression.
        wait_for(lambda: time.time() > first["ts"] + hold_max, hold_max + 1, "hold_max to pass")
        report_demo_down(minions, local_cli, "hold-2")
        second = wait_for(lambda: held()[1:], 60, "the second report's suppression")[0]
        assert "longer than hx_remediation:hold_max (2 s)" in second["detail"], second
        inc = wait_for(lambda: (lambda r: r if r["status"] == "escalated" else None)(show(runner_cli, first["incident"])),
                       30, "the held-back incident to escalate")
        assert inc["level"] == 1, inc
        report_demo_down(minions, local_cli, "hold-3")
        wait_for(lambda: held()[2:], 60, "the third report's suppression")
        assert show(runner_cli, first["incident"])["level"] == 1, "escalated once, not at every report"
        ups = [a for a in audit(master, "incident.escalate") if a.get("incident") == first["incident"]]
        assert len(ups) == 1 and "hold_max" in ups[0]["reason"], ups
        # The audit line is written after the decision: no action can follow it.
        assert lab.pid("demo") is None, "remediation ran on a host the live lease holds"
    finally:
        store.release("hx/maint/locks", "fleet", token)
        for inc_id in opened:
            runner_cli.run("hx_incident.resolve", inc_id, "by=test")


def test_builtin_service_beacon_event_is_handled_as_a_second_source(pillar, lab, ports, master, runner_cli, local_cli):
    """Salt's service beacon cannot sign: accepted as an unsigned source, then re-checked on the minion.

    (Under supervisord the real service beacon cannot see programs, so hx-m1 sends the event its
    service beacon would send on a systemd host.)"""
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    assert lab.pid("demo") is None
    fire_from(local_cli, "hx-m1", [{"tag": "salt/beacon/hx-m1/service/demo",
                                   "data": {"demo": {"running": False}, "service_name": "demo", "id": "hx-m1"}}])
    wait_for(lambda: healthy(ports["demo"]), 60, "demo recovered from a service beacon event")
    inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["status"] == "resolved"],
                   60, "the incident to be resolved")[0]
    assert inc["check"] == "service/demo" and inc["type"] == "service_down"
    assert show(runner_cli, inc["id"])["facts"]["signed"] is False


def test_an_event_about_a_service_stopped_on_purpose_starts_nothing_and_pages_no_one(
        salt_cli, pillar, lab, ports, receiver, master, runner_cli, local_cli):
    """Another minion claims hx-m1's demo is down (Salt's service beacon cannot sign; the claim is a hint).
    Stopped with hx_service.stop: audited as on purpose, nothing else. Intended up and really dead: recovered."""
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    assert salt_cli.run("hx_service.start", "demo", minion_tgt="hx-m1").returncode == 0
    stop = salt_cli.run("hx_service.stop", "demo", "reason=disk swap", minion_tgt="hx-m1")
    assert stop.returncode == 0 and stop.data["intent"]["want"] == "down", stop
    hint = {"tag": "salt/beacon/hx-m1/service/demo", "data": {"id": "hx-m1", "demo": {"running": False}}}
    fire_from(local_cli, "hx-m2", [hint])

    line = wait_for(lambda: [a for a in audit(master, "remediate.intended") if a["ts"] >= since], 60,
                    "the on-purpose stop to be audited")[0]
    assert "demo is stopped on purpose by operator" in line["detail"] and "(disk swap)" in line["detail"], line
    assert line["result"] == "no action" and line["target"] == "hx-m1"
    # The audit line is written after the decision: no action can follow it.
    assert lab.pid("demo") is None, "a hint restarted a service stopped on purpose"
    assert incidents(runner_cli, minion="hx-m1", since=since) == []
    assert receiver.posts == [], "someone was paged for a planned stop"
    assert not [a for a in audit(master) if a["ts"] >= since and a["what"].startswith("remediate.recover")]

    assert salt_cli.run("hx_service.start", "demo", minion_tgt="hx-m1").returncode == 0
    pid = lab.pid("demo")
    os.kill(pid, 9)
    wait_for(lambda: lab.pid("demo") is None, 15, "supervisord to see the kill")
    fire_from(local_cli, "hx-m2", [hint])
    wait_for(lambda: lab.pid("demo") not in (None, pid) and healthy(ports["demo"]), 60,
             "demo, intended up and dead, to be recovered from the same hint")
    inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["status"] == "resolved"],
                   60, "the incident to be resolved")[0]
    assert inc["check"] == "service/demo" and inc["type"] == "service_down"


def test_spent_minion_budget_holds_remediation_until_released(
        salt_run_cli, pillar, lab, ports, minions, master, hx_config, receiver, runner_cli, local_cli):
    hx_config(receiver.url, remediation={"budget": {"minion": {"max": 1, "window": 3600}}})
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False))
    assert runner_cli.run("hx_remediate.release", "minion=hx-m1").returncode == 0  # earlier tests spent some

    def fail_stormy(nonce):
        payload = sign(minions["hx-m1"], "hx-m1", "stormy_http",
                       {"check": "stormy_http", "status": "critical", "previous": "ok", "ts": time.time(), "nonce": nonce})
        fire_from(local_cli, "hx-m1", [{"tag": "salt/beacon/hx-m1/hx_health/stormy_http", "data": dict(payload, id="hx-m1")}])

    def resolved_count():
        return len([i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["status"] == "resolved"])

    assert lab.pid("stormy") is None
    fail_stormy("b1")
    wait_for(lambda: healthy(ports["stormy"]) and resolved_count() == 1, 60, "the first failure remediated")

    lab.ctl("stop", "stormy")
    fail_stormy("b2")
    held = wait_for(lambda: [a for a in audit(master, "remediate.suppress") if a["ts"] >= since], 60,
                    "the second remediation to be held back")[0]
    assert held["result"] == "budget" and "1/1" in held["detail"], held
    assert show(runner_cli, held["incident"])["status"] == "escalated", "people must look when the budget is spent"
    assert lab.pid("stormy") is None

    bad = salt_run_cli.run("hx_remediate.release", "minion=*")
    assert bad.returncode != 0 and "one minion id" in bad.data["comment"], bad
    ret = salt_run_cli.run("hx_remediate.release", "minion=hx-m1", "by=alice")
    assert ret.returncode == 0 and ret.data["released"] == 1, ret
    assert [a for a in audit(master, "remediate.release") if a["ts"] >= since][-1]["who"] == "alice"
    status = runner_cli.run("hx_remediate.status").data
    assert status["budgets"].get("hx-m1", {"used": 0})["used"] == 0, status["budgets"]

    salt_run_cli.run("hx_incident.resolve", held["incident"], "by=alice")
    fail_stormy("b3")
    wait_for(lambda: healthy(ports["stormy"]) and resolved_count() == 3, 60, "remediation again after the release")


def test_full_disk_runs_the_cleanup_state_then_escalates_when_that_is_not_enough(
        pillar, lab, ports, minions, master, tmp_path, runner_cli, local_cli):
    """disk >= critical -> P1; the policy applies salt://hx/cleanup/disk, which really deletes old files."""
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "old.log").write_text("x" * 1000)
    (junk / "new.log").write_text("y")
    old = time.time() - 10 * 86400
    os.utime(junk / "old.log", (old, old))
    # Thresholds below what / really uses: / is "full", and no cleanup of a scratch folder can fix it.
    probe = {"name": "disk_probe", "kind": "system", "thresholds": {"disk": {"warning": 1, "critical": 2}}}
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False, checks=[probe],
                                       cleanup={"disk": {"dirs": [str(junk)], "age_days": 7}}))
    assert runner_cli.run("hx_remediate.release", "minion=hx-m1").returncode == 0
    since = time.time()
    check = "disk_probe:disk:/"
    payload = sign(minions["hx-m1"], "hx-m1", check,
                   {"check": check, "status": "critical", "previous": "ok", "ts": time.time(), "nonce": "d1"})
    fire_from(local_cli, "hx-m1", [{"tag": f"salt/beacon/hx-m1/hx_health/{check}", "data": dict(payload, id="hx-m1")}])

    inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since)
                            if i["check"] == check and i["status"] == "escalated"], 90, "the disk incident")[0]
    rec = show(runner_cli, inc["id"])
    assert (rec["type"], rec["priority"], rec["resource"]) == ("disk", "P1", "/"), rec
    actions = [e for e in rec["timeline"] if e["kind"] == "action"]
    assert actions and actions[0]["text"].startswith("state.apply hx.cleanup.disk:"), rec["timeline"]
    assert "1 changed, 0 failed" in actions[0]["text"], actions
    assert not (junk / "old.log").exists(), "the cleanup state did not run on the minion"
    assert (junk / "new.log").exists(), "the cleanup removed a file younger than age_days"
    assert any("after state: critical" in e["text"] for e in rec["timeline"] if e["kind"] == "verification")
    applied = [a for a in audit(master, "remediate.state") if a["ts"] >= since]
    assert len(applied) == 1 and applied[0]["result"] == "applied", applied
    runner_cli.run("hx_incident.resolve", inc["id"], "by=test")


def test_predicted_full_disk_is_sent_by_the_beacon_and_notified(
        pillar, lab, ports, minions, receiver, event_listener, master, runner_cli):
    """The beacon's forecast event: a rising disk in the minion's own history, judged on the master."""
    history = os.path.join(minions["hx-m1"].config["cachedir"], "hx", "health_history.jsonl")
    os.makedirs(os.path.dirname(history), exist_ok=True)
    saved = open(history, encoding="utf-8").read() if os.path.exists(history) else None
    mount, now = "/hx-forecast-probe", time.time()
    # 6 %/h for 6 h, 83 % now: 90 % in about 1.2 h, well inside the 24 h horizon. The newest
    # sample is now: a mount missing from the newest disk sample counts as gone.
    with open(history, "a", encoding="utf-8") as fh:
        for i in range(12):
            fh.write(json.dumps(hx_history.compact(now - (11 - i) * 1800, {}, {mount: 50 + i * 3})) + "\n")
    try:
        since = time.time()
        data = service_pillar(lab, ports, beacon=False, checks=[
            {"name": "receiver_tcp", "kind": "tcp", "host": "127.0.0.1", "port": receiver.port, "timeout": 1}])
        data["beacons"] = {"hx_health": [{"for_cycles": 2}, {"horizon": 24}, {"checks": ["receiver_tcp"]}]}
        pillar.set("hx-m1", data)
        tag = f"salt/beacon/hx-m1/hx_health/forecast{mount}"
        ev = next(iter(wait_for(lambda: event_listener.get_events([(master.id, tag)], after_time=since),
                                60, "the beacon's forecast event")))
        assert ev.data["status"] == "warning" and ev.data["kind"] == "forecast", ev.data
        assert 0 < ev.data["hours_to_critical"] < 24, ev.data

        inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since)
                                if i["check"] == f"forecast{mount}"], 60, "the forecast incident")[0]
        rec = show(runner_cli, inc["id"])
        assert (rec["type"], rec["priority"], rec["resource"]) == ("disk_forecast", "P3", mount), rec
        assert rec["status"] == "open" and rec["level"] == 0, "a forecast is told, not escalated"
        assert any("notify only" in e["text"] for e in rec["timeline"] if e["kind"] == "action"), rec["timeline"]
        runner_cli.run("hx_incident.resolve", inc["id"], "by=test")
    finally:
        pillar.clear()
        with open(history, "w", encoding="utf-8") as fh:
            fh.write(saved or "")


def test_role_budget_holds_a_second_minion_while_the_first_is_remediated(
        pillar, lab, ports, minions, master, release_file_root, runner_cli, local_cli):
    """hx:role web on both minions, max 50 %: one remediation at a time in the role."""
    (release_file_root / "hx_test_slow.sls").write_text(
        "slow_fix:\n  cmd.run:\n    - name: sleep 8\n")
    ghost = [{"name": "ghost_proc", "kind": "process", "pattern": "no-such-process-hx-role-test"}]
    override = {"actions": {"process_down": {"action": "state", "sls": "hx_test_slow"}},
                "budget": {"role": {"max_pct": 50}}}
    for mid in ("hx-m1", "hx-m2"):
        pillar.set(mid, service_pillar(lab, ports, beacon=False, checks=ghost, role="web", remediation=override))
        assert runner_cli.run("hx_remediate.release", f"minion={mid}").returncode == 0
    since = time.time()

    def fail(mid, nonce):
        payload = sign(minions[mid], mid, "ghost_proc",
                       {"check": "ghost_proc", "status": "critical", "previous": "ok", "ts": time.time(), "nonce": nonce})
        fire_from(local_cli, mid, [{"tag": f"salt/beacon/{mid}/hx_health/ghost_proc", "data": dict(payload, id=mid)}])

    fail("hx-m1", "r1")
    wait_for(lambda: "hx-m1" in (runner_cli.run("hx_remediate.status").data or {}).get("active", {}), 60,
             "hx-m1's remediation to be in flight")
    fail("hx-m2", "r2")
    held = wait_for(lambda: [a for a in audit(master, "remediate.suppress") if a["ts"] >= since and a["target"] == "hx-m2"],
                    60, "hx-m2 held back by the role budget")[0]
    assert held["result"] == "budget" and "1 of 2 'web' minions already being remediated" in held["detail"], held
    ran = wait_for(lambda: [a for a in audit(master, "remediate.state") if a["ts"] >= since], 60, "hx-m1's state")
    assert [a["target"] for a in ran] == ["hx-m1"], ran
    for mid in ("hx-m1", "hx-m2"):
        for inc in incidents(runner_cli, minion=mid, since=since):
            runner_cli.run("hx_incident.resolve", inc["id"], "by=test")


def test_an_unsigned_flood_is_cut_before_it_costs_and_a_real_kill_is_still_remediated(
        pillar, lab, ports, master, event_listener, runner_cli, local_cli):
    """hx-m2 sends 5,000 unsigned service hints with invented names in one batch while demo on hx-m1
    is really SIGKILLed: the reactor's gate drops all but hx-m2's burst and rate before a runner job
    exists, the admitted ones are rejected from the cached name list, the master answers test.ping
    within 1 s meanwhile, and the kill is remediated from hx-m1's signed beacon."""
    import salt.client  # pylint: disable=import-outside-toplevel

    pol = hx_remediation.policy()
    # Earlier tests spent hx-m1's remediation budget: the kill below must be judged on its own.
    assert runner_cli.run("hx_remediate.release", "hx-m1").returncode == 0
    assert lab.ctl("start", "demo").returncode == 0
    since = time.time()
    pillar.set("hx-m1", service_pillar(lab, ports))
    wait_for(lambda: beacon_running(local_cli, "hx-m1", since + 1), 30, "the hx_health beacon to run")

    flood = [{"tag": f"salt/beacon/hx-m2/service/fake-{i}", "data": {"id": "hx-m2", f"fake-{i}": {"running": False}}}
             for i in range(5000)]
    # After the flood, one hint about hx-m1 (its own bucket): the reactor gates events in order,
    # so once this one is answered every flood event has been through the gate.
    marker = {"tag": "salt/beacon/hx-m1/service/stormy", "data": {"id": "hx-m1", "stormy": {"running": True}}}

    # The listener forgets events 120 s after they arrive, and the kill's recovery below may take
    # longer than that: every look keeps what it saw, by jid.
    # The flood's own arrival can take longer than that on a loaded machine, and the admitted
    # hints' jobs answer while it is still arriving, so every ping below also takes a look.
    seen, arrived = {}, set()

    def look():
        for e in event_listener.get_events([(master.id, "salt/run/*/ret")], after_time=since):
            if e.data.get("fun") == "runner.hx_remediate.handle":
                seen.setdefault(e.data["jid"], e)
        arrived.update(e.tag for e in event_listener.get_events([(master.id, "salt/beacon/hx-m2/service/*")], after_time=since))

    def handled(fragment):
        look()
        return [e for e in seen.values() if fragment in json.dumps(e.data.get("fun_args"))]

    client = salt.client.get_local_client(master.config_file)
    try:
        # In-process: one batch of ~0.5 MB does not fit a command line (the fire_master path of fire_from).
        def send(events):
            assert client.cmd_async("hx-m2", "event.fire", [
                {"data": None, "tag": None, "pretag": None, "events": events}, "fire_master"])

        send(flood)
        flood_at, flood_wall = time.monotonic(), time.time()
        old = lab.pid("demo")
        os.kill(old, 9)
        killed_at = time.monotonic()

        def ping(must_answer=True):
            started = time.monotonic()
            ret = client.cmd("hx-m1", "test.ping", timeout=30)
            look()
            if ret != {"hx-m1": True}:
                assert not must_answer, ret
                return float("inf")  # no answer within 30 s: the known stall, reported below
            return time.monotonic() - started

        # While the master fans the one 5,000-event request out to its bus (measured, not asserted:
        # see docs/reference/hx_remediate.md, "The reactor's gate").
        arrival = []
        look()
        while len(arrived) < len(flood):
            arrival.append(ping(must_answer=False))
            assert time.monotonic() - flood_at < 300, "the flood never reached the master's bus"
        on_bus_s = time.monotonic() - flood_at
        send([marker])  # behind every flood event on the bus: the reactor gates in bus order
        # While the reactor works through it: the promise.
        gating = []
        while len(gating) < 3 or not handled("hx-m1/service/stormy"):
            gating.append(ping())
            assert time.monotonic() - flood_at < 300, "the reactor never reached the end of the flood"
    finally:
        client.destroy()
    gated_s = time.monotonic() - flood_at
    print(f"\nflood of {len(flood)}: on the master bus after {on_bus_s:.1f} s (test.ping meanwhile "
          f"{', '.join(f'{p:.2f}' for p in arrival)} s); through the gate after {gated_s:.1f} s "
          f"(test.ping meanwhile max {max(gating):.2f} s over {len(gating)})")
    # Gated, the reactor runs ~60 jobs for the whole flood: alone on the machine every ping answered
    # within 0.26 s (docs/reference/hx_remediate.md); beside two other test workers on 2 cores the
    # median was 0.46 s and single pings reached 1.26 s. Ungated it would queue 5,000 runner jobs
    # of ~20 ms of Salt's own work each, 100 s of master time: pings of tens of seconds. The median
    # and a 5 s ceiling tell the two apart on a busy machine.
    assert statistics.median(gating) <= 1.0 and max(gating) <= 5.0, (statistics.median(gating), gating)

    # The kill's first report may be judged while the master still fans the flood out, so that its
    # re-check goes unanswered; then the beacon's first repeat (repeat_every 60 s after the report)
    # is the retry: reported after for_cycles (2 s), re-checked and verified (recheck_timeout 20 s
    # each in this module's hx_ops.yaml), restarted within demo's start_timeout (10 s).
    recovery_bound = 2 + 60 + 2 * 20 + 10
    wait_for(lambda: handled("hx-m2/service/fake-") is not None and lab.pid("demo") not in (None, old) and healthy(ports["demo"]),
             max(1.0, recovery_bound - (time.monotonic() - killed_at)), "demo, SIGKILLed during the flood, to be recovered")
    print(f"demo recovered {time.monotonic() - killed_at:.1f} s after its kill")

    def rejected_hints():
        return [a for a in audit(master, "remediate.reject") if a["ts"] >= since and a["target"] == "hx-m2"]

    # Admitted hints' jobs may still be finishing when the marker's is answered.
    counts = {}

    def one_line_per_job():
        r, j = rejected_hints(), handled("hx-m2/service/fake-")
        counts.update(audit_lines=len(r), jobs=len(j), outcomes=sorted({json.dumps((e.data.get("return") or {}).get("outcome")) for e in j}))
        return r if len(r) == len(j) else None

    try:
        rejected = wait_for(one_line_per_job, 30, "one audit line per admitted hint, none per dropped one")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {counts}") from None
    jobs = handled("hx-m2/service/fake-")
    assert len(rejected) == len(jobs)
    # The bucket's promise: in any span of T s at most burst + rate x T events pass. Every flood
    # event was admitted after the batch was sent and before the last admitted one's runner job got
    # its id (a jid is the master's local time of its creation).
    last_job = max(datetime.datetime.strptime(e.data["jid"], "%Y%m%d%H%M%S%f").timestamp() for e in jobs)
    admitted_max = pol["unsigned_burst"] + pol["unsigned_rate"] * (last_job - flood_wall) + 1
    print(f"runner jobs for the flood: {len(jobs)} (at most {admitted_max:.0f} allowed)")
    assert pol["unsigned_burst"] <= len(jobs) <= admitted_max, len(jobs)
    assert {(e.data.get("return") or {}).get("outcome") for e in jobs} == {"rejected"}
    assert all("is not declared in hx-m2's hx:services" in a["reason"] for a in rejected), rejected[:3]
    throttle = [a for a in audit(master, "remediate.throttle") if a["ts"] >= since]
    assert throttle and throttle[0]["target"] == "hx-m2", throttle
    assert "unsigned event(s) from hx-m2 dropped" in throttle[0]["reason"], throttle
    assert len(throttle) <= (time.time() - flood_wall) / 60 + 1, "dropped events are reported once a minute, not one by one"
    assert incidents(runner_cli, minion="hx-m2", since=since) == []
    inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=since) if i["status"] == "resolved"],
                   60, "the kill's incident to be resolved")[0]
    assert inc["check"] == "demo_http", inc


# Secrets of the channels below: each appears in what hx sends (URL path, JSON body, basic auth),
# so each can come back in an error text; none may reach anything hx writes or answers.
SLACK_TOKEN = "hXs3cr3tW3bh00kT0k3n42"
SLACK_PATH = f"/services/T0HXTEST1/B0HXTEST2/{SLACK_TOKEN}"
PD_KEY = "hxR0ut1ngK3yS3cr3t0000000000001"
AM_PASS = "hx-Am-P4ssw0rd-s3cr3t"
SECRET_FORMS = (SLACK_TOKEN, "T0HXTEST1/B0HXTEST2", PD_KEY, AM_PASS,
                __import__("base64").b64encode(f"hx:{AM_PASS}".encode()).decode())
L1_CHANNELS = ("am", "pd", "slack")


def leaked(data):
    if isinstance(data, bytes):
        return [f for f in SECRET_FORMS if f.encode() in data]
    return [f for f in SECRET_FORMS if f in data]


def test_no_secret_reaches_log_audit_store_show_or_report_when_receivers_fail(
        salt_run_cli, pillar, lab, ports, minions, master, hx_config, receiver, event_listener, runner_cli, local_cli):
    """Every channel (PagerDuty, Alertmanager with basic auth, Slack) with its receiver refusing
    connections, timing out and answering 500 with the request echoed (routing key, path, auth)."""
    channels = {
        "pd": {"kind": "pagerduty", "url": receiver.url + "/pd", "routing_key": PD_KEY},
        "am": {"kind": "alertmanager", "url": f"http://hx:{AM_PASS}@127.0.0.1:{receiver.port}"},
        "slack": {"kind": "slack", "url": receiver.url + SLACK_PATH},
    }
    levels = [{"name": "L1", "notify": list(L1_CHANNELS)}, {"name": "L2"}, {"name": "L3"}]
    # No schedule-driven L2 during the test: one open and one L1 round per incident.
    hx_config(receiver.url, timeout=3600, channels=channels, levels=levels, on_open=list(L1_CHANNELS),
              delivery={"timeout": 1, "retries": 1, "backoff": 0.1})
    ghost = [{"name": "ghost_proc", "kind": "process", "pattern": "no-such-process-hx-secret-test"}]
    pillar.set("hx-m1", service_pillar(lab, ports, beacon=False, checks=ghost))
    since = time.time()
    found = {}

    def phase(mode, nonce, expect):
        t0 = time.time()
        payload = sign(minions["hx-m1"], "hx-m1", "ghost_proc",
                       {"check": "ghost_proc", "status": "critical", "previous": "ok", "ts": time.time(), "nonce": nonce})
        fire_from(local_cli, "hx-m1", [{"tag": "salt/beacon/hx-m1/hx_health/ghost_proc", "data": dict(payload, id="hx-m1")}])
        inc = wait_for(lambda: [i for i in incidents(runner_cli, minion="hx-m1", since=t0)
                                if i["check"] == "ghost_proc"], 60, f"the {mode} incident")[0]

        def rounds_done():
            rec = show(runner_cli, inc["id"])
            notes = [e for e in rec["timeline"] if e["kind"] == "notification"]
            return rec if len(notes) == 2 * len(L1_CHANNELS) else None

        rec = wait_for(rounds_done, 90, f"open and L1 deliveries ({mode}) on the timeline")
        notes = [e for e in rec["timeline"] if e["kind"] == "notification"]
        assert rec["level"] == 1 and not any(e["ok"] for e in notes), notes
        assert sorted(e["channel"] for e in notes) == sorted(L1_CHANNELS * 2)
        assert all(expect in e["text"] for e in notes), (mode, [e["text"] for e in notes])
        found[mode] = rec
        assert runner_cli.run("hx_incident.resolve", inc["id"], "by=test").returncode == 0

    receiver.stop()
    try:
        phase("refused", "sec1", "ConnectionError")
    finally:
        receiver.start()
    receiver.clear()
    receiver.hang_next(4 * len(L1_CHANNELS), seconds=3)
    phase("timeout", "sec2", "timed out")
    receiver.clear()
    receiver.fail_next(4 * len(L1_CHANNELS), 500, echo=True)
    phase("500", "sec3", "HTTP 500: ")
    # The premise: the secrets were on the wire, and came back in the answers' bodies.
    assert {p["path"] for p in receiver.all_posts} >= {"/pd", SLACK_PATH, "/api/v2/alerts"}
    assert any(p["body"].get("routing_key") == PD_KEY for p in receiver.all_posts if isinstance(p["body"], dict))
    assert "request" in json.dumps([e["text"] for e in found["500"]["timeline"]]), "the echoed body is shown, scrubbed"

    outputs = []
    for rec in found.values():
        shown = salt_run_cli.run("hx_incident.show", rec["id"])
        rep = salt_run_cli.run("hx_incident.report", rec["id"])
        assert shown.returncode == 0 and rep.returncode == 0, (shown, rep)
        assert "FAILED after 2 attempt(s)" in rep.data["text"]
        outputs += [shown.stdout, rep.stdout, rep.data["text"], open(rep.data["path"], encoding="utf-8").read()]
    for text in outputs:
        assert not leaked(text), leaked(text)
    events = event_listener.get_events([(master.id, "*")], after_time=since)
    assert any(e.tag.startswith("hx/incident/") for e in events)
    assert not leaked(json.dumps([[e.tag, e.data] for e in events], default=str))

    # Everything the master wrote: its log file, the audit log, the incident store, the job cache.
    conf_dir = os.path.realpath(master.config_dir)
    written = {}
    for top, _, files in os.walk(master.config["root_dir"]):
        if os.path.realpath(top).startswith(conf_dir):
            continue  # hx_ops.yaml holds the secrets by design
        for name in files:
            path = os.path.join(top, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue  # sockets, and links into the config
            with open(path, "rb") as fh:
                written[path] = fh.read()
    log_file, audit_file = master.config["log_file"], hx_audit.log_path(master.config)
    assert log_file in written and b"hx_remediate:" in written[log_file], sorted(written)[:20]
    assert audit_file in written and b'"what": "notify"' in written[audit_file]
    assert any("incidents" in p for p in written), "the incident store was not searched"
    bad = {p: leaked(data) for p, data in written.items() if leaked(data)}
    assert not bad, bad
