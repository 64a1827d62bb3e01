"""Threshold edges: a value equal to a threshold breaches it, for every metric."""
import hx_thresholds
import pytest
from hypothesis import given
from hypothesis import strategies as st

D = hx_thresholds.DEFAULTS

# (metric, value, expected) on both sides of every default edge.
EDGES = [
    ("cpu", 59.99, "ok"),
    ("cpu", 60, "warning"),
    ("cpu", 79.99, "warning"),
    ("cpu", 80, "critical"),
    ("cpu", 100, "critical"),
    ("memory", 69.9, "ok"),
    ("memory", 70, "warning"),
    ("memory", 84.9, "warning"),
    ("memory", 85, "critical"),
    ("disk", 79.9, "ok"),
    ("disk", 80, "warning"),
    ("disk", 89.9, "warning"),
    ("disk", 90, "critical"),
    ("load", 2.99, "ok"),
    ("load", 3.0, "warning"),
    ("load", 4.99, "warning"),
    ("load", 5.0, "critical"),
    # response_time has no warning tier by default
    ("response_time", 0, "ok"),
    ("response_time", 1999.9, "ok"),
    ("response_time", 2000, "critical"),
    ("response_time", 2000.1, "critical"),
    ("cpu", 0, "ok"),
    ("cpu", None, "unknown"),
    ("cpu", float("nan"), "unknown"),
    ("cpu", "80", "unknown"),
    ("cpu", True, "unknown"),
]


@pytest.mark.parametrize("metric,value,expected", EDGES)
def test_default_edges(metric, value, expected):
    tiers = D[metric]
    assert hx_thresholds.evaluate(value, tiers["warning"], tiers["critical"]) == expected


@pytest.mark.parametrize("metric,value,expected", EDGES)
def test_judge_carries_thresholds_and_message(metric, value, expected):
    result = hx_thresholds.judge(metric, value)
    assert result["status"] == expected
    assert result["warning"] == D[metric]["warning"]
    assert result["critical"] == D[metric]["critical"]
    assert metric in result["message"]


def test_disabled_tiers():
    assert hx_thresholds.evaluate(10**9, None, None) == "ok"
    assert hx_thresholds.evaluate(5, 5, None) == "warning"
    assert hx_thresholds.evaluate(5, None, 5) == "critical"


@pytest.mark.parametrize(
    "statuses,expected",
    [
        ([], "ok"),
        (["ok"], "ok"),
        (["ok", "unknown"], "unknown"),
        (["unknown", "warning", "ok"], "warning"),
        (["warning", "critical", "unknown"], "critical"),
        (["critical"], "critical"),
        (iter(["ok", "warning"]), "warning"),
    ],
)
def test_worst(statuses, expected):
    assert hx_thresholds.worst(statuses) == expected


def test_worst_rejects_unknown_status_strings():
    with pytest.raises(ValueError, match="'bad'"):
        hx_thresholds.worst(["ok", "bad"])


def test_merge_partial_override_keeps_other_tier_and_metrics():
    merged = hx_thresholds.merge({"cpu": {"critical": 95}}, {"load": {"warning": 4}})
    assert merged["cpu"] == {"warning": 60.0, "critical": 95.0}
    assert merged["load"] == {"warning": 4.0, "critical": 5.0}
    assert merged["disk"] == D["disk"]
    # DEFAULTS must not be mutated by a merge
    assert D["cpu"]["critical"] == 80.0


def test_merge_later_layer_wins_and_null_disables():
    merged = hx_thresholds.merge({"cpu": {"critical": 95}}, {"cpu": {"critical": 90, "warning": None}})
    assert merged["cpu"] == {"warning": None, "critical": 90.0}


@pytest.mark.parametrize(
    "layer,needle",
    [
        ({"cpux": {"critical": 1}}, "'cpux'"),
        ({"cpu": {"crit": 1}}, "'crit'"),
        ({"cpu": {"critical": "high"}}, "cpu.critical"),
        ({"cpu": {"critical": True}}, "cpu.critical"),
        ({"cpu": {"critical": -1}}, "cpu.critical"),
        ({"cpu": 80}, "hx:health:thresholds.cpu"),
        ({"memory": {"warning": 90}}, "memory: warning (90) is greater than critical (85)"),
        ({"disk": {"warning": 95, "critical": 92}}, "disk"),
        (["cpu"], "must be a mapping"),
    ],
)
def test_merge_rejects_bad_layers_naming_the_key(layer, needle):
    with pytest.raises(ValueError) as exc:
        hx_thresholds.merge(layer)
    assert needle in str(exc.value)


def test_merge_accepts_none_layer_and_equal_tiers():
    merged = hx_thresholds.merge(None, {"cpu": {"warning": 80, "critical": 80}})
    assert merged["cpu"] == {"warning": 80.0, "critical": 80.0}
    assert hx_thresholds.evaluate(80, 80, 80) == "critical"


numbers = st.floats(min_value=0, max_value=1e6, allow_nan=False)
RANK = {"ok": 0, "warning": 1, "critical": 2}


@given(a=numbers, b=numbers, w=numbers, c=numbers)
def test_evaluate_is_monotone_in_value(a, b, w, c):
    warn, crit = min(w, c), max(w, c)
    low, high = min(a, b), max(a, b)
    assert RANK[hx_thresholds.evaluate(low, warn, crit)] <= RANK[
        hx_thresholds.evaluate(high, warn, crit)
    ]


@given(t=numbers)
def test_value_equal_to_threshold_always_breaches(t):
    assert hx_thresholds.evaluate(t, None, t) == "critical"
    assert hx_thresholds.evaluate(t, t, None) == "warning"


@given(st.lists(st.sampled_from(hx_thresholds.STATUSES)))
def test_worst_is_order_independent_and_an_upper_bound(statuses):
    result = hx_thresholds.worst(statuses)
    assert result == hx_thresholds.worst(list(reversed(statuses)))
    order = list(hx_thresholds.STATUSES)
    assert all(order.index(s) <= order.index(result) for s in statuses)
