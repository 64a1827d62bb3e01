"""Disk-fill forecast: least squares per mount, horizon, unknown cases."""
import hx_forecast
import pytest
from hypothesis import given
from hypothesis import strategies as st

NOW = 1_700_000_000.0
H = 3600.0


def samples_for(points, mount="/"):
    """[(seconds_before_now, pct)] -> compact samples."""
    return [{"t": NOW - ago, "c": {}, "d": {mount: pct}} for ago, pct in points]


def ramp(start_pct, per_hour, hours, step_h=1.0, mount="/"):
    n = int(hours / step_h) + 1
    return samples_for(
        [((hours - i * step_h) * H, start_pct + per_hour * i * step_h) for i in range(n)], mount
    )


def test_linear_fit_exact_line():
    level, slope, centre = hx_forecast.linear_fit([(0, 1), (1, 3), (2, 5)])
    assert slope == pytest.approx(2.0)
    assert level + slope * (2 - centre) == pytest.approx(5.0)


def test_linear_fit_single_x_is_flat():
    assert hx_forecast.linear_fit([(5, 1), (5, 3)]) == (2.0, 0.0, 5.0)


def test_rising_mount_crosses_within_horizon_is_warning():
    # 50 % -> 60 % over 10 h: +1 %/h, reaches 90 % in 30 h from the last sample
    report = hx_forecast.forecast(ramp(50, 1.0, 10), NOW, horizon_hours=48)
    mount = report["mounts"]["/"]
    assert mount["status"] == "warning"
    assert mount["slope_pct_per_hour"] == pytest.approx(1.0)
    assert mount["hours_to_critical"] == pytest.approx(30.0)
    assert mount["predicted_epoch"] == pytest.approx(NOW + 30 * H)
    assert report["status"] == "warning"


@pytest.mark.parametrize("horizon,status", [(30.0, "warning"), (29.9, "ok")])
def test_horizon_edge(horizon, status):
    report = hx_forecast.forecast(ramp(50, 1.0, 10), NOW, horizon_hours=horizon)
    assert report["mounts"]["/"]["status"] == status


@pytest.mark.parametrize(
    "current,status",
    [(89.99, "warning"), (90.0, "critical"), (95.0, "critical")],
)
def test_already_at_critical_is_critical(current, status):
    points = [(2 * H, current - 0.02), (H, current - 0.01), (0, current)]
    mount = hx_forecast.forecast(samples_for(points), NOW)["mounts"]["/"]
    assert mount["status"] == status


def test_critical_even_with_too_few_samples():
    mount = hx_forecast.forecast(samples_for([(0, 97.0)]), NOW)["mounts"]["/"]
    assert mount["status"] == "critical"
    assert mount["hours_to_critical"] == 0.0


@pytest.mark.parametrize("per_hour", [0.0, -2.0])
def test_flat_or_decreasing_is_ok(per_hour):
    mount = hx_forecast.forecast(ramp(70, per_hour, 10), NOW)["mounts"]["/"]
    assert mount["status"] == "ok"
    assert mount["predicted_epoch"] is None


def test_slow_growth_beyond_horizon_is_ok():
    mount = hx_forecast.forecast(ramp(50, 0.1, 10), NOW)["mounts"]["/"]
    assert mount["status"] == "ok"
    assert mount["hours_to_critical"] > 24


@pytest.mark.parametrize(
    "points,reason",
    [
        ([], None),
        ([(0, 50.0)], "1 sample(s), need at least 3"),
        ([(H, 50.0), (0, 60.0)], "2 sample(s), need at least 3"),
        ([(200, 50.0), (100, 60.0), (0, 70.0)], "samples span 200 s, need at least 300 s"),
    ],
)
def test_too_little_data_is_unknown(points, reason):
    report = hx_forecast.forecast(samples_for(points), NOW)
    if reason is None:
        assert report["status"] == "unknown"
        assert report["reason"].startswith("no disk samples")
        assert report["mounts"] == {}
    else:
        assert report["mounts"]["/"]["status"] == "unknown"
        assert report["mounts"]["/"]["reason"] == reason


def test_min_span_edge_is_enough():
    points = [(300, 50.0), (150, 50.5), (0, 51.0)]
    assert hx_forecast.forecast(samples_for(points), NOW)["mounts"]["/"]["status"] != "unknown"


def test_disappeared_mount_is_unknown_and_does_not_hide_others():
    root = ramp(50, 0.0, 10)
    data = ramp(50, 5.0, 5, mount="/data")  # last sample 0 h ago ...
    for sample in data:
        sample["t"] -= 5 * H  # ... moved: its last sample is 5 h old
    report = hx_forecast.forecast(root + data, NOW)
    assert report["mounts"]["/data"]["status"] == "unknown"
    assert report["mounts"]["/data"]["reason"] == "mount no longer present"
    assert report["mounts"]["/"]["status"] == "ok"
    assert report["status"] == "unknown"


def test_mount_uses_only_its_own_samples():
    # /data appears only in the last 3 samples; the fit must not see zeros
    samples = ramp(50, 0.0, 10)
    for i, sample in enumerate(samples[-3:]):
        sample["d"]["/data"] = 60.0 + i
    mount = hx_forecast.forecast(samples, NOW, horizon_hours=100)["mounts"]["/data"]
    assert mount["samples"] == 3
    assert mount["slope_pct_per_hour"] == pytest.approx(1.0)
    assert mount["status"] == "warning"


def test_future_samples_ignored_and_counted():
    samples = ramp(50, 0.0, 10) + samples_for([(-H, 99.0), (-2 * H, 99.0)])
    report = hx_forecast.forecast(samples, NOW)
    assert report["skipped_future"] == 2
    assert report["mounts"]["/"]["status"] == "ok"
    assert report["mounts"]["/"]["current"] == 50.0


def test_lookback_limits_fit():
    old_spike = samples_for([(48 * H, 10.0), (47 * H, 10.0)])
    report = hx_forecast.forecast(old_spike + ramp(50, 0.0, 10), NOW, lookback_hours=24)
    assert report["mounts"]["/"]["samples"] == 11
    assert report["mounts"]["/"]["slope_pct_per_hour"] == pytest.approx(0.0)


def test_custom_critical():
    mount = hx_forecast.forecast(ramp(50, 1.0, 10), NOW, critical=60.0)["mounts"]["/"]
    assert mount["status"] == "critical"


@pytest.mark.parametrize("key", ["horizon_hours", "lookback_hours"])
@pytest.mark.parametrize("bad", [0, -1, "24", None])
def test_bad_arguments(key, bad):
    with pytest.raises(ValueError, match=key):
        hx_forecast.forecast([], NOW, **{key: bad})


@given(
    start=st.floats(0, 80),
    per_hour=st.floats(0.01, 5),
)
def test_crossing_time_matches_the_line(start, per_hour):
    samples = ramp(start, per_hour, 6)
    current = start + per_hour * 6
    mount = hx_forecast.forecast(samples, NOW, horizon_hours=1e6)["mounts"]["/"]
    if current >= 90:
        assert mount["status"] == "critical"
    else:
        assert mount["status"] == "warning"
        assert mount["hours_to_critical"] == pytest.approx((90 - current) / per_hour, rel=1e-6, abs=1e-3)
