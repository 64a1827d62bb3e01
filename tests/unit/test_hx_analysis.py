"""hx_analysis: counter windows (with HAProxy's sliding response-time average undone), merging, verdicts."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_analysis as a


class SlidingAverage:
    """HAProxy 2.6's per-server d_time and the rtime ``show stat`` derives from it."""

    def __init__(self):
        self.sum = 0
        self.count = 0

    def add(self, ms):
        self.count += 1
        window = a.SAMPLES if self.count > a.SAMPLES else 0
        self.sum = self.sum - ((self.sum + window - 1) // window if window else 0) + int(ms)

    def rtime(self):
        if not self.count:
            return 0
        n = min(self.count, a.SAMPLES)
        return (self.sum + n - 1) // n


def row(req, rtime, ok=None, e5=0):
    return {"req_tot": req, "rtime": rtime, "hrsp_2xx": req - e5 if ok is None else ok, "hrsp_5xx": e5}


@pytest.mark.parametrize("history, history_ms, new, new_ms", [
    (0, 0, 300, 60),       # fresh server: plain sum
    (200, 1, 300, 60),     # crosses the 1024th request
    (50000, 1, 300, 60),   # thousands of fast answers before a slow release
    (50000, 1, 2000, 60),
    (50000, 60, 500, 1),   # the other way round
    (50000, 2, 500, 2),
])
def test_interval_rtime_recovers_the_interval_mean(history, history_ms, new, new_ms):
    sim = SlidingAverage()
    for _ in range(history):
        sim.add(history_ms)
    r0, c0 = sim.rtime(), sim.count
    for _ in range(new):
        sim.add(new_ms)
    got = a.interval_rtime(r0, c0, sim.rtime(), sim.count)
    assert abs(got - new_ms) <= max(4.0, 0.1 * new_ms), (got, new_ms)


def test_interval_rtime_falls_back_to_haproxy_with_few_requests():
    assert a.interval_rtime(1, 50000, 3, 50010) == 3.0
    assert a.interval_rtime(1, 50000, 1, 50000) is None


def test_interval_rtime_after_counter_reset_counts_from_zero():
    assert a.interval_rtime(5, 10000, 40, 200) == pytest.approx(39.5)


def test_window_counts_errors_and_rate():
    before = {"s1": row(1000, 1), "s2": row(1000, 1)}
    after = {"s1": row(1100, 1, e5=10), "s2": row(1100, 1)}
    after["s1"]["hrsp_2xx"] = 1090
    after["s1"]["hrsp_5xx"] = 10
    got = a.window(before, after, ["s1", "s2"])
    assert got["requests"] == 200 and got["errors"] == 10 and got["error_rate"] == 5.0


def test_window_without_requests():
    got = a.window({"s": row(10, 1)}, {"s": row(10, 1)}, ["s"])
    assert got == {"requests": 0, "errors": 0, "error_rate": None, "response_time": None, "response_time_error": None}


def test_merge_keeps_each_lb_for_the_rtime_estimate():
    sim1, sim2 = SlidingAverage(), SlidingAverage()
    for _ in range(5000):
        sim1.add(1)
        sim2.add(1)
    before = a.merge_stats({"lb1": {"s": row(sim1.count, sim1.rtime())}, "lb2": {"s": row(sim2.count, sim2.rtime())}})
    for _ in range(400):
        sim1.add(80)
    for _ in range(100):
        sim2.add(80)
    after = a.merge_stats({"lb1": {"s": row(sim1.count, sim1.rtime())}, "lb2": {"s": row(sim2.count, sim2.rtime())}})
    got = a.window(before, after, ["s"])
    assert got["requests"] == 500
    assert 70 <= got["response_time"] <= 90, got


@given(st.integers(min_value=0, max_value=20000), st.integers(min_value=0, max_value=5),
       st.integers(min_value=200, max_value=3000), st.integers(min_value=0, max_value=500))
def test_interval_rtime_property(history, history_ms, new, new_ms):
    sim = SlidingAverage()
    for _ in range(history):
        sim.add(history_ms)
    r0, c0 = sim.rtime(), sim.count
    for _ in range(new):
        sim.add(new_ms)
    got = a.interval_rtime(r0, c0, sim.rtime(), sim.count)
    assert abs(got - new_ms) <= max(6.0, 0.1 * new_ms)


LIMITS = {"error_rate": 5.0, "response_time": 2000, "min_requests": 20, "error_margin": 2.0,
          "latency_ratio": 2.0, "latency_floor": 20}


def figs(requests, errors=0, rtime=1.0):
    return {"requests": requests, "errors": errors, "error_rate": round(100.0 * errors / requests, 3) if requests else None,
            "response_time": rtime if requests else None}


@pytest.mark.parametrize("canary, stable, verdict, reason", [
    (figs(500, 0, 1.0), figs(4500, 0, 1.0), "pass", "within limits"),
    (figs(10, 5, 1.0), figs(90, 0, 1.0), "inconclusive", "10 requests, fewer than min_requests 20"),
    (figs(500, 100, 1.0), figs(4500, 0, 1.0), "fail", "error rate 20.0% >= limit 5.0%"),
    (figs(500, 15, 1.0), figs(4500, 0, 1.0), "fail", "error rate 3.0% >= stable 0.0% + margin 2.0 points"),
    (figs(500, 15, 1.0), figs(4500, 90, 1.0), "pass", "within limits"),
    (figs(500, 0, 61.0), figs(4500, 0, 1.5), "fail", "response time 61.0 ms >= 2.0 x stable 1.5 ms"),
    (figs(500, 0, 61.0), figs(4500, 0, 0.0), "fail", "x stable 0.0 ms"),
    (figs(500, 0, 3.0), figs(4500, 0, 1.0), "pass", "within limits"),   # 3x, but under the floor
    (figs(500, 0, 150.0), figs(4500, 0, 100.0), "pass", "within limits"),
    (figs(500, 0, 2500.0), figs(4500, 0, 2400.0), "fail", "response time 2500.0 ms >= limit 2000 ms"),
])
def test_judge_against_stable(canary, stable, verdict, reason):
    got = a.judge(canary, LIMITS, baseline=stable)
    assert got["verdict"] == verdict
    assert any(reason in r for r in got["reasons"]), got["reasons"]


def test_judge_without_baseline_uses_absolute_limits():
    assert a.judge(figs(500, 0, 61.0), LIMITS)["verdict"] == "pass"
    assert a.judge(figs(500, 50, 1.0), LIMITS)["verdict"] == "fail"


@given(st.integers(min_value=0, max_value=20000), st.integers(min_value=0, max_value=80),
       st.integers(min_value=1, max_value=3000), st.integers(min_value=0, max_value=200))
def test_interval_rtime_error_bounds_the_truth(history, history_ms, new, new_ms):
    sim = SlidingAverage()
    for _ in range(history):
        sim.add(history_ms)
    r0, c0 = sim.rtime(), sim.count
    for _ in range(new):
        sim.add(new_ms)
    value, error = a.interval_rtime(r0, c0, sim.rtime(), sim.count, with_error=True)
    if error is not None:
        assert abs(value - new_ms) <= error + 0.5, (value, error)


def test_strict_window_leaves_out_what_it_cannot_know():
    sim = SlidingAverage()
    for _ in range(5000):
        sim.add(60)  # the previous release, slow
    before = {"s": row(sim.count, sim.rtime())}
    for _ in range(20):
        sim.add(1)
    after = {"s": row(sim.count, sim.rtime())}
    loose = a.window(before, after, ["s"])
    assert loose["response_time"] >= 50 and loose["response_time_error"] is None  # HAProxy's (old) average
    strict = a.window(before, after, ["s"], strict=True)
    assert strict["requests"] == 20 and strict["response_time"] is None


def test_judge_fails_latency_only_beyond_the_rounding_bound():
    canary = dict(figs(80, 0, 22.0), response_time_error=13.0)
    stable = dict(figs(700, 0, 0.0), response_time_error=0.5)
    assert a.judge(canary, LIMITS, baseline=stable)["verdict"] == "pass"
    canary = dict(figs(300, 0, 61.0), response_time_error=3.6)
    assert a.judge(canary, LIMITS, baseline=stable)["verdict"] == "fail"
