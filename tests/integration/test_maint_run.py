"""Rolling maintenance runs (hx_maint runner) through a real master, two minions,
real HAProxy and supervisord running the demo app, under steady load.

Topology (the deployment tests' Fleet): hx-m1 and hx-m2 are app hosts of app
``demo`` (blue live, green idle); hx-m1 is also its load balancer. Each host's
maintenance pillar stops and restarts ``demo-blue``, checks ``demo_blue``,
scans a per-host app log and cleans a per-host temp dir. Patching is a real
``hx_patch.apply`` limited to a package that does not exist, through an apt
configuration with no source (``APT_CONFIG`` in Salt's ``system-environment``
pillar), so no package on this machine moves (the real upgrade is
tests/integration/test_patching.py).
"""
import json
import os
import threading
import time

import pytest
import yaml

import hx_audit
import hx_incidents
import hx_store
from tests.support.aptrepo import pkg_environment, private_apt
from tests.support.beacon_events import fire_from, sign
from tests.support.deps import require_binary
from tests.support.fleet import Fleet
from tests.support.wait import wait_for
from tests.support.webhook import Receiver

HOSTS = ("hx-m1", "hx-m2")
RATE = 100
OPEN = [{"name": "always", "start": "00:00", "end": "24:00", "tz": "UTC"}]


def closed_window():
    t = time.gmtime(time.time() + 12 * 3600)
    end = time.gmtime(time.time() + 12 * 3600 + 60)
    return [{"name": "far", "start": time.strftime("%H:%M", t), "end": time.strftime("%H:%M", end), "tz": "UTC"}]


class MaintFleet(Fleet):
    windows = OPEN

    def paths(self, mid):
        base = self.tmp / mid / "maint"
        return {"backup": base / "backup", "log": base / "app.log", "tmp": base / "tmp"}

    def maintenance(self, mid):
        p = self.paths(mid)
        return {
            "windows": self.windows,
            "backup": {"path": str(p["backup"]), "pattern": "*.tar.gz", "max_age_hours": 24},
            "stop_services": ["demo-blue"],
            "critical_services": ["demo-blue"],
            "health_checks": ["demo_blue"],
            "app_logs": [str(p["log"])],
            "cleanup": {"tmp_dirs": [str(p["tmp"])], "max_age_days": 7, "pkg_cache": False},
            "patch": {"pkgs": ["hx-ops-no-such-package"], "refresh": False},
            "drain_timeout": 20,
            "restore_timeout": 30,
        }

    def minion_pillar(self, mid, traffic=None):
        data = super().minion_pillar(mid, traffic=traffic)
        data["hx"]["maintenance"] = self.maintenance(mid)
        # The patch step runs real apt with no source to offer anything (test_patching proves
        # patching against a repository): over the machine's own sources each run's apt
        # simulation costs 3-4 s of CPU per host on the CI image.
        data.update(pkg_environment(private_apt(str(self.tmp / "apt"))[0]))
        return data

    def start(self):
        for mid in HOSTS:
            p = self.paths(mid)
            for d in (p["backup"], p["tmp"]):
                d.mkdir(parents=True, exist_ok=True)
            p["log"].write_text("")
            self.fresh_backup(mid)
        return super().start()

    def fresh_backup(self, mid, age_s=60):
        path = self.paths(mid)["backup"] / "nightly.tar.gz"
        path.write_bytes(b"backup")
        os.utime(path, (time.time() - age_s, time.time() - age_s))

    def log(self, mid, level, text):
        with open(self.paths(mid)["log"], "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())},000 {level} app: {text}\n")

    def rows(self):
        ret = self.salt_cli.run("hx_traffic.servers", "demo", minion_tgt="hx-m1")
        return {s: {"weight": r["weight"], "admin": r["admin"]} for s, r in ret.data["demo"].items()}

    def pid(self, mid):
        return self.salt_cli.run("hx_service.status", "demo-blue", minion_tgt=mid).data["demo-blue"]["pid"]

    def maint(self, *args, cli=None):
        return (cli or self.run).run("hx_maint.run", *args, _timeout=300)

    def wait_up(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            ret = self.salt_cli.run("hx_traffic.servers", "demo", minion_tgt="hx-m1").data["demo"]
            if all(ret[f"{m}_blue"]["status"] == "UP" for m in HOSTS):
                return
            assert time.monotonic() < deadline, ret
            time.sleep(0.5)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pillar_tree, local_cli, salt_run_cli, runner_cli, minions):
    require_binary("haproxy", "haproxy")
    fl = MaintFleet(tmp_path_factory.mktemp("maint"), pillar_tree, local_cli, salt_run_cli, runner_cli)
    try:
        yield fl.start()
    finally:
        fl.stop()
        pillar_tree.clear()


@pytest.fixture
def clean(fleet):
    """Each test starts with fresh backups, empty logs, an open window and everything in rotation."""
    before = fleet.rows()
    yield
    for mid in HOSTS:
        fleet.fresh_backup(mid)
        fleet.paths(mid)["log"].write_text("")
    if fleet.windows is not OPEN:
        fleet.windows = OPEN
        fleet.set_pillar()
    for server, row in fleet.rows().items():
        if row != before[server]:
            fleet.salt_cli.run("hx_traffic.set_state", "demo", server, before[server]["admin"], minion_tgt="hx-m1")
    fleet.wait_up()


@pytest.fixture
def pager(master):
    """A PagerDuty-like receiver paged at L1 only (on_open: none), in the master's hx_ops.yaml."""
    recv = Receiver().start()
    path = os.path.join(master.config_dir, "hx_ops.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"hx_incident": {
            "channels": {"pd": {"kind": "pagerduty", "url": recv.url + "/pd", "routing_key": "hx-maint-test-key"}},
            "on_open": [], "levels": [{"name": "L1", "notify": ["pd"]}, {"name": "L2"}],
            "escalation_timeout": 3600, "delivery": {"timeout": 5, "retries": 1}}}, fh)
    try:
        yield recv
    finally:
        os.remove(path)
        recv.stop()


def record(fleet, run_id):
    ret = fleet.read.run("hx_maint.status", f"run={run_id}")
    assert ret.returncode == 0, ret.stdout
    return ret.data["run"]


def phase_hosts(rec, name):
    return [p["host"] for p in rec["phases"] if p["phase"] == name]


def test_rolling_run_under_load_drops_nothing(fleet, clean, master, event_listener):
    before = fleet.rows()
    pids = {m: fleet.pid(m) for m in HOSTS}
    old = fleet.paths("hx-m1")["tmp"] / "old.tmp"
    new = fleet.paths("hx-m1")["tmp"] / "new.tmp"
    old.write_text("x")
    new.write_text("y")
    os.utime(old, (time.time() - 8 * 86400,) * 2)
    since = time.time()
    load = fleet.load()
    ret = fleet.maint("tgt=hx-m*", "batch=1")
    result = load.stop()
    assert ret.returncode == 0, ret.stdout
    data = ret.data
    assert data["outcome"] == "succeeded", data
    assert result["failed"] == 0, (result["errors"], result["samples"])
    assert result["total"] > RATE * 3
    assert data["batches"] == [["hx-m1"], ["hx-m2"]]
    # One host out of rotation at a time: hx-m1 back before hx-m2 leaves.
    rec = record(fleet, data["run"])
    order = [(p["phase"], p.get("host")) for p in rec["phases"] if p["phase"] in ("drain", "restore")]
    assert order == [("drain", "hx-m1"), ("restore", "hx-m1"), ("drain", "hx-m2"), ("restore", "hx-m2")]
    assert fleet.rows() == before
    assert all(fleet.pid(m) != pids[m] for m in HOSTS), "demo-blue was not stopped and started"
    assert not old.exists() and new.exists()
    assert data["compliance"] == {"emergency": False, "window_respected": True, "backup_verified": True,
                                  "verification_passed": True}
    for mid in HOSTS:
        host = rec["hosts"][mid]
        assert host["services_started"] == ["demo-blue"]
        assert host["patch"]["changes"] == {} and host["patch"]["args"]["pkgs"] == "hx-ops-no-such-package"
        assert host["reboot"]["action"] in ("none", "report")
        assert host["verification"]["passed"] is True
    with open(data["report"]["json"], encoding="utf-8") as fh:
        assert json.load(fh)["compliance"] == data["compliance"]
    with open(data["report"]["csv"], encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == ("date,hostname,duration_minutes,services_restarted,patches_applied,"
                        "verification_passed,reboot_required")
    mine = [line.split(",") for line in lines[-2:]]
    assert [c[1] for c in mine] == ["hx-m1", "hx-m2"]
    assert all(c[3:6] == ["1", "0", "true"] for c in mine), mine
    events = event_listener.wait_for_events(
        [(master.id, f"hx/maint/{data['run']}/{p}") for p in ("window", "lock", "backup", "precheck", "drain",
                                                              "stop_services", "patch", "cleanup", "reboot",
                                                              "start_services", "verify", "restore", "done")],
        timeout=30, after_time=since)
    assert events.found_all_events, events.missed
    status = fleet.read.run("hx_maint.status").data
    assert status["running"] is False and status["run"]["id"] == data["run"]


def test_failed_verification_stops_the_run_and_stays_out_of_rotation(fleet, clean, pager):
    fleet.log("hx-m1", "ERROR", "database connection lost")
    load = fleet.load()
    ret = fleet.maint("tgt=hx-m*", "batch=1")
    result = load.stop()
    assert ret.returncode != 0
    data = ret.data
    assert data["outcome"] == "failed", data
    assert data["hosts"]["hx-m1"]["outcome"] == "failed"
    assert data["hosts"]["hx-m1"]["failed_step"] == "verify"
    assert "database connection lost" in data["hosts"]["hx-m1"]["reason"]
    assert data["hosts"]["hx-m2"]["outcome"] == "skipped"
    assert result["failed"] == 0, (result["errors"], result["samples"])
    rows = fleet.rows()
    assert rows["hx-m1_blue"]["admin"] == "maint" and rows["hx-m1_green"]["admin"] == "maint"
    assert rows["hx-m2_blue"]["admin"] == "ready"
    assert {o["server"] for o in data["out_of_rotation"]} == {"hx-m1_blue", "hx-m1_green"}
    assert data["compliance"]["verification_passed"] is False
    assert data["compliance"]["window_respected"] is True
    assert [i.get("host") for i in data["incidents"]] == ["hx-m1"], data["incidents"]
    inc = fleet.run.run("hx_incident.show", data["incidents"][0]["id"])
    assert inc.returncode == 0 and "hx-m1" in inc.stdout and data["run"] in inc.stdout
    # Left out of rotation: high (P2) by the type registry's default, and escalated: L1 is paged.
    rec = inc.data["incident"]
    assert (rec["type"], rec["severity"], rec["priority"]) == ("maintenance", "high", "P2"), rec
    assert rec["status"] == "escalated" and rec["level"] == 1, rec["timeline"]
    page = pager.wait_for(lambda p: p["path"] == "/pd" and p["body"]["event_action"] == "trigger", 15, "the L1 page")
    assert page[0]["body"]["dedup_key"] == rec["id"] and page[0]["body"]["payload"]["severity"] == "error"
    assert "left out of rotation" in page[0]["body"]["payload"]["summary"]
    assert data["incidents"][0]["level"] == 1
    with open(data["report"]["csv"], encoding="utf-8") as fh:
        last = fh.read().splitlines()[-1].split(",")
    assert (last[1], last[5]) == ("hx-m1", "false")
    # the lock was released: a new run may start (and a plan sees it free)
    status = fleet.read.run("hx_maint.status").data
    assert status["running"] is False and status["run"]["outcome"] == "failed"


def test_stopped_critical_service_fails_verification(fleet, clean):
    pillar = fleet.maintenance("hx-m2")
    # demo-green is declared but not running: as a critical service it must fail the host.
    fleet.maintenance = lambda mid, base=fleet.maintenance: dict(base(mid), critical_services=["demo-blue", "demo-green"])
    try:
        fleet.set_pillar()
        ret = fleet.maint("tgt=hx-m2", "batch=1")
    finally:
        del fleet.maintenance
        fleet.set_pillar()
    assert pillar["critical_services"] == ["demo-blue"]
    assert ret.returncode != 0
    host = ret.data["hosts"]["hx-m2"]
    assert host["failed_step"] == "verify" and "demo-green is stopped" in host["reason"], host
    assert fleet.rows()["hx-m2_blue"]["admin"] == "maint"


def test_second_run_is_refused_while_the_first_holds_the_lock(fleet, clean, master, event_listener):
    since = time.time()
    box = {}
    other = master.salt_run_cli(timeout=300)
    worker = threading.Thread(target=lambda: box.update(ret=fleet.maint("tgt=hx-m*", "batch=1", cli=other)))
    worker.start()
    try:
        events = event_listener.wait_for_events([(master.id, "hx/maint/*/drain")], timeout=90, after_time=since)
        assert events.found_all_events, "the first run never drained a host"
        drained = next(iter(events.matches))
        first_id = drained.tag.split("/")[2]
        # The lease names the batch under work (remediation holds back there, and only there).
        held = fleet.read.run("hx_maint.status").data["lock"]
        assert held["batch"] == [drained.data["host"]], held
        second = fleet.maint("tgt=hx-m2", "batch=1")
        status = fleet.read.run("hx_maint.status").data
    finally:
        worker.join(timeout=240)
    assert second.returncode != 0
    assert second.data["outcome"] == "refused"
    assert "another maintenance run holds the lock" in second.data["comment"]
    assert first_id in second.data["comment"]
    assert second.data["holder"]["run"] == first_id
    assert status["running"] is True and status["lock"]["run"] == first_id
    assert box["ret"].returncode == 0, box["ret"].stdout
    assert fleet.read.run("hx_maint.status").data["running"] is False


def test_no_recent_backup_and_closed_window_refuse_emergency_runs(fleet, clean, master):
    before = fleet.rows()
    fleet.fresh_backup("hx-m2", age_s=25 * 3600)
    stale = fleet.maint("tgt=hx-m2")
    assert stale.returncode != 0
    assert stale.data["outcome"] == "refused"
    assert "no recent backup" in stale.data["comment"] and "25.0 h old" in stale.data["comment"]

    fleet.windows = closed_window()
    fleet.set_pillar()
    closed = fleet.maint("tgt=hx-m2")
    assert closed.returncode != 0
    assert "outside the maintenance window" in closed.data["comment"]
    assert fleet.rows() == before
    assert fleet.read.run("hx_maint.status").data["running"] is False

    # Two incidents on hx-m2: one remediation held back for planned work, one it did not.
    desk = hx_incidents.make_desk(master.config, fire=lambda tag, data: None)
    now = time.time()
    cls = hx_incidents.classify("service_down", "critical")
    made = {}
    for name, extra in (("held", {"held_since": now}), ("other", {})):
        inc = hx_incidents.new_incident(hx_incidents.make_id(now, "hx-m2", set(desk.store.ids())), "hx-m2",
                                        f"{name}_http", name, cls, now, f"{name} down on hx-m2", status="critical")
        desk.create(dict(inc, **extra))
        made[name] = inc["id"]

    emergency = fleet.maint("tgt=hx-m2", "emergency=True")
    assert emergency.returncode == 0, emergency.stdout
    held, other = desk.store.get(made["held"]), desk.store.get(made["other"])
    assert held["status"] == "resolved" and held["resolved_by"] == f"maintenance run {emergency.data['run']}", held
    assert "the planned work that held this back has ended" in held["timeline"][-1]["text"], held["timeline"][-1]
    assert other["status"] == "open", other
    desk.resolve(made["other"], "test")
    assert emergency.data["compliance"] == {"emergency": True, "window_respected": False,
                                            "backup_verified": False, "verification_passed": True}
    rec = record(fleet, emergency.data["run"])
    assert rec["window"]["hx-m2"]["emergency"] is True
    assert rec["backup"]["hx-m2"]["fresh"] is False
    assert fleet.rows() == before


def test_batch_that_would_empty_the_app_is_not_started(fleet, clean):
    before = fleet.rows()
    ret = fleet.maint("tgt=hx-m*", "batch=100%")
    assert ret.returncode != 0
    assert "would leave app demo with no live server" in ret.data["reason"]
    assert all(h["outcome"] == "skipped" for h in ret.data["hosts"].values()), ret.data
    assert fleet.rows() == before


def test_plan_and_orchestration_dry_run_change_nothing(fleet, clean):
    before = fleet.rows()
    last = (fleet.read.run("hx_maint.status").data["run"] or {}).get("id")
    plan = fleet.run.run("hx_maint.plan", "tgt=hx-m*", "batch=1")
    assert plan.returncode == 0, plan.stdout
    assert plan.data["would_run"] is True and plan.data["batches"] == [["hx-m1"], ["hx-m2"]]
    assert any("drain hx-m1:demo/hx-m1_blue" in s for s in plan.data["steps"]), plan.data["steps"]
    dry = fleet.run.run("state.orchestrate", "orch.maintenance", 'pillar={"tgt": "hx-m*", "batch": 1}', "test=True")
    assert dry.returncode == 0, dry.stdout
    assert "would run maintenance" in dry.stdout
    assert fleet.rows() == before
    assert (fleet.read.run("hx_maint.status").data["run"] or {}).get("id") == last


def test_an_operators_drain_is_refused_while_the_apps_blast_radius_is_spent(fleet, clean):
    """Two hosts: the default max_out (50 %) lets one of demo's hosts out at a time, whoever asks."""
    cli = fleet.salt_cli
    assert cli.run("hx_traffic.set_state", "demo", "hx-m1_blue", "maint", minion_tgt="hx-m1").returncode == 0
    before = fleet.rows()
    refused = cli.run("hx_traffic.drain", "demo", "hx-m2_blue", minion_tgt="hx-m1")
    assert refused.returncode != 0
    assert "blast radius: app demo allows 1 host(s) out of rotation at once" in str(refused.data), refused.data
    assert "hx-m1: out of rotation on the load balancer" in str(refused.data), refused.data
    assert fleet.rows() == before
    # A host that is out already takes nothing more away: never refused.
    again = cli.run("hx_traffic.drain", "demo", "hx-m1_green", "timeout=5", minion_tgt="hx-m1")
    assert again.returncode == 0, again.data
    forced = cli.run("hx_traffic.drain", "demo", "hx-m2_blue", "timeout=20", "budget=False", minion_tgt="hx-m1")
    assert forced.returncode == 0, forced.data
    assert fleet.rows()["hx-m2_blue"]["admin"] == "maint"


def test_a_drain_waits_while_a_remediation_works_on_the_other_host(
        fleet, clean, master, minions, event_listener, release_file_root, tmp_path):
    """Blast radius 1 for demo: a remediation on hx-m2 holds hx-m2's slot while its action runs; a
    maintenance run of hx-m1 asks the same budget before draining, waits naming the remediation,
    and drains once it has ended. The action waits on a file the test creates, so the order is
    the test's, not the machine's."""
    gate = tmp_path / "open"
    (release_file_root / "hx_test_gate.sls").write_text(
        f"gate:\n  cmd.run:\n    - name: timeout 120 sh -c 'until [ -e {gate} ]; do sleep 0.2; done'\n")
    data = fleet.minion_pillar("hx-m2")
    data["hx"]["health"]["checks"].append(
        {"name": "ghost_proc", "kind": "process", "pattern": "no-such-process-hx-blast-test"})
    data["hx"]["remediation"] = {"actions": {"process_down": {"action": "state", "sls": "hx_test_gate"}}}
    fleet.pillar_tree.set("hx-m2", data)
    runner = master.salt_run_cli(timeout=300)
    assert runner.run("hx_remediate.release", "minion=hx-m2").returncode == 0
    since = time.time()
    box = {}
    maint = threading.Thread(target=lambda: box.update(ret=fleet.maint("tgt=hx-m1", "batch=1", cli=runner)))
    try:
        payload = sign(minions["hx-m2"], "hx-m2", "ghost_proc", {"check": "ghost_proc", "status": "critical",
                                                                 "previous": "ok", "ts": time.time(), "nonce": "blast1"})
        fire_from(fleet.salt_cli, "hx-m2", [{"tag": "salt/beacon/hx-m2/hx_health/ghost_proc",
                                              "data": dict(payload, id="hx-m2")}])
        store = hx_store.Store(master.config)
        slot = wait_for(lambda: [h for h in store.all(f"{hx_store.ROTATION}/demo").values() if h["host"] == "hx-m2"],
                        60, "the remediation of hx-m2 to hold its slot")[0]
        assert slot["kind"] == "remediate" and "remediation of hx-m2" in slot["what"], slot
        maint.start()
        waiting = event_listener.wait_for_events([(master.id, "hx/maint/*/wait_budget")], timeout=120, after_time=since)
        assert waiting.found_all_events, "the maintenance run did not wait for the budget"
        holders = next(iter(waiting.matches)).data["holders"]
        assert "hx:apps:demo:max_out" in holders and "hx-m2: remediation of hx-m2 (state ghost_proc" in holders, holders
        assert fleet.rows()["hx-m1_blue"]["admin"] == "ready"  # nothing drained while it waits
        # The operator's view of the budget names the same holder.
        shown = fleet.read.run("hx_deploy.status", "app=demo").data["rotation"]
        assert shown["max_out"] == 1 and [s["host"] for s in shown["held"]] == ["hx-m2"], shown
        assert "remediation of hx-m2" in shown["held"][0]["lease"] and shown["held"][0]["stale"] is None, shown
    finally:
        gate.write_text("")
        if maint.ident:
            maint.join(timeout=300)
        fleet.set_pillar()
    assert box["ret"].returncode == 0, box["ret"].stdout
    rec = record(fleet, box["ret"].data["run"])
    phases = [p["phase"] for p in rec["phases"]]
    assert phases.index("wait_budget") < phases.index("waited_budget") < phases.index("drain"), phases
    assert rec["waited"][0]["for"] == "blast-radius budget"
    assert not store.all(f"{hx_store.ROTATION}/demo"), "slots given back at the end of both"
    ran = [a for a in hx_audit.read(master.config, what="remediate.state") if a["ts"] >= since]
    assert [a["target"] for a in ran] == ["hx-m2"], ran
    for inc in fleet.read.run("hx_incident.list", "minion=hx-m2", f"since={since}").data["incidents"]:
        fleet.read.run("hx_incident.resolve", inc["id"], "by=test")


def test_a_maintenance_run_waits_for_a_deployment_and_a_deployment_refuses_during_maintenance(
        fleet, clean, master, event_listener):
    """Last in this module: it leaves the deployment's color live.

    Started together under load: the maintenance run waits for the deployment
    of the app on its host, then drains; a deployment asked for while the run
    holds the host is refused naming it. Nothing fails and the final weights
    are the deployment's, not the ones maintenance saw before it waited."""
    live = fleet.live()
    since = time.time()
    load = fleet.load()
    box = {}
    deployer = master.salt_run_cli(timeout=300)
    maintainer = master.salt_run_cli(timeout=300)
    deploy = threading.Thread(target=lambda: box.update(deploy=deployer.run(
        "hx_deploy.blue_green", "app=demo", "version=1.1.0", "bake=6", _timeout=300)))
    maint = threading.Thread(target=lambda: box.update(maint=fleet.maint("tgt=hx-m1", "batch=1", cli=maintainer)))
    deploy.start()
    try:
        events = event_listener.wait_for_events([(master.id, "hx/deploy/demo/deploy")], timeout=90, after_time=since)
        assert events.found_all_events, "the deployment never started"
        deployment = list(events)[0].data["id"]
        maint.start()
        waiting = event_listener.wait_for_events([(master.id, "hx/maint/*/wait_deploy")], timeout=90, after_time=since)
        assert waiting.found_all_events, "the maintenance run did not wait for the deployment"
        deploy.join(timeout=240)
        drained = event_listener.wait_for_events([(master.id, "hx/maint/*/drain")], timeout=90, after_time=since)
        assert drained.found_all_events, "the maintenance run never drained after the deployment"
        refused = fleet.deploy("1.2.0")
    finally:
        deploy.join(timeout=240)
        if maint.is_alive() or maint.ident:
            maint.join(timeout=300)
        result = load.stop()
    assert box["deploy"].returncode == 0, box["deploy"].stdout
    assert box["maint"].returncode == 0, box["maint"].stdout
    assert result["failed"] == 0, (result["errors"], result["samples"])
    assert refused.returncode != 0 and refused.data["outcome"] == "refused", refused.data
    assert "a maintenance run covers hx-m1" in refused.data["comment"] and box["maint"].data["run"] in refused.data["comment"]
    rec = record(fleet, box["maint"].data["run"])
    assert rec["waited"] and deployment in rec["waited"][0]["for"], rec.get("waited")
    phases = [p["phase"] for p in rec["phases"]]
    assert phases.index("waited_deploy") < phases.index("drain")
    new = fleet.live()
    assert new != live
    rows = fleet.rows()
    assert rows[f"hx-m1_{new}"]["weight"] > 0 and rows[f"hx-m1_{live}"]["weight"] == 0, rows
    assert all(r["admin"] == "ready" for r in rows.values()), rows
    assert fleet.sample_versions()["versions"] == {"1.1.0": 200}
