"""Remediation policy, event trust, check meaning and budgets (pure)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_remediation as r

T0 = 1_700_000_000.0
TAG = "salt/beacon/web1/hx_health/app_http"


# -- event trust ---------------------------------------------------------------------


def test_beacon_event_from_the_minion_in_the_tag():
    ev = r.parse_event(TAG, {"id": "web1", "status": "critical"})
    assert (ev["minion"], ev["source"], ev["name"], ev["form"]) == ("web1", "hx_health", "app_http", "beacon")


def test_event_send_form_uses_the_master_verified_id():
    data = {"id": "web2", "cmd": "_minion_event", "tag": TAG, "data": {"id": "web1", "status": "critical"}}
    with pytest.raises(r.Rejected, match="sender 'web2' is not the minion named in the tag"):
        r.parse_event(TAG, data)
    ok = r.parse_event(TAG, dict(data, id="web1"))
    assert ok["form"] == "send" and ok["payload"] == {"id": "web1", "status": "critical"}


@pytest.mark.parametrize(
    "tag, data, match",
    [
        ("salt/beacon/web1/hx_health", {"id": "web1"}, "is not salt/beacon"),
        ("hx/whatever", {"id": "web1"}, "is not salt/beacon"),
        (TAG, {"status": "critical"}, "sender None"),
        (TAG, ["x"], "not a mapping"),
        ("salt/beacon/web1/ps/nginx", {"id": "web1"}, "source 'ps' is not handled"),
        (None, {}, "not a string"),
    ],
)
def test_untrustworthy_events_are_rejected(tag, data, match):
    with pytest.raises(r.Rejected, match=match):
        r.parse_event(tag, data)


def test_signed_message_ignores_what_salt_adds_and_binds_the_tag():
    base = {"check": "app_http", "status": "critical", "ts": T0}
    msg = r.signed_message("web1", "hx_health", "app_http", base)
    assert msg == r.signed_message("web1", "hx_health", "app_http",
                                   dict(base, id="web1", sig="x", tag="app_http", _stamp="2023-11-14T22:13:20"))
    assert msg != r.signed_message("web2", "hx_health", "app_http", base)  # another minion
    assert msg != r.signed_message("web1", "hx_health", "db_http", base)   # another check
    assert msg != r.signed_message("web1", "hx_health", "app_http", dict(base, status="ok"))


@pytest.mark.parametrize("ts, ok", [(T0, True), (T0 - 300, True), (T0 - 300.1, False), (T0 + 60, True), (T0 + 61, False)])
def test_freshness_window(ts, ok):
    if ok:
        r.freshness({"ts": ts}, T0, 300)
    else:
        with pytest.raises(r.Rejected):
            r.freshness({"ts": ts}, T0, 300)
    with pytest.raises(r.Rejected, match="no timestamp"):
        r.freshness({}, T0, 300)


def test_bad_signature_text():
    with pytest.raises(r.Rejected, match="not base64"):
        r.decode_sig("***")
    assert r.decode_sig(r.encode_sig(b"\x00\x01")) == b"\x00\x01"


# -- policy ------------------------------------------------------------------------


def test_defaults_and_layers():
    p = r.policy()
    assert p["enabled"] and p["require_signature"] and p["min_status"] == "critical"
    assert r.action_for(p, "service_down") == {"action": "recover"}
    assert r.action_for(p, "disk") == {"action": "state", "sls": "hx.cleanup.disk"}
    assert r.action_for(p, "no-such-type") == {"action": "notify"}
    p = r.policy({"budget": {"minion": {"max": 2}}}, {"actions": {"cpu": "notify"}}, pillar={"stale_ttl": 5})
    assert p["budget"]["minion"] == {"max": 2, "window": 3600.0} and p["stale_ttl"] == 5.0


def test_pillar_cannot_loosen_security_or_re_enable():
    with pytest.raises(ValueError, match="hx:remediation:require_signature: only the master"):
        r.policy(pillar={"require_signature": False})
    for key in ("unsigned_rate", "unsigned_burst", "signed_rate", "signed_burst", "declared_ttl"):
        with pytest.raises(ValueError, match=f"hx:remediation:{key}: only the master"):
            r.policy(pillar={key: 1000})
    assert r.policy({"enabled": False}, pillar={"enabled": True})["enabled"] is False
    assert r.policy(pillar={"enabled": False})["enabled"] is False


@pytest.mark.parametrize(
    "layer, match",
    [
        ({"actions": {"cpu": "reboot"}}, r"actions:cpu: action must be one of"),
        ({"actions": {"cpu": {"action": "state"}}}, "sls must name an SLS"),
        ({"actions": {"disk": {"action": "state", "sls": "../../etc"}}}, "sls must name an SLS"),
        ({"budget": {"role": {"max_pct": 150}}}, "budget:role:max_pct: must be a number from 1 to 100 %, got 150"),
        ({"budget": {"minion": {"max": 1.5}}}, "budget:minion:max: must be a whole number from 1 to 10000"),
        ({"budget": {"minion": {"max": float("inf")}}}, "budget:minion:max: must be a whole number .* got inf"),
        ({"budget": {"minion": {"window": float("nan")}}}, "budget:minion:window: must be a number .* got nan"),
        ({"budget": {"minion": [5]}}, "budget:minion: only max and window"),
        ({"unsigned_sources": ["ps"]}, "unsigned_sources"),
        ({"min_status": "ok"}, "min_status"),
        ({"maintenance": "sometimes"}, "maintenance must be"),
        ({"hold_max": 0}, "hold_max"),
        ({"recheck_timeout": 0}, "hx_remediation:recheck_timeout: must be a number from 1 to 3600 s, got 0"),
        ({"max_event_age": 1e12}, "hx_remediation:max_event_age: must be a number from 1 to 86400 s"),
        ({"enabeld": True}, "enabeld: unknown key"),
        ({"unsigned_rate": float("inf")}, "unsigned_rate: must be a number from 0.01 to 10000 events/s, got inf"),
        ({"unsigned_rate": 0}, "unsigned_rate: must be a number from 0.01 to 10000 events/s, got 0"),
        ({"unsigned_burst": True}, "unsigned_burst: must be a whole number from 1 to 1000000 events, got True"),
        ({"declared_ttl": float("nan")}, "declared_ttl: must be a number from 1 to 86400 s, got nan"),
    ],
)
def test_bad_policy_names_the_key(layer, match):
    with pytest.raises(ValueError, match=match):
        r.policy(layer)


# -- what a check means ---------------------------------------------------------------

SERVICES = {"app": {"health": ["app_http", "app_tcp"]}, "db": {"health": "db_http, db_tcp"}, "x": None}


@pytest.mark.parametrize(
    "name, kind, expect",
    [
        ("app_http", "http", ("service", "app", "app")),
        ("db_tcp", "tcp", ("service", "db", "db")),
        ("other_http", "http", ("endpoint_failure", None, None)),
        ("sshd", "process", ("process_down", None, None)),
        ("system:cpu", "system", ("cpu", "cpu", None)),
        ("system:memory", "system", ("memory", "memory", None)),
        ("system:load", "system", ("load", "load", None)),
        ("system:disk:/var/lib", "system", ("disk", "/var/lib", None)),
        ("forecast/", None, ("disk_forecast", "/", None)),
        ("forecast/var", None, ("disk_forecast", "/var", None)),
        ("config/error", None, ("config_error", None, None)),
        ("mystery", None, ("unknown", None, None)),
    ],
)
def test_check_facts(name, kind, expect):
    f = r.check_facts(name, kind, SERVICES)
    assert (f["type"], f["resource"], f["service"]) == expect


def test_the_declared_names_are_exactly_those_service_for_maps():
    services = {"web": {"unit": "nginx.service"}, "api": {"program": "api-prog"}, "db": {}, "x": None,
                "odd": {"unit": 5}}
    names = r.declared_names(services)
    assert names == {"web", "nginx.service", "api", "api-prog", "db", "x", "odd"}
    assert all(r.service_for(services, n) for n in names)
    assert r.declared_names(None) == frozenset()


def test_the_gate_reads_who_is_named_and_whether_a_signature_is_carried():
    assert r.gate_sender(TAG, {"id": "web1", "status": "critical"}) == ("web1", False)
    assert r.gate_sender(TAG, {"id": "web1", "sig": "x"}) == ("web1", True)
    sent = {"cmd": "_minion_event", "id": "web2", "data": {"sig": "x"}}
    assert r.gate_sender(TAG, sent) == ("web1", True)  # the tag names the bucket; the runner checks the sender
    assert r.gate_sender("salt/beacon/web1", {}) is None
    assert r.gate_sender(None, {}) is None
    assert r.gate_sender("salt/beacon/web1/service/nginx", "junk") == ("web1", False)


def test_a_sender_gets_its_burst_then_its_rate():
    bucket, admitted = None, 0
    for _ in range(50):  # 50 events in the same instant
        ok, bucket = r.admit(bucket, T0, rate=2.0, burst=20)
        admitted += ok
    assert admitted == 20
    ok, bucket = r.admit(bucket, T0 + 0.4, 2.0, 20)
    assert not ok  # 0.8 token earned: not yet one
    ok, bucket = r.admit(bucket, T0 + 0.5, 2.0, 20)
    assert ok
    # a quiet sender refills to the burst, never above it
    bucket = (0.0, T0)
    results = []
    for _ in range(25):
        ok, bucket = r.admit(bucket, T0 + 3600, 2.0, 20)
        results.append(ok)
    assert results == [True] * 20 + [False] * 5


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=200))
def test_admitted_never_exceeds_burst_plus_rate_times_elapsed(offsets):
    rate, burst, bucket, admitted = 2.0, 20, None, 0
    times = sorted(T0 + o for o in offsets)
    for t in times:
        ok, bucket = r.admit(bucket, t, rate, burst)
        admitted += ok
    assert admitted <= burst + rate * (times[-1] - times[0]) + 1e-9


def test_service_beacon_names_map_to_declared_services():
    services = {"web": {"unit": "nginx.service"}, "api": {"program": "api-prog"}, "db": {}}
    assert r.service_for(services, "nginx.service") == "web"
    assert r.service_for(services, "api-prog") == "api"
    assert r.service_for(services, "db") == "db"
    assert r.service_for(services, "sshd") is None


def test_min_status():
    assert r.reaches("critical", "critical") and not r.reaches("warning", "critical")
    assert r.reaches("warning", "warning") and not r.reaches("ok", "warning")


@pytest.mark.parametrize("name, status, min_status, below", [
    ("app_http", "warning", "critical", True),
    ("app_http", "critical", "critical", False),
    ("system:disk:/var", "warning", "critical", True),
    ("forecast/", "warning", "critical", False),          # a forecast is a warning by nature
    ("forecast/var/lib", "warning", "critical", False),
    ("forecast/var/lib", "warning", "warning", False),
    ("app_http", "warning", "warning", False),
])
def test_below_min_status_lets_forecasts_through(name, status, min_status, below):
    assert r.below_min_status(name, status, min_status) is below


# -- suppression ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, status, configured, holds",
    [
        ("configured", {"open": True, "enforce": True, "window": "nightly"}, [{"name": "nightly"}], True),
        ("configured", {"open": True, "enforce": True, "window": "default"}, None, False),  # hx_maint's default
        ("any", {"open": True, "enforce": True, "window": "default"}, None, True),
        ("any", {"open": True, "enforce": False}, None, False),  # not enforced = always open, not a window
        ("configured", {"open": False, "enforce": True}, [{"name": "n"}], False),
        ("never", {"open": True, "enforce": True}, [{"name": "n"}], False),
        ("any", "'hx_maint.window_open' is not available.", None, False),
        # the default: a window with no run in it holds nothing back
        ("lease", {"open": True, "enforce": True, "window": "nightly"}, [{"name": "nightly"}], False),
    ],
)
def test_maintenance_holds(mode, status, configured, holds):
    assert r.maintenance_holds(mode, status, configured) is holds


def test_by_default_only_a_live_maintenance_run_holds_remediation_back():
    assert r.policy()["maintenance"] == "lease"
    assert "lease" in r.MAINTENANCE_MODES


@pytest.mark.parametrize(
    "since, now, hold_max, text",
    [
        (1000.0, 1000.0, 3600, None),
        (1000.0, 4600.0, 3600, None),  # exactly the bound: not yet
        (1000.0, 4601.0, 3600, "held back by planned work for 3601 s, longer than hx_remediation:hold_max (3600 s)"),
        (None, 9999.0, 1, None),  # never held back
    ],
)
def test_a_problem_held_back_past_hold_max_is_told(since, now, hold_max, text):
    assert r.held_too_long(since, now, hold_max) == text
    assert r.policy()["hold_max"] == 3600


def _maint_lease(now, **extra):
    import hx_lease
    holder = hx_lease.new("t", "maint", "fleet", "m-1", "bob", "m1", 43, now, 30, what="maintenance run m-1 on app*")
    return dict(holder, **extra)


@pytest.mark.parametrize(
    "lease, minion, later, alive, held",
    [
        ({"batch": ["app1"]}, "app1", 5, None, True),
        ({"batch": ["app1"]}, "app2", 5, None, False),  # a target not yet (or no longer) under work
        ({"batch": []}, "app1", 5, None, False),  # between batches
        ({}, "app1", 5, None, False),  # a lease from before batches were recorded names no host
        ({"batch": ["app1"]}, "app1", 31, None, False),  # expired: the run is dead
        ({"batch": ["app1"]}, "app1", 5, False, False),  # its process is gone
        ({"batch": ["app1"], "kind": "deploy"}, "app1", 5, None, False),
        (None, "app1", 5, None, False),
    ],
)
def test_a_maintenance_lease_holds_back_only_its_batch(lease, minion, later, alive, held):
    now = 1000.0
    holder = None if lease is None else _maint_lease(now, **lease)
    text = r.maintenance_lease_hold(holder, minion, now + later, alive)
    assert bool(text) is held, text
    if held:
        assert text.startswith("maintenance run m-1 on app* by bob") and "heartbeat 5 s ago" in text


def _lease(now, **extra):
    import hx_lease
    return hx_lease.new("t", "deploy", "app:demo", "demo-1", "alice", "m1", 42, now, 30,
                        what="deployment demo-1 (blue_green of 1.2.0)", **extra)


def test_only_a_running_fresh_deployment_holds_back_the_service_it_works_on():
    now = 1000.0
    held = {"demo": _lease(now, services=["demo-green"])}
    app, text = r.deploy_suppression(held, "demo-green", now + 5)
    assert app == "demo" and text.startswith("deployment demo-1 (blue_green of 1.2.0) by alice")
    assert "heartbeat 5 s ago" in text
    # the live color is not under work: remediation guards it
    assert r.deploy_suppression(held, "demo-blue", now + 5) is None
    assert r.deploy_suppression(held, None, now + 5) is None
    # a dead deployment silences nothing: expired, or its process gone
    assert r.deploy_suppression(held, "demo-green", now + 31) is None
    assert r.deploy_suppression(held, "demo-green", now + 5, alive=lambda h: False) is None
    # a paused canary's colors serve users: guarded like any other service
    import hx_lease
    paused = {"demo": hx_lease.paused(_lease(now, services=["demo-green"]))}
    assert r.deploy_suppression(paused, "demo-green", now + 9999) is None
    # before the deployment chose its color, nothing is under work
    assert r.deploy_suppression({"demo": _lease(now)}, "demo-green", now) is None
    assert r.deploy_suppression({"demo": None, "x": "junk"}, "demo-green", now) is None

def test_minion_budget_window_edges():
    limits = {"max": 2, "window": 600.0}
    assert r.minion_budget([T0 - 600, T0 - 10], T0, limits) == {"allowed": True, "used": 1, "max": 2, "window": 600.0}
    assert not r.minion_budget([T0 - 599.9, T0], T0, limits)["allowed"]
    assert r.minion_budget([T0 + 5], T0, limits)["used"] == 0  # from the future: not in the window


@pytest.mark.parametrize("size, pct, slots", [(1, 50, 1), (2, 50, 1), (4, 50, 2), (10, 25, 2), (3, 100, 3), (10, 10, 1)])
def test_role_slots_round_down_but_allow_one(size, pct, slots):
    assert r.role_slots(size, pct) == slots


@given(st.integers(1, 500), st.floats(1, 100), st.integers(0, 500))
def test_role_budget_never_exceeds_its_share(size, pct, active):
    rb = r.role_budget(active, size, pct)
    assert rb["allowed"] == (active < rb["slots"])
    assert 1 <= rb["slots"] <= size
    assert rb["slots"] == 1 or rb["slots"] <= size * pct / 100 + 1e-6


def test_a_nonce_is_accepted_once_within_max_event_age():
    first, seen = r.note_nonce({}, "n1", 100.0, 300)
    assert first is None and seen == {"n1": 100.0}
    again, seen = r.note_nonce(seen, "n1", 150.0, 300)
    assert again == 100.0 and seen == {"n1": 100.0}
    # older than max_event_age: forgotten (its timestamp refuses it anyway)
    later, seen = r.note_nonce(seen, "n2", 401.0, 300)
    assert later is None and seen == {"n2": 401.0}
    with pytest.raises(r.Rejected, match="no nonce"):
        r.note_nonce({}, None, 0, 300)
    with pytest.raises(r.Rejected, match="no nonce"):
        r.note_nonce({}, "", 0, 300)
