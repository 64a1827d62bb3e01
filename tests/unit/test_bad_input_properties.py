"""Hostile input never gets further than its validator (docs/reference/bad-input.md).

For every argument and pillar key hx-ops checks with a pure function of
``_utils/``, hypothesis feeds hostile values (wrong types, NaN/inf, huge,
negative, empty, unicode, newlines, shell metacharacters, path traversal)
and asserts the three promises:

- nothing but the documented error escapes: ``ValueError`` from the pure
  validators, ``SaltInvocationError`` from the modules (loaded by Salt's
  loader), a refusal (``result: False``) from the state and the runner;
- the error names the argument or the key;
- a refused value changes nothing: the input is not mutated, the runner
  (on the in-memory fleet of tests/support/fakefleet.py) made no minion
  call, took no lease, wrote no record; and a value that is accepted is a
  finite number inside the key's documented bounds.

Deterministic (``derandomize=True``, no example database) and bounded
(``max_examples``): the whole file runs in a few seconds.
"""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from salt.exceptions import SaltInvocationError

import hx_apps
import hx_budget
import hx_canary
import hx_checks
import hx_haproxy
import hx_lease
import hx_maintrun
import hx_numbers
import hx_releases
import hx_remediation
import hx_rollout
import hx_thresholds
from tests.support.fakefleet import FakeFleet, app_pillar, load_runner
from tests.support.hostile import hostile
from tests.support.loader import LoadedMinion, minion_opts

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow])
FEW = settings(FUZZ, max_examples=25)

HOSTILE = hostile()


def in_bounds(value, b):
    return hx_numbers.is_finite(value) and (value > b.low if b.above else value >= b.low) and value <= b.high


def refused_naming(fn, needle, error=ValueError):
    """``fn()``'s result, or None when it raised ``error`` naming ``needle`` (anything else fails the test)."""
    try:
        return fn()
    except error as exc:
        assert needle in str(exc), (needle, str(exc))
        return None


def unchanged(fn, *args):
    """Call ``fn(*args)`` and assert it left its (mutable) arguments as they were."""
    before = copy.deepcopy(args)
    try:
        return fn(*args)
    finally:
        assert args == before, "the validator changed its input"


# -- the rule itself ---------------------------------------------------------------

TABLE_KEYS = [(table, key) for table in hx_numbers.TABLES.values() for key in table]


@pytest.mark.parametrize("table, key", TABLE_KEYS, ids=[k for _t, k in TABLE_KEYS])
@FEW
@given(value=HOSTILE, text=st.booleans())
def test_every_bounded_key_accepts_only_finite_numbers_in_bounds(table, key, value, text):
    b = table[key]
    got = refused_naming(lambda: hx_numbers.check(key, value, b, text=text), f"{key}: must be ")
    if got is not None:
        assert in_bounds(got, b), got
        assert not isinstance(got, bool) and (not b.integer or isinstance(got, int))


# -- hx:apps:<app> (deploy, canary) ----------------------------------------------------

APP = {
    "hosts": {"app1": "10.0.0.1"}, "lbs": ["lb1"],
    "slots": {"blue": {"port": 8080, "service": "demo-blue"}, "green": {"port": 8081, "service": "demo-green"}},
    "source": "http://releases/demo-{version}.tar.gz",
}


@pytest.mark.parametrize("key", sorted(hx_apps.DEPLOY_DEFAULTS))
@FEW
@given(value=HOSTILE)
def test_deploy_pillar_numbers(key, value):
    raw = dict(APP, deploy={key: value})
    cfg = refused_naming(lambda: unchanged(hx_apps.validate, "demo", raw), f"hx:apps:demo: deploy.{key}: must be")
    if cfg is not None:
        assert in_bounds(cfg["deploy"][key], hx_numbers.DEPLOY[key])


@pytest.mark.parametrize("key", sorted(hx_canary.DEFAULTS))
@FEW
@given(value=HOSTILE)
def test_canary_pillar_keys(key, value):
    conf = refused_naming(lambda: unchanged(hx_canary.settings, "demo", {key: value}), f"hx:apps:demo: canary.{key}")
    if conf is not None and key in hx_numbers.CANARY:
        assert in_bounds(conf[key], hx_numbers.CANARY[key])


@pytest.mark.parametrize("key", sorted(set(hx_canary.DEFAULTS) - {"steps"}))
@FEW
@given(value=HOSTILE)
def test_canary_arguments_typed_on_the_command_line(key, value):
    base = hx_canary.settings("demo", {})
    conf = refused_naming(lambda: unchanged(hx_canary.merge, base, {key: value}, True), f"{key}: ")
    if conf is not None and key in hx_numbers.CANARY and value is not None:
        assert in_bounds(conf[key], hx_numbers.CANARY[key])


@FUZZ
@given(steps=st.one_of(HOSTILE, st.lists(HOSTILE, max_size=4),
                       st.lists(st.fixed_dictionaries({"percent": HOSTILE, "interval": HOSTILE}), max_size=2)))
def test_canary_steps(steps):
    got = refused_naming(lambda: unchanged(hx_canary.parse_steps, steps), "steps")
    if got is not None:
        percents = [s["percent"] for s in got if not s.get("pause")]
        assert percents and percents == sorted(set(percents))
        assert all(hx_numbers.is_finite(p) and 0 < p <= 100 for p in percents)
        assert all(s.get("interval") is None or in_bounds(s["interval"], hx_numbers.CANARY["interval"]) for s in got)


@FUZZ
@given(percentage=HOSTILE, monitoring=HOSTILE)
def test_ansible_single_step(percentage, monitoring):
    try:
        got = hx_canary.ansible_steps(percentage, monitoring)
    except ValueError as exc:
        assert str(exc).startswith(("canary_traffic_percentage:", "canary_monitoring_time:")), str(exc)
        return
    assert 0 < got[0]["percent"] <= 100
    if monitoring is not None:
        assert in_bounds(got[0]["interval"], hx_numbers.CANARY["canary_monitoring_time"])


@FEW
@given(name=HOSTILE)
def test_app_names(name):
    refused_naming(lambda: hx_apps.lookup({"demo": APP}, name), "app")


@FEW
@given(version=HOSTILE)
def test_versions(version):
    refused_naming(lambda: hx_releases.validate_version(version), "version")


# -- hx:maintenance and hx_maint ----------------------------------------------------------

MAINT_KEYS = ["log_window_minutes", "log_max_bytes", "drain_timeout", "restore_timeout", "reboot_timeout",
              "patch_timeout", "backup:max_age_hours", "cleanup:max_age_days"]


def _maint_raw(key, value):
    if key.startswith("backup:"):
        return {"backup": {"path": "/backups", key.split(":")[1]: value}}
    if key.startswith("cleanup:"):
        return {"cleanup": {key.split(":")[1]: value}}
    return {key: value}


@pytest.mark.parametrize("key", MAINT_KEYS)
@FEW
@given(value=HOSTILE)
def test_maintenance_pillar_numbers(key, value):
    raw = _maint_raw(key, value)
    cfg = refused_naming(lambda: unchanged(hx_maintrun.settings, raw), f"hx:maintenance:{key}: must be")
    if cfg is not None:
        section, _, sub = key.partition(":")
        got = cfg[section][sub] if sub else cfg[key]
        assert in_bounds(got, hx_numbers.MAINTENANCE[key])


@FUZZ
@given(batch=HOSTILE, total=st.integers(0, 50))
def test_maintenance_batch(batch, total):
    size = refused_naming(lambda: hx_maintrun.batch_size(batch, total), "batch: ")
    if size is not None:
        assert (0 if not total else 1) <= size <= total


@FUZZ
@given(value=HOSTILE)
def test_maintenance_max_fail_percentage(value):
    got = refused_naming(lambda: hx_maintrun.max_fail(value), "max_fail_percentage: ")
    if got is not None:
        assert 0 <= got <= 100


# -- hx:health ----------------------------------------------------------------------------

@pytest.mark.parametrize("metric", sorted(hx_thresholds.DEFAULTS))
@FEW
@given(value=HOSTILE, tier=st.sampled_from(hx_thresholds.TIERS))
def test_health_thresholds(metric, value, tier):
    layer = {metric: {tier: value}}
    merged = refused_naming(lambda: unchanged(hx_thresholds.merge, layer), f"{metric}")
    if merged is not None and value is not None:
        assert in_bounds(merged[metric][tier], hx_numbers.THRESHOLDS[metric])


HTTP_CHECK = {"name": "app_http", "kind": "http", "url": "http://127.0.0.1:8080/health"}


@pytest.mark.parametrize("key", ["timeout", "warning_ms", "critical_ms", "expect_status"])
@FEW
@given(value=HOSTILE)
def test_health_check_numbers(key, value):
    checks = [dict(HTTP_CHECK, **{key: value})]
    got = refused_naming(lambda: unchanged(hx_checks.normalize, checks), "hx:health:checks[0] (app_http)")
    if got is not None and key in ("timeout", "warning_ms", "critical_ms") and got[0].get(key) is not None:
        assert hx_numbers.is_finite(got[0][key])


# -- remediation, leases, budgets, weights ------------------------------------------------

REMEDIATION_LAYERS = {
    "max_event_age": lambda v: {"max_event_age": v},
    "stale_ttl": lambda v: {"stale_ttl": v},
    "recheck_timeout": lambda v: {"recheck_timeout": v},
    "action_timeout": lambda v: {"action_timeout": v},
    "budget:minion:max": lambda v: {"budget": {"minion": {"max": v}}},
    "budget:minion:window": lambda v: {"budget": {"minion": {"window": v}}},
    "budget:role:max_pct": lambda v: {"budget": {"role": {"max_pct": v}}},
}


@pytest.mark.parametrize("key", sorted(REMEDIATION_LAYERS))
@FEW
@given(value=HOSTILE)
def test_remediation_numbers(key, value):
    layer = REMEDIATION_LAYERS[key](value)
    p = refused_naming(lambda: unchanged(hx_remediation.policy, layer), f"hx_remediation:{key}")
    if p is not None:
        got = p
        for part in key.split(":"):
            got = got[part]
        assert in_bounds(got, hx_numbers.REMEDIATION[key])


@FEW
@given(value=HOSTILE)
def test_lease_ttl(value):
    got = refused_naming(lambda: hx_lease.ttl_from({"ttl": value}), "hx_lease:ttl")
    if got is not None:
        assert hx_lease.MIN_TTL <= got <= hx_lease.MAX_TTL


@pytest.mark.parametrize("key", ["max", "window"])
@FEW
@given(value=HOSTILE)
def test_restart_budget(key, value):
    got = refused_naming(lambda: hx_budget.parse_budget({key: value}), f"budget.{key}")
    if got is not None:
        assert hx_numbers.is_finite(got[key]) and got[key] > 0


@FEW
@given(value=HOSTILE)
def test_load_balancer_weight(value):
    got = refused_naming(lambda: hx_haproxy.validate_weight(value), "weight")
    if got is not None:
        assert isinstance(got, int) and 0 <= got <= hx_haproxy.MAX_WEIGHT


# -- modules and the state, loaded by Salt's loader -----------------------------------------

@pytest.fixture(scope="module")
def minion(tmp_path_factory):
    return LoadedMinion(minion_opts(tmp_path_factory.mktemp("badinput")), pillar={})


@FEW
@given(value=HOSTILE, tier=st.sampled_from(hx_thresholds.TIERS))
def test_module_health_system_thresholds(minion, value, tier):
    if value is None:
        return  # null disables a tier: a valid input that measures the machine, not a refusal
    mod = minion.mods["hx_health.system"]
    try:
        ret = mod(thresholds={"cpu": {tier: value}})
    except SaltInvocationError as exc:
        assert f"cpu.{tier}" in str(exc)
        return
    assert in_bounds(ret["metrics"]["cpu"][tier], hx_numbers.THRESHOLDS["cpu"])


@FEW
@given(value=HOSTILE)
def test_module_health_history_limit(minion, value):
    refused_naming(lambda: minion.mods["hx_health.history"](limit=value), "limit", SaltInvocationError)


@FEW
@given(value=HOSTILE)
def test_module_traffic_weight(minion, value):
    # A weight that passes would go to HAProxy: no driver is configured here, so
    # an accepted weight fails on the missing socket, named, after validation.
    try:
        minion.mods["hx_traffic.set_weight"]("demo", "app1_blue", value)
    except SaltInvocationError as exc:
        text = str(exc)
        if "weight" not in text:
            assert "hx:traffic" in text and hx_haproxy.validate_weight(value) is not None
        return
    except Exception as exc:  # pylint: disable=broad-except
        assert hx_haproxy.validate_weight(value) is not None, f"refused by {type(exc).__name__}: {exc}"
        return
    raise AssertionError("set_weight without a load balancer returned")


@pytest.mark.parametrize("key", ["timeout", "interval"])
@FEW
@given(value=HOSTILE)
def test_state_health_passing(minion, key, value):
    # An unknown check fails at once: an accepted value is never waited on.
    ret = minion.states["hx_health.passing"](name="gate", checks=["nope"], **{key: value})
    assert ret["result"] is False and ret["changes"] == {}
    b = hx_numbers.HEALTH_WAIT[key]
    valid = refused_naming(lambda: hx_numbers.check(key, value, b, text=True), key) is not None
    assert ret["comment"].startswith("Cannot gate") if valid else ret["comment"].startswith(f"{key}: must be"), ret


# -- the hx_deploy runner on the in-memory fleet --------------------------------------------

@pytest.fixture(scope="module")
def deploy(tmp_path_factory):
    fleet = FakeFleet()
    with pytest.MonkeyPatch.context() as mp:
        mod = load_runner(tmp_path_factory.mktemp("deploy"), fleet, {"demo": app_pillar()}, mp)
        reached = []

        def begin(cfg, version, strategy, break_lock, kwargs, guard=None):  # pylint: disable=unused-argument
            # Stands for taking the lease: reached only by input that passed validation.
            reached.append(strategy)
            return None, None, None, {"result": False, "outcome": "stopped-at-lease"}

        mp.setattr(mod, "_begin", begin)
        yield mod, fleet, reached


def _run_once(deploy, fn):
    mod, fleet, reached = deploy
    reached.clear()
    fleet.calls.clear()
    ret = fn(mod)
    store = mod.hx_store.Store(mod.__opts__)
    return ret, bool(reached), fleet.calls, store.all(hx_rollout.RUNS), store.get(hx_rollout.LOCKS, "demo")


DEPLOY_ARGS = {
    "blue_green bake": (lambda m, v: m.blue_green("demo", "1.1.0", bake=v), "bake", hx_numbers.DEPLOY["bake"]),
    "blue_green keep_warm": (lambda m, v: m.blue_green("demo", "1.1.0", keep_warm=v), "keep_warm",
                             hx_numbers.DEPLOY["keep_warm"]),
    "canary step_interval": (lambda m, v: m.canary("demo", "1.1.0", step_interval=v), "step_interval",
                             hx_numbers.CANARY["step_interval"]),
    "canary min_requests": (lambda m, v: m.canary("demo", "1.1.0", min_requests=v), "min_requests",
                            hx_numbers.CANARY["min_requests"]),
    "canary keep_warm": (lambda m, v: m.canary("demo", "1.1.0", keep_warm=v), "keep_warm",
                         hx_numbers.CANARY["keep_warm"]),
    "canary canary_monitoring_time": (
        lambda m, v: m.canary("demo", "1.1.0", canary_traffic_percentage=20, canary_monitoring_time=v),
        "canary_monitoring_time", hx_numbers.CANARY["canary_monitoring_time"]),
}


@pytest.mark.parametrize("case", sorted(DEPLOY_ARGS))
@FEW
@given(value=HOSTILE)
def test_runner_numbers_are_checked_before_the_lease(deploy, case, value):
    call, key, b = DEPLOY_ARGS[case]
    if value is None:
        return  # None means "the pillar's value"
    ret, reached, calls, runs, lock = _run_once(deploy, lambda m: call(m, value))
    valid = refused_naming(lambda: hx_numbers.check(key, value, b, text=True), key) is not None
    assert reached is valid, (value, ret)
    assert calls == [] and runs == {} and lock is None
    if not valid:
        assert ret["outcome"] == "refused" and ret["result"] is False and ret["retcode"] == 2
        assert ret["comment"].startswith(f"{key}: must be "), ret["comment"]


@FEW
@given(value=HOSTILE)
def test_runner_history_limit(deploy, value):
    ret, _reached, calls, _runs, _lock = _run_once(deploy, lambda m: m.history(app="demo", limit=value))
    valid = refused_naming(lambda: hx_numbers.check("limit", value, hx_numbers.DEPLOY_RUNNER["limit"], text=True),
                           "limit") is not None
    assert ret["result"] is valid and calls == []
    if not valid:
        assert ret["comment"].startswith("limit: must be "), ret["comment"]


@pytest.mark.parametrize("action", ["pause", "promote", "abort"])
@FEW
@given(value=HOSTILE)
def test_runner_canary_control_timeout(deploy, action, value):
    if value is None:
        return
    ret, _reached, calls, _runs, lock = _run_once(deploy, lambda m: getattr(m, action)("demo", timeout=value))
    valid = refused_naming(lambda: hx_numbers.check("timeout", value, hx_numbers.DEPLOY_RUNNER["timeout"], text=True),
                           "timeout") is not None
    assert ret["result"] is False and calls == [] and lock is None
    # Valid: it goes on to look for a canary (there is none); refused: named.
    assert ret["comment"] == "no canary of demo is running or paused" if valid \
        else ret["comment"].startswith("timeout: must be "), ret["comment"]
