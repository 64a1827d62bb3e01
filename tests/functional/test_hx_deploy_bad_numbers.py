"""hx_deploy refuses a bad number with the exact message, before any minion call, lease or record.

The values as salt-run hands them over (YAML-parsed: ``.inf`` is a float,
``1e12`` and ``nan`` stay text), on the in-memory fleet of
tests/support/fakefleet.py. ``bake=.inf``/``nan``/``1e12`` and the pillar's
``.inf``/``.nan`` are proven through the real master and HAProxy under load
in tests/integration/test_deploy.py and test_canary.py; the rest of the
table lives here, where each costs milliseconds instead of a salt-run.
"""
import pytest

import hx_rollout


def untouched(runner, fleet):
    store = runner.hx_store.Store(runner.__opts__)
    return fleet.calls == [] and store.get(hx_rollout.LOCKS, "demo") is None and store.all(hx_rollout.RUNS) == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"bake": True}, "bake: must be a number from 0 to 86400 s, got True"),
    ({"bake": -1}, "bake: must be a number from 0 to 86400 s, got -1"),
    ({"bake": "soon"}, "bake: must be a number from 0 to 86400 s, got 'soon'"),
    ({"keep_warm": float("inf")}, "keep_warm: must be a number from 0 to 604800 s, got inf"),
])
def test_blue_green(runner, fleet, kwargs, message):
    ret = runner.blue_green("demo", "1.3.0", **kwargs)
    assert ret["outcome"] == "refused" and ret["comment"] == message, ret
    assert untouched(runner, fleet)


@pytest.mark.parametrize("kwargs, message", [
    ({"step_interval": float("inf")}, "step_interval: must be a number over 0 and at most 86400 s, got inf"),
    ({"min_requests": True}, "min_requests: must be a whole number from 0 to 1000000000, got True"),
    ({"error_rate": -1}, "error_rate: must be a number from 0 to 100 %, got -1"),
    ({"max_repeats": "1e12"}, "max_repeats: must be a whole number from 0 to 100, got '1e12'"),
    ({"keep_warm": "1e12"}, "keep_warm: must be a number from 0 to 604800 s, got '1e12'"),
    ({"canary_traffic_percentage": float("nan")}, "canary_traffic_percentage: nan is neither a percentage nor"),
])
def test_canary(runner, fleet, kwargs, message):
    ret = runner.canary("demo", "1.3.0", **kwargs)
    assert ret["outcome"] == "refused" and ret["comment"].startswith(message), ret
    assert untouched(runner, fleet)
