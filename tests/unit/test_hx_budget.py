"""Restart budget, window edges, clock skew, flapping, serialisation."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_budget as b

BUDGET = {"max": 3, "window": 900.0}
FLAP = {"count": 3, "window": 60.0}
T0 = 1_700_000_000.0


def with_attempts(*specs):
    """specs: (ts, outcome[, relapse_after])"""
    s = b.empty_state()
    for spec in specs:
        ts, outcome = spec[0], spec[1]
        s = b.record_attempt(s, ts, ts + 2, outcome, 2000)
        if len(spec) > 2:
            s["attempts"][-1]["relapse_after"] = spec[2]
    return s


def test_defaults_match_the_design():
    assert b.parse_budget(None) == {"max": 3, "window": 900.0}
    assert b.parse_flap(None)["count"] >= 1


@pytest.mark.parametrize(
    "value, match",
    [
        ({"max": 0}, r"budget.max must be > 0"),
        ({"max": 1.5}, r"budget.max must be an integer"),
        ({"max": True}, r"budget.max must be a number"),
        ({"window": -1}, r"budget.window must be > 0"),
        ({"windw": 10}, r"unknown key"),
        ("3", r"must be a mapping"),
    ],
)
def test_parse_budget_rejects(value, match):
    with pytest.raises(ValueError, match=match):
        b.parse_budget(value)


def test_window_edges_old_edge_exclusive_new_edge_inclusive():
    s = with_attempts((T0, "failed"))
    assert b.remaining(s, T0, BUDGET) == 2  # an attempt at now counts
    assert b.remaining(s, T0 + 899.999, BUDGET) == 2
    assert b.remaining(s, T0 + 900, BUDGET) == 3  # exactly window old: expired
    assert b.remaining(s, T0 + 901, BUDGET) == 3


def test_budget_spent_means_quarantine_and_names_the_count():
    s = with_attempts((T0, "failed"), (T0 + 10, "failed"), (T0 + 20, "failed"))
    d = b.decide(s, T0 + 30, BUDGET, FLAP)
    assert d["action"] == "quarantine" and d["reason"] == "budget" and d["remaining"] == 0
    assert "3 restarts in the last 900s" in d["detail"]
    # the oldest ages out: one restart allowed again
    assert b.decide(s, T0 + 900, BUDGET, FLAP)["action"] == "restart"


def test_successful_recoveries_spend_budget_too():
    s = with_attempts((T0, "recovered", 500), (T0 + 600, "recovered", 500), (T0 + 700, "recovered"))
    assert b.decide(s, T0 + 800, BUDGET, FLAP)["reason"] == "budget"


def test_quarantined_stays_quarantined_until_release():
    s = b.quarantine(with_attempts((T0, "failed")), T0, "budget", "x")
    assert b.decide(s, T0 + 10_000, BUDGET, FLAP)["action"] == "quarantined"
    s = b.release(s, T0 + 10)
    assert s["quarantine"] is None
    assert b.decide(s, T0 + 11, BUDGET, FLAP)["action"] == "restart"


def test_release_gives_a_fresh_budget_but_keeps_history():
    s = with_attempts((T0, "failed"), (T0 + 1, "failed"), (T0 + 2, "failed"))
    s = b.release(b.quarantine(s, T0 + 3, "budget", "x"), T0 + 4)
    assert b.remaining(s, T0 + 5, BUDGET) == 3
    assert len(s["attempts"]) == 3


def test_clock_skew_future_events_count_and_then_age_out():
    # the clock went back an hour: events look 3600 s in the future
    s = with_attempts((T0 + 3600, "failed"), (T0 + 3601, "failed"), (T0 + 3602, "failed"))
    assert b.remaining(s, T0, BUDGET) == 3  # raw: future events are outside the window...
    fixed, n = b.normalize(s, T0)
    assert n == 6  # ts and done of each
    assert b.remaining(fixed, T0, BUDGET) == 0  # ...normalized: they count
    assert b.remaining(fixed, T0 + 900, BUDGET) == 3  # and expire one window after correction
    assert all(a["ts"] <= T0 for a in fixed["attempts"])


def test_note_failure_marks_relapse_once():
    s = with_attempts((T0, "recovered"))
    s = b.note_failure(s, T0 + 12, FLAP)
    assert s["attempts"][-1]["relapse_after"] == pytest.approx(10.0)  # done = ts + 2
    s = b.note_failure(s, T0 + 500, FLAP)
    assert s["attempts"][-1]["relapse_after"] == pytest.approx(10.0)


def test_note_failure_ignores_failed_attempts_and_future_clock():
    s = with_attempts((T0, "failed"))
    assert b.note_failure(s, T0 + 5, FLAP)["attempts"][-1]["relapse_after"] is None
    s = with_attempts((T0, "recovered"))
    assert b.note_failure(s, T0 - 100, FLAP)["attempts"][-1]["relapse_after"] == 0.0


@pytest.mark.parametrize(
    "relapses, flapping",
    [
        ([5, 5, 5], True),
        ([5, 5, 60], True),  # window inclusive: relapse at exactly 60 s counts
        ([5, 5, 61], False),
        ([5, 5], False),  # not enough recoveries yet
        ([5, 5, None], False),  # last recovery has not failed (yet)
        ([100, 5, 5, 5], True),  # only the last `count` matter
        ([5, 5, 5, 100], False),
    ],
)
def test_flapping(relapses, flapping):
    s = with_attempts(*[(T0 + i * 2000, "recovered", r) for i, r in enumerate(relapses)])
    assert b.flapping(s, FLAP)[0] is flapping
    if flapping:
        d = b.decide(s, T0 + len(relapses) * 2000, {"max": 100, "window": 900}, FLAP)
        assert d["action"] == "quarantine" and d["reason"] == "flapping"
        assert "3 recoveries in a row" in d["detail"]


def test_flapping_spread_beyond_the_budget_window_is_still_caught():
    # one recovery every 20 minutes never spends a 3-per-15-minutes budget
    s = with_attempts(*[(T0 + i * 1200, "recovered", 30) for i in range(3)])
    d = b.decide(s, T0 + 3 * 1200, BUDGET, FLAP)
    assert d["reason"] == "flapping" and d["remaining"] == 3


def test_flap_streak_resets_after_release():
    s = with_attempts(*[(T0 + i, "recovered", 1) for i in range(3)])
    s = b.release(s, T0 + 10)
    assert b.flapping(s, FLAP)[0] is False


def test_roundtrip_through_json():
    s = b.quarantine(with_attempts((T0, "recovered", 4.5), (T0 + 9, "failed")), T0 + 10, "flapping", "d")
    s = b.release(s, T0 + 20)
    again = b.from_dict(json.loads(json.dumps(b.to_dict(s))))
    assert again == s


@pytest.mark.parametrize(
    "data, match",
    [
        ([], "must be a mapping"),
        ({"attempts": {}}, "attempts must be a list"),
        ({"attempts": [{"ts": T0, "outcome": "maybe"}]}, "outcome"),
        ({"attempts": [{"ts": "yesterday", "outcome": "failed"}]}, "ts must be a number"),
        ({"quarantine": {"since": T0, "reason": "bored"}}, "bad quarantine"),
    ],
)
def test_from_dict_rejects_malformed(data, match):
    with pytest.raises(ValueError, match=match):
        b.from_dict(data)


def test_history_is_capped():
    s = b.empty_state()
    for i in range(b.HISTORY_CAP + 20):
        s = b.record_attempt(s, T0 + i, T0 + i, "failed", 1)
    assert len(s["attempts"]) == b.HISTORY_CAP
    assert s["attempts"][-1]["ts"] == T0 + b.HISTORY_CAP + 19


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 5000, allow_nan=False), max_size=12),
    st.floats(0, 5000, allow_nan=False),
    st.integers(1, 6),
    st.floats(1, 2000, allow_nan=False),
)
def test_property_remaining_matches_a_naive_count(offsets, now_off, mx, window):
    budget = {"max": mx, "window": window}
    s = with_attempts(*[(T0 + o, "failed") for o in sorted(offsets)])
    now = T0 + now_off
    naive = sum(1 for o in offsets if now - window < T0 + o <= now)
    assert b.remaining(s, now, budget) == max(0, mx - naive)
    d = b.decide(s, now, budget, FLAP)
    assert (d["action"] == "restart") == (naive < mx)
