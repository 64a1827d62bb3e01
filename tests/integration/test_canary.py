"""Canary deployments through a real master, two minions, real HAProxy and
supervisord (the Fleet of tests/support/fleet.py) under steady load.

Every step's weights are read back from HAProxy; the share of requests the
canary served is taken from HAProxy's own counters (the step figures) and
cross-checked against what the load generator saw (``X-App-Version``).
"""
import math
import signal
import subprocess
import threading
import time

import pytest

from tests.support.deps import require_binary
from tests.support.fleet import Fleet
from tests.support.wait import wait_for

# Fast steps for tests: a 1 s sample, 20 requests before any verdict, a
# 20 ms latency floor so sub-millisecond noise never fails on the ratio.
CANARY = {"step_interval": 4, "sample_interval": 1, "min_requests": 20, "latency_floor": 20}
FAST = 500  # requests/s asked of the generator: ~2,000 requests in a 5 s step, when the machine keeps up


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pillar_tree, local_cli, salt_run_cli, runner_cli, minions):
    require_binary("haproxy", "haproxy")
    fl = Fleet(tmp_path_factory.mktemp("canary"), pillar_tree, local_cli, salt_run_cli, runner_cli)
    fl.canary = dict(CANARY)
    try:
        yield fl.start()
    finally:
        fl.stop()
        pillar_tree.clear()


def canary(fleet, version, *args, cli=None, timeout=240):
    return (cli or fleet.run).run("hx_deploy.canary", "app=demo", f"version={version}", *args, _timeout=timeout)


def colors(fleet):
    """(live color, {color: weight}) as HAProxy has them (one weight per color on every host)."""
    weights = fleet.weights()
    per = {}
    for server, weight in weights.items():
        per.setdefault(server.split("_")[-1], set()).add(weight)
    assert all(len(w) == 1 for w in per.values()), weights
    per = {c: w.pop() for c, w in per.items()}
    return per


def status(fleet):
    ret = fleet.read.run("hx_deploy.status", "app=demo")
    assert ret.returncode == 0, ret.stdout
    return ret.data


def in_background(master, fn, *args, **kwargs):
    box = {}
    cli = master.salt_run_cli(timeout=300)
    worker = threading.Thread(target=lambda: box.update(ret=cli.run(fn, *args, _timeout=300, **kwargs)))
    worker.start()
    return worker, box


def wait_event(event_listener, master, tag, since, timeout=120):
    events = event_listener.wait_for_events([(master.id, tag)], timeout=timeout, after_time=since)
    assert events.found_all_events, f"no {tag} event"
    return events.matches


def share_tolerance(step, threads):
    """Points a step's measured share may differ from its percent, from its own sample size.

    HAProxy's weighted round-robin is exact over a whole cycle of the weights (the sum of the
    servers' weights over their greatest common divisor: each host has a canary and a stable
    server); a step's counter window can cut one cycle short and catch up to ``threads``
    requests in flight at each end. Nothing else may move the share."""
    wc, ws = step["weights"]["canary"], step["weights"]["stable"]
    cycle = 2 * (wc + ws) // math.gcd(wc, ws)
    total = step["canary"]["requests"] + step["stable"]["requests"]
    return 100.0 * (cycle + 2 * threads) / total


def test_good_canary_is_promoted_with_exact_shares(fleet, event_listener, master):
    stable = fleet.live()
    since = time.time()
    load = fleet.load(rate=FAST, threads=8)
    ret = canary(fleet, "1.1.0", "steps=[10, 25, 50, 100]", "step_interval=5")
    result = load.stop()
    assert ret.returncode == 0, ret.stdout
    data = ret.data
    assert data["outcome"] == "succeeded", data
    assert result["failed"] == 0, result
    assert [s["percent"] for s in data["steps"]] == [10, 25, 50, 100]
    served = 0
    for step in data["steps"]:
        total = step["canary"]["requests"] + step["stable"]["requests"]
        assert step["verdict"] == "pass", step
        assert step["weights"]["canary"] * 100 / (step["weights"]["canary"] + step["weights"]["stable"]) == step["percent"]
        if step["percent"] < 100:
            # The step's window counted the traffic sent while it watched: at least half of
            # the rate the generator measured over the whole canary.
            assert total >= 0.5 * result["rps"] * step["watched"], (total, result["rps"], step)
        assert abs(step["share"] - step["percent"]) <= share_tolerance(step, threads=8), step
        served += step["canary"]["requests"]
    # What HAProxy counted for the canary, clients got from 1.1.0 (they also
    # got it between steps and after the promotion, outside every window).
    assert served <= result["versions"]["1.1.0"], (served, result["versions"])
    print("canary shares:", [(s["percent"], s["share"], s["canary"]["requests"] + s["stable"]["requests"])
                             for s in data["steps"]])
    new = fleet.live()
    assert new != stable
    assert colors(fleet) == {new: 100, stable: 0}
    assert fleet.sample_versions()["versions"] == {"1.1.0": 200}
    wait_event(event_listener, master, "hx/deploy/demo/step", since)
    steps = event_listener.get_events([(master.id, "hx/deploy/demo/step")], after_time=since)
    figures = sorted((e.data for e in steps), key=lambda d: d["step"])
    assert [f["percent"] for f in figures] == [10, 25, 50, 100]
    assert all({"canary", "stable", "health", "verdict", "share", "weights"} <= set(f) for f in figures)
    state = status(fleet)
    assert state["live"] == new and state["running"] is None
    assert all(slots[stable]["state"] == "running" for slots in state["versions"].values()), "stable not warm"


def exposure(record):
    """Seconds the canary held its first share: from the weight change to the verified rollback (record times)."""
    at = {}
    for phase in record["phases"]:
        at.setdefault(phase["phase"], phase["at"])
    return at["rolled_back"] - at["shift"]


def test_version_with_5xx_is_rolled_back_at_the_first_step(fleet):
    stable = fleet.live()
    serving = fleet.sample_versions()["versions"]  # whatever earlier tests left live
    load = fleet.load(rate=FAST, threads=8)
    ret = canary(fleet, "2.2.0-5xx20", "steps=[10, 50, 100]", "step_interval=6")
    result = load.stop()
    assert ret.returncode != 0
    data = ret.data
    assert data["outcome"] == "rolled_back", data
    assert len(data["steps"]) == 1, data["steps"]
    first = data["steps"][0]
    assert first["verdict"] == "fail" and "error rate" in "; ".join(first["reasons"])
    assert first["canary"]["error_rate"] >= 10, first
    assert fleet.live() == stable
    assert colors(fleet)[stable] == 100
    assert fleet.sample_versions()["versions"] == serving
    assert result["errors"]["http_5xx"] == result["failed"]
    history = fleet.read.run("hx_deploy.history", "app=demo").data
    last = history["deployments"][0]
    assert (last["version"], last["outcome"]) == ("2.2.0-5xx20", "rolled_back")
    assert last["steps"][0]["canary"]["errors"] > 0 and last["steps"][0]["verdict"] == "fail"
    assert "error rate" in last["reason"]
    # The promise: a breach is judged at the first sample that has
    # min_requests canary requests (at 10 % of FAST that is the first one).
    record = history["records"][last["id"]]
    assert record["canary"]["results"][0]["samples"] == 1, record["canary"]["results"][0]
    # What got through follows from how long the canary held its share
    # (record times) at the rate the load generator measured: 10 % of the
    # requests, 20 % of those answered 5xx, plus 5 standard deviations.
    held = exposure(record)
    expected = 0.10 * 0.20 * result["rps"] * held
    assert 0 < result["failed"] <= expected + 5 * math.sqrt(expected) + 5, (result["failed"], expected, held)
    # HAProxy counted the verdict's window (``watched`` s); what it did not
    # count got through while the weights were read back and restored.
    outside = held - first_watched(record)
    late = result["failed"] - first["canary"]["errors"]
    expected_late = 0.10 * 0.20 * result["rps"] * outside
    assert late <= expected_late + 5 * math.sqrt(expected_late) + 5, (late, expected_late, outside)


def first_watched(record):
    return record["canary"]["results"][0]["watched"]


def test_slow_version_fails_on_the_comparison_with_stable(fleet):
    stable = fleet.live()
    load = fleet.load(rate=300, threads=8)
    ret = canary(fleet, "2.3.0-slow", "steps=[50, 100]", "step_interval=6", "latency_ratio=2")
    result = load.stop()
    data = ret.data
    assert data["outcome"] == "rolled_back", data
    step = data["steps"][0]
    assert step["verdict"] == "fail"
    reasons = "; ".join(step["reasons"])
    assert "x stable" in reasons and "limit 2000 ms" not in reasons, reasons
    # The canary color answered thousands of fast requests before: its
    # figure is the slow release's own, not HAProxy's diluted average.
    assert 45 <= step["canary"]["response_time"] < 2000, step
    assert step["stable"]["response_time"] < 15, step
    assert result["failed"] == 0, result
    assert fleet.live() == stable


def test_no_traffic_is_inconclusive_and_pauses_then_resume_continues(fleet, event_listener, master):
    stable = fleet.live()
    ret = canary(fleet, "1.2.0", "steps=[10, 100]", "step_interval=3")
    assert ret.returncode == 0, ret.stdout
    data = ret.data
    assert data["outcome"] == "paused", data
    assert data["steps"][0]["verdict"] == "inconclusive"
    assert "fewer than min_requests" in data["steps"][0]["reasons"][0]
    idle = "green" if stable == "blue" else "blue"
    assert colors(fleet) == {idle: 10, stable: 90}
    view = status(fleet)["canary"]
    assert (view["state"], view["step"], view["percent"]) == ("paused", 1, 10)
    assert view["weights"] == {"canary": 10, "stable": 90}
    assert view["last_verdict"]["verdict"] == "inconclusive"
    assert view["last_verdict"]["canary"]["requests"] == 0

    refused = fleet.deploy("1.3.0")
    assert refused.returncode != 0 and "is paused" in refused.data["comment"]

    since = time.time()
    load = fleet.load(rate=300, threads=8)
    resumed = fleet.run.run("hx_deploy.resume", "app=demo", _timeout=240)
    result = load.stop()
    assert resumed.returncode == 0, resumed.stdout
    assert resumed.data["outcome"] == "succeeded", resumed.data
    assert [s["verdict"] for s in resumed.data["steps"]] == ["inconclusive", "pass", "pass"]
    assert result["failed"] == 0, result
    assert fleet.live() == idle
    wait_event(event_listener, master, "hx/deploy/demo/resumed", since)


def test_promote_mid_way(fleet, event_listener, master):
    stable = fleet.live()
    load = fleet.load(rate=300, threads=8)
    since = time.time()
    worker, box = in_background(
        master, "hx_deploy.canary", "app=demo", "version=1.3.0",
        'steps=[{"percent": 10, "interval": 3}, {"percent": 50, "interval": 120}, 100]')
    try:
        wait_for(lambda: any(e.data.get("step") == 2 for e in event_listener.get_events(
            [(master.id, "hx/deploy/demo/shift")], after_time=since)), 120, "step 2 to begin")
        promoted = fleet.run.run("hx_deploy.promote", "app=demo", _timeout=120)
    finally:
        worker.join(timeout=200)
        result = load.stop()
    assert promoted.returncode == 0, promoted.stdout
    assert promoted.data["outcome"] == "succeeded"
    ret = box["ret"]
    assert ret.data["outcome"] == "succeeded", ret.data
    assert [s["percent"] for s in ret.data["steps"]] == [10]  # step 2 cut short, step 3 skipped
    assert result["failed"] == 0, result
    new = fleet.live()
    assert new != stable and colors(fleet) == {new: 100, stable: 0}
    assert fleet.sample_versions()["versions"] == {"1.3.0": 200}


def test_abort_of_a_running_canary_rolls_back_without_a_failed_request(fleet, event_listener, master):
    stable = fleet.live()
    load = fleet.load(rate=300, threads=8)
    since = time.time()
    worker, box = in_background(master, "hx_deploy.canary", "app=demo", "version=1.1.0", "steps=[25, 100]",
                                "step_interval=120")
    try:
        wait_event(event_listener, master, "hx/deploy/demo/shift", since)
        time.sleep(2)  # let the canary serve
        aborted = fleet.run.run("hx_deploy.abort", "app=demo", _timeout=120)
    finally:
        worker.join(timeout=200)
        result = load.stop()
    assert aborted.returncode == 0, aborted.stdout
    assert aborted.data["outcome"] == "aborted"
    assert box["ret"].data["outcome"] == "aborted"
    assert result["failed"] == 0, result
    assert result["versions"].get("1.1.0"), "the canary never served"
    assert colors(fleet)[stable] == 100 and fleet.live() == stable
    assert status(fleet)["running"] is None


def test_bad_steps_and_limits_change_nothing(fleet):
    weights = fleet.weights()
    cases = [
        (["steps=[50, 20]"], "steps[1]: 20 % does not increase on the step before it (50 %)"),
        (["steps=[10, 150]"], "steps[1]: 150 is over 100 %"),
        (["steps=[10, soon]"], "steps[1]: 'soon' is neither a percentage nor"),
        (["error_rate=abc"], "error_rate: must be a number from 0 to 100 %, got 'abc'"),
        (["steps=[10]", "canary_traffic_percentage=20"], "give either steps or canary_traffic_percentage"),
    ]
    for args, message in cases:
        ret = canary(fleet, "1.2.0", *args)
        assert ret.returncode != 0, (args, ret.stdout)
        assert ret.data["outcome"] == "refused"
        assert message in ret.data["comment"], (args, ret.data["comment"])
    fleet.set_pillar(master_app=fleet.app(canary=dict(CANARY, error_rate="high")))
    try:
        bad = canary(fleet, "1.2.0")
    finally:
        fleet.set_pillar()
    assert bad.returncode != 0 and "canary.error_rate: must be a number from 0 to 100 %, got 'high'" in bad.data["comment"]
    assert fleet.weights() == weights
    assert status(fleet)["running"] is None


def test_plan_and_orchestration(fleet):
    weights = fleet.weights()
    live = fleet.live()
    plan = fleet.run.run("hx_deploy.plan", "app=demo", "version=1.2.0", "strategy=canary", "steps=[10, 33.3, 100]")
    assert plan.returncode == 0, plan.stdout
    assert [(w["percent"], w["share"]) for w in plan.data["weights"]] == [(10, 10.0), (33.3, 33.333), (100, 100.0)]
    assert any("-> 10," in line and "-> 90" in line for line in plan.data["steps"]), plan.data["steps"]
    dry = fleet.run.run(
        "state.orchestrate", "orch.canary", 'pillar={"app": "demo", "version": "1.2.0", "steps": [20, 100]}',
        "test=True")
    assert dry.returncode == 0, dry.stdout
    assert "would deploy a canary" in dry.stdout and "step 1: 20%" in dry.stdout
    assert fleet.weights() == weights

    # The Ansible framework's form, through orchestration.
    load = fleet.load(rate=300, threads=8)
    ret = fleet.run.run(
        "state.orchestrate", "orch.canary",
        'pillar={"app": "demo", "version": "1.2.0", "canary_traffic_percentage": 20, "canary_monitoring_time": 3,'
        ' "step_interval": 2}', _timeout=240)
    result = load.stop()
    assert ret.returncode == 0, ret.stdout
    assert result["failed"] == 0, result
    assert fleet.live() != live
    last = fleet.read.run("hx_deploy.history", "app=demo", "limit=1").data["deployments"][0]
    assert [s["percent"] for s in last["steps"]] == [20, 100] and last["outcome"] == "succeeded"


def _answering(salt_cli, minions):
    pings = salt_cli.run("test.ping", minion_tgt="hx-m*", _timeout=5)
    data = pings.data if isinstance(pings.data, dict) else {}
    return {mid for mid in minions if data.get(mid) is True}


def restart_master(master, minions, salt_cli):
    """Restart the salt-master; every minion answers it again afterwards (later tests need them).

    The minions are restarted with it: left running, one of them sat deaf
    to the new master for minutes (Salt 3008, zeromq), and the canary's
    state is on the master anyway. The app slots and HAProxy are the test's
    own processes and keep serving throughout.
    """
    for factory in minions.values():
        factory.terminate()
    master.terminate()
    master.start()
    for factory in minions.values():
        factory.start()
    deadline = time.monotonic() + 60
    while (missing := set(minions) - _answering(salt_cli, minions)):
        assert time.monotonic() < deadline, f"minions did not come back: {sorted(missing)}"
        time.sleep(0.5)


def test_paused_canary_survives_a_master_restart_and_abort_works(fleet, master, minions, salt_cli):
    stable = fleet.live()
    load = fleet.load(rate=300, threads=8)
    try:
        ret = canary(fleet, "1.1.0", 'steps=[{"percent": 10, "interval": 3}, pause, 100]')
        assert ret.data["outcome"] == "paused", ret.data
        idle = "green" if stable == "blue" else "blue"
        assert colors(fleet) == {idle: 10, stable: 90}

        restart_master(master, minions, salt_cli)

        view = status(fleet)["canary"]
        assert (view["state"], view["step"], view["percent"]) == ("paused", 2, 10)
        assert "step 2 is a pause" in view["paused_reason"]
        assert colors(fleet) == {idle: 10, stable: 90}
        aborted = fleet.run.run("hx_deploy.abort", "app=demo", _timeout=120)
        assert aborted.returncode == 0, aborted.stdout
        assert aborted.data["outcome"] == "aborted"
    finally:
        result = load.stop()
    assert result["failed"] == 0, result
    assert colors(fleet) == {idle: 0, stable: 100}
    state = status(fleet)
    assert state["running"] is None and state["live"] == stable


# The rest of the table: tests/functional/test_hx_deploy_bad_numbers.py.
CANARY_BAD_NUMBERS = [
    (["step_interval=inf"], "step_interval: must be a number over 0 and at most 86400 s, got 'inf'"),
    (["sample_interval=.nan"], "sample_interval: must be a number over 0 and at most 3600 s, got nan"),
    (['steps=[{"percent": 10, "interval": .inf}, 100]'],
     "steps[0].interval: must be a number over 0 and at most 86400 s, got inf"),
    (["canary_traffic_percentage=20", "canary_monitoring_time=.inf"],
     "canary_monitoring_time: must be a number over 0 and at most 86400 s, got inf"),
]


def test_non_finite_and_out_of_range_canary_numbers_change_nothing(fleet):
    """inf/nan/huge/bool/negative canary arguments and pillar keys: refused naming the key and its range
    before the lease; weights, records, the lease and the slots' services as they were, no failed request."""
    weights = fleet.weights()

    def view():
        records = sorted(fleet.read.run("hx_deploy.history", "app=demo", "limit=10000").data["records"])
        state = status(fleet)
        return records, state["running"], {h: {c: (sl or {}).get("state") for c, sl in slots.items()}
                                           for h, slots in state["versions"].items()}

    before = view()
    load = fleet.load(rate=300, threads=8)
    try:
        for args, message in CANARY_BAD_NUMBERS:
            ret = canary(fleet, "1.3.0", *args)
            assert ret.returncode != 0 and ret.data["outcome"] == "refused", (args, ret.stdout)
            assert ret.data["comment"].startswith(message), (args, ret.data["comment"])
        fleet.set_pillar(master_app=fleet.app(canary=dict(CANARY, step_interval=float("inf"))))
        try:
            bad = canary(fleet, "1.3.0")
        finally:
            fleet.set_pillar()
        assert bad.returncode != 0 and bad.data["comment"] == (
            "hx:apps:demo: canary.step_interval: must be a number over 0 and at most 86400 s, got inf")
    finally:
        result = load.stop()
    assert result["failed"] == 0, result
    assert fleet.weights() == weights
    assert view() == before


def test_ctrl_c_of_a_running_canary_puts_the_stable_color_back(fleet, event_listener, master, tmp_path):
    """SIGINT (an operator's Ctrl-C) to ``salt-run hx_deploy.canary`` while its first step serves: the stable
    color back at full weight (read back), the record rolled back with the reason, the lease released."""
    stable = fleet.live()
    load = fleet.load(rate=300, threads=8)
    since = time.time()
    with open(tmp_path / "salt-run.out", "w+", encoding="utf-8") as out:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            fleet.run.cmdline("hx_deploy.canary", "app=demo", "version=1.2.0", "steps=[25, 100]",
                              "step_interval=300"), stdout=out, stderr=subprocess.STDOUT)
        try:
            events = event_listener.wait_for_events([(master.id, "hx/deploy/demo/shift")], timeout=120,
                                                    after_time=since)
            assert events.found_all_events, "the canary never shifted traffic"
            dep = list(events)[0].data["id"]
            idle = "green" if stable == "blue" else "blue"
            wait_for(lambda: colors(fleet) == {idle: 25, stable: 75}, 30, "the first step's weights")
            proc.send_signal(signal.SIGINT)
            proc.wait(90)  # the restore takes seconds; 90 s bounds two Salt rounds and a restore
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
            result = load.stop()
        out.seek(0)
        printed = out.read()
    assert proc.returncode != 0, printed
    assert colors(fleet) == {idle: 0, stable: 100}, printed
    assert result["failed"] == 0, (result["errors"], result["samples"])
    assert result["versions"].get("1.2.0"), "the canary never served"
    record = fleet.read.run("hx_deploy.history", "app=demo").data["records"][dep]
    assert record["outcome"] == "rolled_back", (record["outcome"], record.get("reason"), printed)
    assert record["reason"] == "interrupted by SIGINT (an operator's Ctrl-C)"
    assert record["canary"]["state"] == "rolled_back"
    state = status(fleet)
    assert state["running"] is None and state["live"] == stable
