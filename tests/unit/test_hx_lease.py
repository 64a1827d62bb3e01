import math

import pytest

import hx_lease


def holder(now=100.0, ttl=30):
    return hx_lease.new("tok", "deploy", "app:demo", "demo-1", "alice", "m1", 42, now, ttl, what="deployment demo-1")


def test_a_lease_is_fresh_until_it_expires_and_renewal_extends_it():
    h = holder()
    assert (h["id"], h["token"], h["kind"], h["scope"], h["owner"]) == ("tok", "tok", "deploy", "app:demo", "demo-1")
    assert hx_lease.new("0123456789abcdef", "deploy", "app:x", "o", "u", "m", 1, 0, 30)["id"] == "0123456789ab"
    assert (h["started"], h["heartbeat"], h["expires"], h["state"]) == (100.0, 100.0, 130.0, "running")
    assert hx_lease.stale(h, 129.9) == (False, None)
    gone, why = hx_lease.stale(h, 131)
    assert gone and why.startswith("its lease expired 1 s ago")
    r = hx_lease.renewed(h, 125)
    assert r["heartbeat"] == 125 and r["expires"] == 155 and not hx_lease.stale(r, 150)[0]


def test_a_dead_holder_is_stale_at_once_and_an_unknown_one_waits_for_its_expiry():
    assert hx_lease.stale(holder(), 101, alive=False) == (True, "its process is gone")
    assert hx_lease.stale(holder(), 101, alive=None) == (False, None)
    assert hx_lease.stale(holder(), 101, alive=True) == (False, None)


def test_a_paused_lease_never_expires():
    p = hx_lease.paused(holder())
    assert p["pid"] is None and p["expires"] is None and p["state"] == "paused"
    assert hx_lease.stale(p, 10 ** 9, alive=False) == (False, None)
    assert hx_lease.describe(p, 200).endswith(", paused")


def test_a_holder_without_expiry_is_stale_only_when_its_process_is_gone():
    legacy = {"token": "x", "pid": 1, "master": "m"}
    assert hx_lease.stale(legacy, 10 ** 9) == (False, None)
    assert hx_lease.stale(legacy, 10 ** 9, alive=False)[0]
    assert hx_lease.stale(None, 0) == (True, "no holder")


def test_describe_says_who_where_and_how_fresh():
    text = hx_lease.describe(holder(), 103)
    assert text == "deployment demo-1 by alice since 00:01:40 UTC, pid 42 on m1, heartbeat 3 s ago"


@pytest.mark.parametrize("ttl", [0, 2, 3601, math.nan, math.inf, "30", True])
def test_bad_ttl_setting_names_the_key(ttl):
    with pytest.raises(ValueError, match="^hx_lease:ttl: "):
        hx_lease.ttl_from({"ttl": ttl})


def test_ttl_default_and_heartbeat():
    assert hx_lease.ttl_from(None) == 30.0 and hx_lease.ttl_from({"ttl": 6}) == 6.0
    assert hx_lease.heartbeat_every(30) == 10 and hx_lease.heartbeat_every(1) == 0.5
    assert hx_lease.covers({"services": ["a"]}, "a") and not hx_lease.covers({}, "a")
