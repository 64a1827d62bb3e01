"""Blue-green deployments through a real master, two minions, real HAProxy,
real supervisord running the demo app's slots, and a load generator sending
steady traffic through HAProxy during every deployment.

Topology: hx-m1 and hx-m2 are app hosts (127.0.0.21 / .22, each with its
own supervisord running demo-blue and demo-green); hx-m1 is also the load
balancer (HAProxy started by the test, driven through hx_traffic).
"""
import signal
import subprocess
import threading
import time

import pytest

from tests.support.deps import require_binary
from tests.support.fleet import RATE, Fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pillar_tree, local_cli, salt_run_cli, runner_cli, minions):
    require_binary("haproxy", "haproxy")
    fl = Fleet(tmp_path_factory.mktemp("fleet"), pillar_tree, local_cli, salt_run_cli, runner_cli)
    try:
        yield fl.start()
    finally:
        fl.stop()
        pillar_tree.clear()


def history(fleet):
    return fleet.read.run("hx_deploy.history", "app=demo").data["deployments"]


def test_blue_green_under_load_then_rollback(fleet):
    before = fleet.live()
    load = fleet.load()
    ret = fleet.deploy("1.1.0")
    result = load.stop()
    assert ret.returncode == 0, ret.stdout
    assert ret.data["outcome"] == "succeeded"
    assert result["failed"] == 0, result
    assert result["total"] > RATE * 3
    after = fleet.live()
    assert after != before
    assert fleet.sample_versions()["versions"] == {"1.1.0": 200}
    weights = fleet.weights()
    assert all(w == 0 for s, w in weights.items() if s.endswith(before)), weights
    status = fleet.read.run("hx_deploy.status", "app=demo").data
    assert status["live"] == after
    assert all(slots[before]["state"] == "running" for slots in status["versions"].values()), "old color not warm"

    load = fleet.load()
    back = fleet.run.run("hx_deploy.rollback", "app=demo", _timeout=180)
    result = load.stop()
    assert back.returncode == 0, back.stdout
    assert result["failed"] == 0, result
    assert fleet.live() == before
    assert fleet.sample_versions()["versions"] == {"1.0.0": 200}


def test_version_failing_health_never_gets_traffic(fleet):
    live = fleet.live()
    load = fleet.load()
    ret = fleet.deploy("2.0.0-bad")
    result = load.stop()
    assert ret.returncode != 0
    assert ret.data["outcome"] == "failed"
    assert "healthy" in ret.data["reason"]
    assert result["failed"] == 0, result
    assert "2.0.0-bad" not in result["versions"]
    assert fleet.live() == live
    last = history(fleet)[0]
    assert (last["version"], last["outcome"]) == ("2.0.0-bad", "failed")
    assert last["reason"]
    idle = "green" if live == "blue" else "blue"
    status = fleet.read.run("hx_deploy.status", "app=demo").data
    assert all(slots[idle]["state"] == "stopped" for slots in status["versions"].values()), status["versions"]


def test_version_with_5xx_is_rolled_back_during_bake(fleet):
    live = fleet.live()
    load = fleet.load()
    ret = fleet.deploy("2.1.0-5xx", "bake=20")
    result = load.stop()
    assert ret.returncode != 0
    assert ret.data["outcome"] == "rolled_back", ret.data
    assert "error rate" in ret.data["reason"]
    assert fleet.live() == live
    assert fleet.sample_versions()["versions"].get("2.1.0-5xx") is None
    # Detection happens at the first bake sample with enough requests (1 s
    # interval): failures are bounded by a few seconds of the error share,
    # far below what the 20 s bake would have let through.
    assert 0 < result["failed"] <= RATE * 0.3 * 6, result
    last = history(fleet)[0]
    assert (last["version"], last["outcome"]) == ("2.1.0-5xx", "rolled_back")


def test_haproxy_reload_during_bake_keeps_weights(fleet, event_listener, master):
    live = fleet.live()
    since = time.time()
    load = fleet.load()
    box = {}
    other_cli = master.salt_run_cli(timeout=240)
    worker = threading.Thread(
        target=lambda: box.update(ret=other_cli.run("hx_deploy.blue_green", "app=demo", "version=1.2.0", "bake=8"))
    )
    worker.start()
    try:
        events = event_listener.wait_for_events([(master.id, "hx/deploy/demo/bake")], timeout=90, after_time=since)
        assert events.found_all_events, "the deployment never reached bake"
        fleet.hap.reload()
    finally:
        worker.join(timeout=180)
        result = load.stop()
    ret = box["ret"]
    assert ret.returncode == 0, ret.stdout
    assert result["failed"] == 0, (result["errors"], result["samples"])
    new = fleet.live()
    assert new != live, "weights were lost across the reload"
    assert fleet.sample_versions()["versions"] == {"1.2.0": 200}


def test_refusals_leave_traffic_untouched(fleet, minions):
    weights = fleet.weights()
    load = fleet.load()
    try:
        unknown = fleet.run.run("hx_deploy.blue_green", "app=nosuch", "version=1.0.0")
        assert unknown.returncode != 0 and "unknown app 'nosuch'" in unknown.stdout

        bad = fleet.deploy("1.0;rm -rf /")
        assert bad.returncode != 0 and "version" in bad.data["comment"]

        fleet.set_pillar(traffic={"traffic": {"driver": "haproxy", "haproxy": dict(
            fleet.hap.pillar()["hx"]["traffic"]["haproxy"], socket=str(fleet.tmp / "nowhere.sock"))}})
        try:
            unreachable = fleet.deploy("1.1.0")
        finally:
            fleet.set_pillar()
        assert unreachable.returncode != 0
        assert "nowhere.sock" in unreachable.data["reason"]

        with minions["hx-m2"].stopped():
            down = fleet.deploy("1.1.0")
        assert down.returncode != 0
        assert "hx-m2" in down.data["reason"]
    finally:
        result = load.stop()
    assert result["failed"] == 0, result
    assert fleet.weights() == weights


def test_second_concurrent_deployment_is_refused(fleet, event_listener, master):
    since = time.time()
    box = {}
    # A CLI object runs one command at a time: the background deployment gets its own.
    other_cli = master.salt_run_cli(timeout=240)
    worker = threading.Thread(
        target=lambda: box.update(ret=other_cli.run("hx_deploy.blue_green", "app=demo", "version=1.1.0", "bake=6"))
    )
    worker.start()
    try:
        events = event_listener.wait_for_events([(master.id, "hx/deploy/demo/deploy")], timeout=60, after_time=since)
        assert events.found_all_events
        second = fleet.deploy("1.2.0")
    finally:
        worker.join(timeout=180)
    assert second.returncode != 0
    assert second.data["outcome"] == "refused"
    assert "another deployment of demo is running" in second.data["comment"]
    assert "1.1.0" in second.data["comment"]
    assert box["ret"].returncode == 0, box["ret"].stdout


def test_plan_and_orchestration_dry_run_change_nothing(fleet):
    weights = fleet.weights()
    plan = fleet.run.run("hx_deploy.plan", "app=demo", "version=1.2.0")
    assert plan.returncode == 0, plan.stdout
    assert "raise" in plan.stdout and "drain" in plan.stdout
    dry = fleet.run.run(
        "state.orchestrate", "orch.blue_green", 'pillar={"app": "demo", "version": "1.2.0"}', "test=True"
    )
    assert dry.returncode == 0, dry.stdout
    assert "would deploy" in dry.stdout
    assert fleet.weights() == weights


def test_orchestration_deploys_and_fails_like_the_runner(fleet):
    live = fleet.live()
    good = fleet.run.run(
        "state.orchestrate", "orch.blue_green", 'pillar={"app": "demo", "version": "1.0.0", "bake": 2}', _timeout=240
    )
    assert good.returncode == 0, good.stdout
    assert fleet.live() != live
    bad = fleet.run.run(
        "state.orchestrate", "orch.blue_green", 'pillar={"app": "demo", "version": "2.0.0-bad"}', _timeout=240
    )
    assert bad.returncode != 0


def test_a_killed_deployment_is_abandoned_and_the_next_one_proceeds(fleet, event_listener, master):
    """The deploying salt-run SIGKILLed mid-bake: its lease names a process that is gone, so it is
    stale at once on this master (elsewhere it expires after hx_lease:ttl); the next deployment takes
    it over, the killed one's record says abandoned, and traffic never fails."""
    since = time.time()
    load = fleet.load()
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        fleet.run.cmdline("hx_deploy.blue_green", "app=demo", "version=1.1.0", "bake=300"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        events = event_listener.wait_for_events([(master.id, "hx/deploy/demo/bake")], timeout=120, after_time=since)
        assert events.found_all_events, "the deployment never reached bake"
        killed_id = list(events)[0].data["id"]
        baking = fleet.live()
        held = fleet.read.run("hx_deploy.status", "app=demo").data["running"]
        assert held["lock"]["deployment"] == killed_id and held["lock"]["pid"] == proc.pid
        assert held["lock"]["services"] == [f"demo-{held['lock']['color']}"], held
        assert held["stale"] is None and "heartbeat" in held["lease"]
        proc.kill()
        proc.wait(30)
        stale = fleet.read.run("hx_deploy.status", "app=demo").data["running"]
        assert stale["stale"] == "its process is gone", stale
        ret = fleet.deploy("1.2.0", "bake=2")
    finally:
        if proc.poll() is None:
            proc.kill()
        result = load.stop()
    assert ret.returncode == 0, ret.stdout
    assert ret.data["outcome"] == "succeeded" and ret.data["from_color"] == baking, ret.data
    assert result["failed"] == 0, (result["errors"], result["samples"])
    assert fleet.sample_versions()["versions"] == {"1.2.0": 200}
    killed = fleet.read.run("hx_deploy.history", "app=demo").data["records"][killed_id]
    assert killed["outcome"] == "abandoned", killed["outcome"]
    assert killed["reason"].startswith(f"abandoned by {master.id} (pid {proc.pid}): its process is gone"), killed
    assert fleet.read.run("hx_deploy.status", "app=demo").data["running"] is None


def _store_view(fleet):
    """What a refused call must leave as it was: deployment records, the lease, every slot's service state."""
    records = sorted(fleet.read.run("hx_deploy.history", "app=demo", "limit=10000").data["records"])
    status = fleet.read.run("hx_deploy.status", "app=demo").data
    states = {h: {c: (s or {}).get("state") for c, s in slots.items()} for h, slots in status["versions"].items()}
    return records, status["running"], states


# Through salt-run: how the command line hands each over (YAML: .inf a float, 1e12 and nan text).
# The rest of the table: tests/functional/test_hx_deploy_bad_numbers.py.
BAD_NUMBERS = [
    ("bake=.inf", "bake: must be a number from 0 to 86400 s, got inf"),
    ("bake=.nan", "bake: must be a number from 0 to 86400 s, got nan"),
    ("bake=nan", "bake: must be a number from 0 to 86400 s, got 'nan'"),
    ("bake=1e12", "bake: must be a number from 0 to 86400 s, got '1e12'"),
]


def test_non_finite_and_out_of_range_numbers_are_refused_before_anything_changes(fleet):
    """bake=inf/nan/1e12, a bool, a negative, a string (typed or in pillar): refused naming the key and its
    range before the lease is taken; weights, records, lease and services as they were, no failed request."""
    weights = fleet.weights()
    before = _store_view(fleet)
    load = fleet.load()
    try:
        for arg, message in BAD_NUMBERS:
            ret = fleet.deploy("1.3.0", arg)
            assert ret.returncode != 0, (arg, ret.stdout)
            assert ret.data["outcome"] == "refused" and ret.data["comment"] == message, (arg, ret.data)
        for value, shown in ((float("inf"), "inf"), (float("nan"), "nan")):
            fleet.set_pillar(master_app=fleet.app(bake=value))
            try:
                ret = fleet.deploy("1.3.0")
            finally:
                fleet.set_pillar()
            assert ret.returncode != 0 and ret.data["outcome"] == "refused", ret.data
            assert ret.data["comment"] == f"hx:apps:demo: deploy.bake: must be a number from 0 to 86400 s, got {shown}"
    finally:
        result = load.stop()
    assert result["failed"] == 0, result
    assert fleet.weights() == weights
    assert _store_view(fleet) == before


def _deploy_until_baking(fleet, event_listener, master, out):
    """Start ``salt-run hx_deploy.blue_green`` with a long bake; return (process, deployment id) once it bakes
    with all traffic switched (bounded waits on the record's event and on HAProxy's weights)."""
    since = time.time()
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        fleet.run.cmdline("hx_deploy.blue_green", "app=demo", "version=1.3.0", "bake=300"),
        stdout=out, stderr=subprocess.STDOUT)
    events = event_listener.wait_for_events([(master.id, "hx/deploy/demo/bake")], timeout=120, after_time=since)
    assert events.found_all_events, "the deployment never reached bake"
    return proc, list(events)[0].data["id"]


@pytest.mark.parametrize("sig, why", [(signal.SIGINT, "an operator's Ctrl-C"),
                                      (signal.SIGTERM, "the process was told to stop")])
def test_a_signal_after_the_switch_restores_traffic(fleet, event_listener, master, tmp_path, sig, why):
    """An operator's Ctrl-C (SIGINT) or a SIGTERM to the deploying salt-run mid-bake: traffic back on the
    old color and read back, the record rolled back with the reason, the lease released, no failed request."""
    old = fleet.live()
    load = fleet.load()
    with open(tmp_path / "salt-run.out", "w+", encoding="utf-8") as out:
        proc, dep = _deploy_until_baking(fleet, event_listener, master, out)
        try:
            assert fleet.live() != old, "traffic had not switched"
            proc.send_signal(sig)
            proc.wait(90)  # the restore takes seconds; 90 s is the bound of two Salt rounds and a restore
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            result = load.stop()
        out.seek(0)
        printed = out.read()
    assert proc.returncode != 0, printed
    assert fleet.live() == old, printed
    assert result["failed"] == 0, (result["errors"], result["samples"])
    record = fleet.read.run("hx_deploy.history", "app=demo").data["records"][dep]
    assert record["outcome"] == "rolled_back", (record["outcome"], record.get("reason"), printed)
    assert record["reason"] == f"interrupted by {signal.Signals(sig).name} ({why})", record["reason"]
    assert [p["phase"] for p in record["phases"]][-3:] == ["rollback", "rolled_back", "done"]
    status = fleet.read.run("hx_deploy.status", "app=demo").data
    assert status["running"] is None and status["live"] == old
    assert fleet.sample_versions()["versions"].get("1.3.0") is None
