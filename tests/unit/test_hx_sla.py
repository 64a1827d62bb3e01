"""SLA over the health history: availability, response time, error rate."""
import hx_sla
import pytest
from hypothesis import given
from hypothesis import strategies as st

NOW = 1_700_000_000.0
DAY = 86400.0
KINDS = {"app": "http", "db": "tcp"}


def s(t, **checks):
    return {"t": t, "c": {name: list(entry) for name, entry in checks.items()}, "d": {}}


def series(n, status="ok", value=100.0, name="app", start=NOW - 3600, step=1.0):
    return [s(start + i * step, **{name: (status, value)}) for i in range(n)]


def test_empty_history_is_unknown_with_reason():
    report = hx_sla.compute([], NOW)
    assert report["status"] == "unknown"
    assert report["reason"] == "no health history yet"
    assert report["samples"] == 0


def test_one_sample_is_enough_to_judge():
    report = hx_sla.compute([s(NOW - 10, app=("ok", 100.0))], NOW, kinds=KINDS)
    assert report["status"] == "met"
    assert report["checks"]["app"]["availability"] == 100.0
    assert report["response_time"] == {"mean_ms": 100.0, "samples": 1, "met": True}


@pytest.mark.parametrize(
    "down,total,status",
    [
        (1, 1000, "met"),  # 99.9 % exactly: met at equality
        (2, 1000, "violated"),  # 99.8 %
        (0, 10, "met"),
        (1, 2, "violated"),  # 50 %: one of two probes up
    ],
)
def test_availability_edges(down, total, status):
    samples = series(total - down, name="db") + series(down, "critical", None, name="db", start=NOW - 100)
    report = hx_sla.compute(samples, NOW, kinds=KINDS)
    assert report["status"] == status
    assert report["checks"]["db"]["met"] is (status == "met")


def test_warning_counts_as_available_unknown_is_left_out():
    samples = series(5, "warning", name="db") + series(5, "unknown", None, name="db", start=NOW - 50)
    check = hx_sla.compute(samples, NOW, kinds=KINDS)["checks"]["db"]
    assert check["availability"] == 100.0
    assert check["samples"] == 5 and check["unknown_samples"] == 5


def test_only_unknown_samples_give_unknown():
    report = hx_sla.compute(series(3, "unknown", None, name="db"), NOW, kinds=KINDS)
    assert report["status"] == "unknown"
    assert "no service check" in report["reason"]


@pytest.mark.parametrize(
    "latencies,met",
    [([1000.0], True), ([1000.1], False), ([500, 1500], True), ([1200.0], False), ([999, 1002], False)],
)
def test_response_time_edges(latencies, met):
    samples = [s(NOW - i - 1, app=("ok", v)) for i, v in enumerate(latencies)]
    report = hx_sla.compute(samples, NOW, kinds=KINDS)
    assert report["response_time"]["met"] is met
    assert report["status"] == ("met" if met else "violated")


@pytest.mark.parametrize(
    "errors,total,met",
    [(1, 100, True), (1, 99, False), (5, 1000, True), (0, 5, True), (2, 100, False)],
)
def test_error_rate_edges(errors, total, met):
    # errors carry no latency; fast successes keep response time in budget
    samples = series(total - errors, value=10.0) + series(errors, "critical", None, start=NOW - 100)
    report = hx_sla.compute(samples, NOW, kinds=KINDS, availability=0)
    assert report["error_rate"]["errors"] == errors
    assert report["error_rate"]["met"] is met


def test_half_percent_errors_is_met():
    samples = series(995, value=10.0) + series(5, "critical", None, start=NOW - 100)
    report = hx_sla.compute(samples, NOW, kinds=KINDS, availability=99.0)
    assert report["error_rate"]["pct"] == 0.5
    assert report["status"] == "met"


def test_errors_do_not_count_in_mean_latency():
    samples = series(2, value=100.0) + series(1, "critical", None, start=NOW - 100)
    report = hx_sla.compute(samples, NOW, kinds=KINDS, availability=0, error_rate=50)
    assert report["response_time"]["mean_ms"] == 100.0


def test_samples_outside_window_ignored():
    old = series(10, "critical", None, name="db", start=NOW - 31 * DAY)
    recent = series(10, name="db")
    report = hx_sla.compute(old + recent, NOW, kinds=KINDS)
    assert report["outside_window"] == 10
    assert report["samples"] == 10
    assert report["status"] == "met"
    assert hx_sla.compute(old + recent, NOW, window_days=40, kinds=KINDS)["status"] == "violated"


def test_window_start_edge_is_inside():
    edge = [s(NOW - 30 * DAY, db=("critical", None))]
    assert hx_sla.compute(edge, NOW, kinds=KINDS)["samples"] == 1
    before = [s(NOW - 30 * DAY - 0.001, db=("critical", None))]
    assert hx_sla.compute(before, NOW, kinds=KINDS)["samples"] == 0


def test_clock_going_backwards_future_samples_skipped():
    samples = series(5, name="db") + series(3, "critical", None, name="db", start=NOW + 60)
    report = hx_sla.compute(samples, NOW, kinds=KINDS)
    assert report["skipped_future"] == 3
    assert report["samples"] == 5
    assert report["status"] == "met"


def test_only_future_or_old_samples_is_unknown():
    samples = series(2, start=NOW + 10) + series(2, start=NOW - 90 * DAY)
    report = hx_sla.compute(samples, NOW, kinds=KINDS)
    assert report["status"] == "unknown"
    assert "2 older, 2 in the future" in report["reason"]


def test_system_metrics_are_not_availability():
    samples = [s(NOW - 1, **{"system:cpu": ("critical", 99.0), "db": ("ok", 1.0)})]
    report = hx_sla.compute(samples, NOW, kinds={})
    assert list(report["checks"]) == ["db"]
    assert report["status"] == "met"


def test_unknown_kind_counts_for_availability_only():
    samples = series(3, "critical", None, name="gone")
    report = hx_sla.compute(samples, NOW, kinds={})
    assert report["checks"]["gone"]["availability"] == 0.0
    assert report["error_rate"]["samples"] == 0
    assert report["status"] == "violated"
    assert report["reason"] == "violated: gone"


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"window_days": 0}, "window_days"),
        ({"window_days": "30"}, "window_days"),
        ({"availability": 101}, "availability"),
        ({"error_rate": -1}, "error_rate"),
        ({"response_time_ms": 0}, "response_time_ms"),
        ({"availability": None}, "availability"),
    ],
)
def test_bad_targets_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        hx_sla.compute([], NOW, **kwargs)


@given(
    statuses=st.lists(st.sampled_from(["ok", "warning", "critical"]), min_size=1, max_size=50)
)
def test_availability_matches_share_of_up_samples(statuses):
    samples = [s(NOW - i - 1, db=(st_, 1.0)) for i, st_ in enumerate(statuses)]
    check = hx_sla.compute(samples, NOW, kinds=KINDS)["checks"]["db"]
    up = sum(x != "critical" for x in statuses)
    assert check["availability"] == pytest.approx(100.0 * up / len(statuses), abs=1e-3)
    assert check["met"] is (check["availability"] >= 99.9)
