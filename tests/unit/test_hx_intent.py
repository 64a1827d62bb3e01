import math

import pytest

import hx_intent


def test_a_stop_is_intended_down_until_it_expires():
    rec = hx_intent.entry("down", "maintenance m-1", "patching", 1000.0, ttl=60)
    assert rec == {"want": "down", "owner": "maintenance m-1", "reason": "patching", "since": 1000.0,
                   "expires": 1060.0}
    assert hx_intent.wants_down(rec, 1059.9)
    assert not hx_intent.wants_down(rec, 1060.0)
    view = hx_intent.view(rec, 1061)
    assert view["want"] == "up" and view["reason"].startswith("expired: stopped on purpose by maintenance m-1")


def test_no_record_or_an_up_record_is_up():
    assert hx_intent.effective(None, 0) is None
    assert not hx_intent.wants_down(None, 0)
    up = hx_intent.entry("up", None, None, 5)
    assert up["owner"] == "operator" and up["reason"] == "started" and not hx_intent.wants_down(up, 6)
    assert hx_intent.view(None, 0) == {"want": "up", "owner": None, "reason": None, "since": None, "expires": None}


def test_describe_names_the_owner_and_the_reason():
    rec = hx_intent.entry("down", "deployment demo-1", "parked: 1.2.0 failed before traffic", 0)
    assert hx_intent.describe(rec) == "stopped on purpose by deployment demo-1 (parked: 1.2.0 failed before traffic)"
    assert "until 60" in hx_intent.describe(hx_intent.entry("down", "x", "y", 0, ttl=60))


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan, "inf", "nan", "abc", True, 1e12])
def test_bad_ttl_is_refused_naming_it(ttl):
    with pytest.raises(ValueError, match="^ttl: "):
        hx_intent.entry("down", "x", "y", 0, ttl=ttl)


def test_text_is_one_bounded_line():
    rec = hx_intent.entry("down", "alice\nINJECTED", "a\r\nb", 0)
    assert rec["owner"] == "alice INJECTED" and rec["reason"] == "a b"
    with pytest.raises(ValueError, match="^owner: at most"):
        hx_intent.entry("down", "x" * 201, None, 0)
    with pytest.raises(ValueError, match="^reason: must be a string"):
        hx_intent.entry("down", "x", {"a": 1}, 0)
    with pytest.raises(ValueError, match="^want: "):
        hx_intent.entry("sideways", "x", None, 0)


def test_a_malformed_record_counts_as_none():
    assert hx_intent.effective({"want": "maybe"}, 0) is None
    assert hx_intent.effective("down", 0) is None


@pytest.mark.parametrize("state, health, quarantine, want, expected", [
    ("running", "ok", None, "up", None),
    ("running", "warning", None, "up", None),
    ("running", "critical", None, "up", "health critical"),
    ("stopped", "critical", None, "up", "stopped"),
    ("failed", None, None, "up", "failed"),
    ("stopped", "critical", None, "down", None),
    ("failed", "critical", None, "down", None),
    ("running", "ok", None, "down", "running, though intended down"),
    ("stopped", "critical", {"at": 1}, "down", "quarantined"),
    ("running", "ok", {"at": 1}, "up", "quarantined"),
    (None, None, None, "up", "unknown"),
])
def test_fleet_report_attention(state, health, quarantine, want, expected):
    intent = {"want": want, "owner": "alice", "reason": "disk swap"}
    assert hx_intent.attention(state, health, quarantine, intent) == expected
