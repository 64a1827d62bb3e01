"""hx_deploy runs stopped by a signal or an error no step expected, at exact points.

The runner is loaded with its dunders against the in-memory fleet of
tests/support/fakefleet.py: weights, slots and counters are state the
assertions read, and a hook sends a real SIGINT/SIGTERM to this process
at the call where it must land (inside a weight change, during the bake,
during the restore). The same promises are proven through the real master
and HAProxy under load in tests/integration/test_deploy.py and
test_canary.py.
"""
import os
import signal

import pytest

import hx_rollout


def kill_self(sig):
    os.kill(os.getpid(), sig)


def records(runner):
    store = runner.hx_store.Store(runner.__opts__)
    return sorted(store.all(hx_rollout.RUNS).values(), key=lambda r: r["started"])


def lease(runner):
    return runner.hx_store.Store(runner.__opts__).get(hx_rollout.LOCKS, "demo")


def phases(record):
    return [p["phase"] for p in record["phases"]]


@pytest.fixture(autouse=True)
def handlers_restored():
    before = {sig: signal.getsignal(sig) for sig in hx_rollout.INTERRUPTS}
    yield
    assert {sig: signal.getsignal(sig) for sig in hx_rollout.INTERRUPTS} == before


@pytest.mark.parametrize("sig, why", [(signal.SIGINT, "an operator's Ctrl-C"),
                                      (signal.SIGTERM, "the process was told to stop")])
def test_signal_during_bake_restores_traffic_then_reraises(runner, fleet, sig, why):
    # The second counter reading is the first bake sample: traffic is on green.
    fleet.on("hx_traffic.stats", lambda n: n == 2 and kill_self(sig))
    with pytest.raises(hx_rollout.Interrupted) as raised:
        runner.blue_green("demo", "1.1.0")
    assert raised.value.signum == sig and isinstance(raised.value, SystemExit)
    assert fleet.live() == "blue" and fleet.weights["app1_green"] == 0
    (record,) = records(runner)
    assert record["outcome"] == "rolled_back"
    assert record["reason"] == f"interrupted by {signal.Signals(sig).name} ({why})"
    assert phases(record)[-3:] == ["rollback", "rolled_back", "done"]
    assert lease(runner) is None
    # The rejected color is left to cleanup after keep_warm, not forgotten running.
    state = runner.hx_store.Store(runner.__opts__).get(hx_rollout.APPS, "demo")
    assert state["live"] == "blue" and state["warm"]["color"] == "green"


def test_signal_inside_the_switch_waits_for_the_read_back(runner, fleet):
    weights_calls = []

    def during_switch(n):
        weights_calls.append(n)
        if n == 1:
            kill_self(signal.SIGINT)

    fleet.on("hx_traffic.weights", during_switch)
    with pytest.raises(hx_rollout.Interrupted):
        runner.blue_green("demo", "1.1.0")
    (record,) = records(runner)
    assert record["outcome"] == "rolled_back" and "SIGINT" in record["reason"]
    # The switch was applied and read back before the signal was acted on,
    # then the restore: two weight changes, each followed by its read back.
    funs = [f for f, _a, _k in fleet.calls]
    first, second = [i for i, f in enumerate(funs) if f == "hx_traffic.weights"]
    assert funs[first + 1] == "hx_traffic.servers" and funs[second + 1] == "hx_traffic.servers"
    assert "bake" not in phases(record)
    assert fleet.live() == "blue" and lease(runner) is None


def test_a_second_signal_never_cuts_the_restore_short(runner, fleet):
    fleet.on("hx_traffic.stats", lambda n: n == 2 and kill_self(signal.SIGINT))
    fleet.on("hx_traffic.weights", lambda n: n == 2 and (kill_self(signal.SIGINT), kill_self(signal.SIGTERM)))
    with pytest.raises(hx_rollout.Interrupted) as raised:
        runner.blue_green("demo", "1.1.0")
    assert raised.value.signum == signal.SIGINT
    (record,) = records(runner)
    assert record["outcome"] == "rolled_back" and fleet.live() == "blue" and lease(runner) is None


def test_signal_before_the_switch_parks_the_new_color_and_moves_nothing(runner, fleet):
    before = dict(fleet.weights)
    fleet.on("hx_release.install", lambda n: kill_self(signal.SIGTERM))
    with pytest.raises(hx_rollout.Interrupted):
        runner.blue_green("demo", "1.1.0")
    assert fleet.weights == before and fleet.count("hx_traffic.weights") == 0
    (record,) = records(runner)
    assert record["outcome"] == "failed" and "SIGTERM" in record["reason"]
    assert "parked" in phases(record)
    assert all(slots["green"]["state"] == "stopped" for slots in fleet.slots.values())
    assert lease(runner) is None


def test_an_error_no_step_expected_after_the_switch_rolls_back_and_returns(runner, fleet):
    def broken(n):
        if n == 2:
            raise RuntimeError("counters exploded")

    fleet.on("hx_traffic.stats", broken)
    ret = runner.blue_green("demo", "1.1.0")
    assert ret["outcome"] == "rolled_back" and ret["retcode"] == 2
    assert ret["reason"] == "unexpected error: RuntimeError: counters exploded"
    assert fleet.live() == "blue" and lease(runner) is None


def test_a_signal_after_a_passed_bake_keeps_the_deployment(runner, fleet, monkeypatch):
    """Once the bake passed the run records success; the signal ends the process after that, undoing nothing."""
    original = hx_rollout.Rollout.phase

    def phase(self, name, **data):
        entry = original(self, name, **data)
        if name == "warm":
            kill_self(signal.SIGINT)
        return entry

    monkeypatch.setattr(hx_rollout.Rollout, "phase", phase)
    with pytest.raises(hx_rollout.Interrupted):
        runner.blue_green("demo", "1.1.0")
    (record,) = records(runner)
    assert record["outcome"] == "succeeded" and fleet.live() == "green" and lease(runner) is None


def test_canary_interrupted_mid_step_rolls_back(runner, fleet):
    # Readings: 1 before the first step's watch, 2 its first sample.
    fleet.on("hx_traffic.stats", lambda n: n == 2 and kill_self(signal.SIGINT))
    with pytest.raises(hx_rollout.Interrupted):
        runner.canary("demo", "1.1.0", steps=[10, 100])
    (record,) = records(runner)
    assert record["outcome"] == "rolled_back" and "SIGINT" in record["reason"]
    assert record["canary"]["state"] == "rolled_back"
    assert fleet.weights == {"app1_blue": 100, "app2_blue": 100, "app1_green": 0, "app2_green": 0}
    assert lease(runner) is None


def test_canary_promotion_under_way_is_finished_before_the_signal(runner, fleet):
    # A one-step canary at 100 %: its promotion is the second weight change.
    fleet.on("hx_traffic.weights", lambda n: n == 2 and kill_self(signal.SIGINT))
    with pytest.raises(hx_rollout.Interrupted):
        runner.canary("demo", "1.1.0", steps=[50], step_interval=0.5)
    (record,) = records(runner)
    assert record["outcome"] == "succeeded" and fleet.live() == "green" and lease(runner) is None


def test_rollback_interrupted_before_its_switch_changes_nothing(runner, fleet):
    runner.blue_green("demo", "1.1.0")
    assert fleet.live() == "green"
    fleet.on("hx_traffic.servers", lambda n: kill_self(signal.SIGINT))
    fleet.calls.clear()
    with pytest.raises(hx_rollout.Interrupted):
        runner.rollback("demo")
    last = records(runner)[-1]
    assert last["strategy"] == "rollback" and last["outcome"] == "failed" and "SIGINT" in last["reason"]
    assert fleet.live() == "green" and lease(runner) is None
