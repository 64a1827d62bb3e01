"""The blast-radius budget (pure): limits, who is out, who may go out."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_lease
import hx_rotation as rot

T0 = 1_700_000_000.0
CFG = {"hosts": {"app1": "10.0.0.1", "app2": "10.0.0.2", "app3": "10.0.0.3"}, "server": "{host}_{color}"}


def row(weight=100, admin="ready", status="UP"):
    return {"weight": weight, "admin": admin, "status": status}


def slot(host, token, now=T0, ttl=30, **extra):
    return dict(hx_lease.new(token, "maint", "app:demo", "maint-1", "root", "salt1", 4242, now, ttl,
                             what="maintenance run maint-1"), host=host, **extra)


@pytest.mark.parametrize("value, hosts, expect", [
    (None, 2, 1), (None, 4, 2), (None, 1, 1), (1, 8, 1), (3, 2, 3), ("25%", 8, 2), ("10%", 4, 1), ("100%", 3, 3),
    ("33%", 3, 1), (" 50% ", 6, 3),
])
def test_max_out_counts_hosts_and_rounds_a_share_down_to_at_least_one(value, hosts, expect):
    assert rot.max_out("demo", value, hosts) == expect


@pytest.mark.parametrize("value, match", [
    (0, "at least 1 host"), (-2, "at least 1 host"), (True, "number of hosts or a share"), ("0%", r"\(0, 100\]"),
    ("150%", r"\(0, 100\]"), ("x%", r"\(0, 100\]"), ("half", "number of hosts or a share"), (1.5, "number of hosts"),
])
def test_a_bad_max_out_is_refused_naming_the_pillar_key(value, match):
    with pytest.raises(ValueError, match=match) as err:
        rot.max_out("demo", value, 4)
    assert "hx:apps:demo: max_out" in str(err.value)


def test_a_host_is_out_when_none_of_its_servers_is_live():
    rows = {
        "app1_blue": row(), "app1_green": row(weight=0),  # serving on blue
        "app2_blue": row(admin="maint"), "app2_green": row(weight=0),  # drained
        "app3_blue": row(status="DOWN"), "app3_green": row(weight=0),  # its service died
    }
    assert rot.hosts_out(CFG, rows) == ["app2", "app3"]
    # a host the LB does not list cannot be judged
    assert rot.hosts_out(CFG, {"app1_blue": row(admin="drain")}) == ["app1"]


def test_a_host_may_go_out_while_the_budget_has_room():
    d = rot.decide("app1", 1, set(), {}, T0)
    assert d["granted"] and d["out"] == [] and d["holders"] == []


def test_a_second_host_is_refused_naming_who_holds_the_first():
    d = rot.decide("app1", 1, set(), {"k": slot("app2", "t" * 32)}, T0 + 5)
    assert not d["granted"] and d["out"] == ["app2"] and d["foreign"]
    assert d["holders"][0].startswith("app2: maintenance run maint-1 by root")
    text = rot.refusal("demo", "app1", d)
    assert "allows 1 host(s)" in text and "hx:apps:demo:max_out" in text and "app1 stays in" in text


def test_what_the_load_balancer_shows_out_counts_but_is_not_worth_waiting_for():
    d = rot.decide("app1", 1, {"app3"}, {}, T0)
    assert not d["granted"] and not d["foreign"]
    assert d["holders"] == ["app3: out of rotation on the load balancer"]


def test_a_host_that_is_out_already_is_always_granted():
    full = {"a": slot("app2", "a" * 32), "b": slot("app3", "b" * 32)}
    assert rot.decide("app1", 1, {"app1"}, full, T0)["granted"]  # bringing it back never waits
    assert rot.decide("app2", 1, set(), full, T0)["granted"]  # someone works on it: counted once


def test_stale_slots_free_their_room_and_are_named_for_removal():
    dead = slot("app2", "d" * 32, now=T0 - 100)  # expired 70 s ago
    gone = slot("app3", "g" * 32)
    d = rot.decide("app1", 1, set(), {"dead": dead, "gone": gone}, T0, alive=lambda h: h["token"] != "g" * 32)
    assert d["granted"] and sorted(d["stale"]) == ["dead", "gone"]


def test_the_askers_own_slots_are_not_someone_elses():
    mine = slot("app2", "m" * 32)
    d = rot.decide("app1", 1, set(), {"m": mine}, T0, token="m" * 32)
    assert not d["granted"] and not d["foreign"]


@given(st.integers(1, 6), st.sets(st.sampled_from(sorted(CFG["hosts"]))), st.sets(st.sampled_from(sorted(CFG["hosts"]))),
       st.sampled_from(sorted(CFG["hosts"])))
def test_granted_exactly_when_the_host_adds_nothing_or_fits(limit, observed, held, host):
    slots = {h: slot(h, h * 16) for h in held}
    d = rot.decide(host, limit, observed, slots, T0)
    out = observed | held
    assert d["granted"] == (host in out or len(out - {host}) + 1 <= limit)
    assert d["out"] == sorted(out - {host}) and len(d["holders"]) == len(d["out"])


def test_app_budget_reads_only_what_the_budget_needs():
    cfg = rot.app_budget("demo", {"hosts": {"a": "1", "b": "2"}, "backend": "web", "max_out": 1, "slots": {}})
    assert (cfg["backend"], cfg["max_out"], rot.host_of(cfg, "b_green"), rot.host_of(cfg, "c_blue")) == ("web", 1, "b", None)
    assert rot.apps_of({"demo": cfg, "other": {"hosts": {"c": "3"}}}, "a") == ["demo"]
    for raw, match in (([], "must be a mapping"), ({"hosts": {}}, "hosts: must map"),
                       ({"hosts": {"a": "1"}, "server": "{host}"}, "server: template")):
        with pytest.raises(ValueError, match=match):
            rot.app_budget("demo", raw)


def test_a_batch_larger_than_an_apps_budget_is_named_before_anything_is_asked():
    apps = {"demo": dict(CFG, max_out=1), "other": {"hosts": {"app3": "x", "db1": "y"}, "max_out": 2}}
    assert rot.batch_too_big(apps, ["app1"]) is None
    assert rot.batch_too_big(apps, ["app3", "db1"]) is None  # two of other's, within its 2
    why = rot.batch_too_big(apps, ["app1", "app3"])
    assert why == ("batch app1, app3 takes 2 host(s) of app demo out at once; hx:apps:demo:max_out allows 1: "
                   "use a smaller batch")


def test_the_slots_view_names_each_holder_and_which_are_stale_without_tokens():
    live_one = slot("app2", "a" * 32)
    dead = slot("app1", "d" * 32, now=T0 - 100)
    rows = rot.held({"x": live_one, "y": dead, "junk": "not a holder"}, T0 + 5)
    assert [r["host"] for r in rows] == ["app1", "app2"]
    assert rows[0]["stale"].startswith("its lease expired 75 s ago") and rows[1]["stale"] is None
    assert rows[1]["lease"].startswith("maintenance run maint-1 by root") and rows[1]["kind"] == "maint"
    assert "a" * 32 not in repr(rows) and "d" * 32 not in repr(rows)
    assert rot.held({"x": live_one}, T0, alive=lambda h: False)[0]["stale"] == "its process is gone"
    assert rot.held({}, T0) == [] and rot.held(None, T0) == []
