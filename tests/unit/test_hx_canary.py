"""hx_canary: step lists, exact weights per step, canary settings, verdict combination."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_apps
import hx_canary as c


@pytest.mark.parametrize("steps, expected", [
    ([10, 25, 50, 100], [10, 25, 50, 100]),
    ([100], [100]),
    ([0.5, 1, 99.5], [0.5, 1, 99.5]),
    ("10,25,100", [10, 25, 100]),
    ("[5, 50]", [5, 50]),
    (["10%", " 20 %", "100"], [10, 20, 100]),
    (20, [20]),
    ([10, "pause", 50, "PAUSE", 100], [10, "pause", 50, "pause", 100]),
    (["pause", 10], ["pause", 10]),
    ([{"percent": 20, "interval": 900}, 100], [20, 100]),
])
def test_good_step_lists(steps, expected):
    got = c.parse_steps(steps)
    assert [s.get("percent", "pause") for s in got] == expected


def test_mapping_step_keeps_its_interval():
    got = c.parse_steps([{"percent": 20, "interval": 900}, 100])
    assert got == [{"percent": 20, "interval": 900}, {"percent": 100, "interval": None}]


@pytest.mark.parametrize("steps, message", [
    ([], r"steps: no percentage given"),
    (["pause"], r"steps: no percentage given"),
    ([10, 5], r"steps\[1\]: 5 % does not increase on the step before it \(10 %\)"),
    ([10, 10], r"steps\[1\]: 10 % does not increase"),
    ([10, "pause", 10], r"steps\[2\]: 10 % does not increase"),
    ([10, 150], r"steps\[1\]: 150 is over 100 %"),
    ([100.01], r"steps\[0\]: 100.01 is over 100 %"),
    ([0], r"steps\[0\]: 0 is not above 0 %"),
    ([-5, 10], r"steps\[0\]: -5 is not above 0 %"),
    (["ten"], r"steps\[0\]: 'ten' is neither a percentage nor \"pause\""),
    ([10, None], r"steps\[1\]: None is neither"),
    ([True], r"steps\[0\]: True is neither"),
    ([[10]], r"steps\[0\]: \[10\] is neither"),
    ([float("nan")], r"steps\[0\]: nan is neither"),
    ([{"percent": 20, "wait": 3}], r"steps\[0\]: a mapping step takes percent and interval"),
    ([{"percent": 20, "interval": 0}], r"steps\[0\].interval: must be a number over 0 and at most 86400 s, got 0"),
    ({"a": 1}, r"steps: must be a list of percentages"),
    (None, r"steps: must be a list"),
])
def test_bad_step_lists_name_the_step(steps, message):
    with pytest.raises(ValueError, match=message):
        c.parse_steps(steps)


@pytest.mark.parametrize("percent, weight, expected", [
    (10, 100, (10, 90)),
    (25, 100, (25, 75)),
    (50, 100, (50, 50)),
    (100, 100, (100, 0)),
    (100, 256, (256, 0)),
    (1, 100, (1, 99)),
    (99, 100, (99, 1)),
    (12.5, 100, (12, 84)),
    (33.3, 100, (33, 66)),
    (10, 50, (5, 45)),
    (10, 1, (1, 9)),
    (0.1, 100, (1, 256)),
    (99.9, 100, (256, 1)),
])
def test_step_weights_table(percent, weight, expected):
    assert c.step_weights(percent, weight) == expected


@given(st.floats(min_value=0.001, max_value=100, allow_nan=False), st.integers(min_value=1, max_value=256))
def test_step_weights_within_half_a_point(percent, weight):
    wc, ws = c.step_weights(percent, weight)
    assert 0 <= wc <= 256 and 0 <= ws <= 256
    assert isinstance(wc, int) and isinstance(ws, int)
    assert abs(100.0 * wc / (wc + ws) - percent) <= 0.5
    if percent < 100:
        assert wc >= 1 and ws >= 1  # both colors keep serving until promotion


@given(st.integers(min_value=1, max_value=99))
def test_whole_percentages_with_weight_100_are_exact_and_readable(percent):
    assert c.step_weights(percent, 100) == (percent, 100 - percent)


def test_server_weights_cover_both_colors():
    got = c.server_weights(["a_green", "b_green"], ["a_blue", "b_blue"], 25)
    assert got == {"a_green": 25, "b_green": 25, "a_blue": 75, "b_blue": 75}


@pytest.mark.parametrize("pct, secs, expected", [
    (20, 900, [{"percent": 20, "interval": 900}, 100]),
    ("20", None, [{"percent": 20}, 100]),
    (100, 60, [{"percent": 100, "interval": 60}]),
])
def test_ansible_single_step(pct, secs, expected):
    assert c.ansible_steps(pct, secs) == expected


@pytest.mark.parametrize("pct, secs, message", [
    (0, 900, "canary_traffic_percentage: 0 is not above 0"),
    (120, 900, "canary_traffic_percentage: 120 is over 100"),
    (20, "soon", "canary_monitoring_time: must be a number over 0 and at most 86400 s, got 'soon'"),
    (20, -1, "canary_monitoring_time: must be a number over 0 and at most 86400 s, got -1"),
])
def test_ansible_bad_values(pct, secs, message):
    with pytest.raises(ValueError, match=message):
        c.ansible_steps(pct, secs)


def test_settings_defaults():
    got = c.settings("demo", None)
    assert [s["percent"] for s in got["steps"]] == [10, 25, 50, 100]
    assert got["step_interval"] == 60 and got["success_threshold"] == 95 and got["inconclusive"] == "pause"
    assert got["error_rate"] == 5.0 and got["response_time"] == 2000


@pytest.mark.parametrize("raw, message", [
    ({"error_rate": "high"}, r"hx:apps:demo: canary.error_rate: must be a number from 0 to 100 %, got 'high'"),
    ({"response_time": True}, r"canary.response_time: must be a number from 0 to 600000 ms, got True"),
    ({"latency_ratio": 0.5}, r"canary.latency_ratio: must be a number from 1 to 1000 x stable, got 0.5"),
    ({"success_threshold": 120}, r"canary.success_threshold: must be a number from 0 to 100 %, got 120"),
    ({"min_requests": 2.5}, r"canary.min_requests: must be a whole number from 0 to 1000000000, got 2.5"),
    ({"inconclusive": "ignore"}, r"canary.inconclusive: must be one of pause, rollback, repeat"),
    ({"step_interval": 0}, r"canary.step_interval: must be a number over 0 and at most 86400 s, got 0"),
    ({"steps": [50, 20]}, r"canary.steps\[1\]: 20 % does not increase"),
    ({"stepz": [10]}, r"canary.stepz: unknown setting"),
    ([10, 20], r"canary: must be a mapping"),
])
def test_bad_settings_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        c.settings("demo", raw)


def test_app_validation_fills_the_canary_block():
    app = {
        "hosts": {"app1": "10.0.0.1"},
        "lbs": ["lb1"],
        "slots": {"blue": {"port": 8080, "service": "demo-blue"}, "green": {"port": 8081, "service": "demo-green"}},
        "source": "salt://releases/demo-{version}.tar.gz",
        "canary": {"steps": [5, 100], "latency_ratio": 3},
    }
    cfg = hx_apps.validate("demo", app)
    assert [s["percent"] for s in cfg["canary"]["steps"]] == [5, 100]
    assert cfg["canary"]["latency_ratio"] == 3 and cfg["canary"]["error_rate"] == 5.0
    with pytest.raises(ValueError, match="canary.error_margin"):
        hx_apps.validate("demo", dict(app, canary={"error_margin": "x"}))


def test_merge_ignores_none_and_checks_overrides():
    base = c.settings("demo", {})
    got = c.merge(base, {"steps": [20, 100], "step_interval": 5, "error_rate": None})
    assert [s["percent"] for s in got["steps"]] == [20, 100] and got["error_rate"] == 5.0
    with pytest.raises(ValueError, match="error_rate: must be a number from 0 to 100 %, got 'abc'"):
        c.merge(base, {"error_rate": "abc"})


@pytest.mark.parametrize("verdict, health, expected", [
    ("pass", {"ok": 10, "polls": 10, "success_rate": 100.0}, "pass"),
    ("pass", {"ok": 9, "polls": 10, "success_rate": 90.0}, "fail"),
    ("pass", {"ok": 19, "polls": 20, "success_rate": 95.0}, "pass"),
    ("inconclusive", {"ok": 0, "polls": 4, "success_rate": 0.0}, "fail"),
    ("inconclusive", {"ok": 4, "polls": 4, "success_rate": 100.0}, "inconclusive"),
    ("fail", {"ok": 4, "polls": 4, "success_rate": 100.0}, "fail"),
    ("pass", {"ok": 0, "polls": 0, "success_rate": None}, "inconclusive"),
])
def test_decide(verdict, health, expected):
    judged = {"verdict": verdict, "reasons": ["x"], "figures": {}}
    assert c.decide(judged, health, 95)["verdict"] == expected


def test_decide_names_the_health_figures():
    got = c.decide({"verdict": "pass", "reasons": ["within limits"]}, {"ok": 8, "polls": 10, "success_rate": 80.0}, 95)
    assert got["reasons"] == ["health checks passed 80.0% of 10 polls < success_threshold 95%"]


@pytest.mark.parametrize("verdict, policy, repeats, max_repeats, expected", [
    ("pass", "pause", 0, 2, "next"),
    ("fail", "pause", 0, 2, "rollback"),
    ("fail", "repeat", 0, 2, "rollback"),
    ("inconclusive", "pause", 0, 2, "pause"),
    ("inconclusive", "rollback", 0, 2, "rollback"),
    ("inconclusive", "repeat", 0, 2, "repeat"),
    ("inconclusive", "repeat", 1, 2, "repeat"),
    ("inconclusive", "repeat", 2, 2, "pause"),
    ("inconclusive", "repeat", 0, 0, "pause"),
])
def test_after_verdict(verdict, policy, repeats, max_repeats, expected):
    assert c.after_verdict(verdict, policy, repeats, max_repeats) == expected


def test_health_rate():
    assert c.health_rate([True, True, False, True]) == (3, 4, 75.0)
    assert c.health_rate([]) == (0, 0, None)


def test_describe_lists_weights():
    conf = c.settings("demo", {"steps": [10, "pause", 100], "step_interval": 30})
    lines = c.describe(conf["steps"], conf)
    assert lines[0] == "step 1: 10% -> canary servers weight 10, stable servers weight 90 (share 10.0%); watch 30s"
    assert lines[1].startswith("step 2: pause")
    assert "weight 100, stable servers weight 0" in lines[2]
