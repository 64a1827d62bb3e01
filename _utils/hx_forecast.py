"""Disk-fill forecast: least-squares linear trend per mount.

The idea of Prometheus ``predict_linear``: fit ``pct = a + b * t`` over the
recent samples of one mount and extrapolate to when it reaches the critical
threshold.  The crossing time is taken from the fitted value at the mount's
latest sample, so one noisy last reading does not move the forecast.

Per mount status:

* ``critical``: the latest reading is already >= critical (same boundary rule
  as every threshold);
* ``warning``: the trend reaches critical within the horizon;
* ``ok``: flat or decreasing, or the crossing lies beyond the horizon;
* ``unknown`` with a reason: fewer than ``min_samples`` samples, a span
  shorter than ``min_span_s``, or the mount is no longer present (its last
  sample is older than the newest sample overall).

Pure Python, no Salt import.
"""
import hx_thresholds

DEFAULT_HORIZON_HOURS = 24.0
DEFAULT_LOOKBACK_HOURS = 24.0
DEFAULT_MIN_SAMPLES = 3
# Under 5 minutes a slope is mostly noise from whatever is writing right now.
DEFAULT_MIN_SPAN_S = 300.0


def linear_fit(points):
    """Least-squares ``(intercept, slope)`` for ``[(x, y), ...]``.

    x is centred on its mean to keep precision with epoch-sized values; the
    returned intercept is for the centred x, with the centre as third item.
    """
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        return mean_y, 0.0, mean_x
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return mean_y, sxy / sxx, mean_x


def forecast_mount(
    points,
    now,
    critical,
    horizon_hours=DEFAULT_HORIZON_HOURS,
    min_samples=DEFAULT_MIN_SAMPLES,
    min_span_s=DEFAULT_MIN_SPAN_S,
):
    """Forecast for one mount from its ``[(t, pct), ...]`` (any order)."""
    points = sorted(points)
    result = {
        "status": "unknown",
        "reason": None,
        "current": points[-1][1] if points else None,
        "samples": len(points),
        "span_hours": round((points[-1][0] - points[0][0]) / 3600.0, 3) if points else 0.0,
        "slope_pct_per_hour": None,
        "critical": critical,
        "predicted_epoch": None,
        "hours_to_critical": None,
    }
    if result["current"] is not None and hx_thresholds.evaluate(
        result["current"], None, critical
    ) == hx_thresholds.CRITICAL:
        result["status"] = "critical"
        result["reason"] = f"already at {result['current']:g} % >= critical {critical:g} %"
        result["hours_to_critical"] = 0.0
        result["predicted_epoch"] = points[-1][0]
        return result
    if len(points) < min_samples:
        result["reason"] = f"{len(points)} sample(s), need at least {min_samples}"
        return result
    span = points[-1][0] - points[0][0]
    if span < min_span_s:
        result["reason"] = f"samples span {span:.0f} s, need at least {min_span_s:.0f} s"
        return result
    level, slope_s, centre = linear_fit(points)
    slope_h = slope_s * 3600.0
    result["slope_pct_per_hour"] = round(slope_h, 6)
    if slope_s <= 0:
        result["status"] = "ok"
        result["reason"] = "usage flat or decreasing"
        return result
    t_last = points[-1][0]
    fitted_last = level + slope_s * (t_last - centre)
    crossing = t_last + max(0.0, (critical - fitted_last) / slope_s)
    hours = max(0.0, (crossing - now) / 3600.0)
    result["predicted_epoch"] = crossing
    result["hours_to_critical"] = round(hours, 3)
    if hours <= horizon_hours:
        result["status"] = "warning"
        result["reason"] = f"reaches {critical:g} % in {hours:.1f} h (horizon {horizon_hours:g} h)"
    else:
        result["status"] = "ok"
        result["reason"] = f"reaches {critical:g} % in {hours:.1f} h, beyond the {horizon_hours:g} h horizon"
    return result


def forecast(
    samples,
    now,
    critical=hx_thresholds.DEFAULTS["disk"]["critical"],
    horizon_hours=DEFAULT_HORIZON_HOURS,
    lookback_hours=DEFAULT_LOOKBACK_HOURS,
    min_samples=DEFAULT_MIN_SAMPLES,
    min_span_s=DEFAULT_MIN_SPAN_S,
):
    """Per-mount forecasts from compact samples (``{"t", "d": {mount: pct}}``).

    Only samples with ``now - lookback <= t <= now`` are used (later ones are
    from a clock that went backwards).  Returns ``{"status", "reason",
    "horizon_hours", "critical", "mounts": {mount: forecast_mount(...)}}``,
    status being the worst mount status.
    """
    for key, value in (("horizon_hours", horizon_hours), ("lookback_hours", lookback_hours)):
        if not hx_thresholds.is_number(value) or value <= 0:
            raise ValueError(f"{key} must be a positive number, got {value!r}")
    start = now - lookback_hours * 3600.0
    per_mount = {}
    newest = None
    skipped_future = 0
    for sample in samples:
        t = sample["t"]
        if t > now:
            skipped_future += 1
            continue
        if t < start or not sample.get("d"):
            continue
        newest = t if newest is None else max(newest, t)
        for mount, pct in sample["d"].items():
            if hx_thresholds.is_number(pct):
                per_mount.setdefault(mount, []).append((t, float(pct)))
    report = {
        "status": "unknown",
        "reason": None,
        "horizon_hours": float(horizon_hours),
        "lookback_hours": float(lookback_hours),
        "critical": critical,
        "skipped_future": skipped_future,
        "mounts": {},
    }
    if not per_mount:
        report["reason"] = f"no disk samples in the last {lookback_hours:g} h"
        return report
    for mount, points in sorted(per_mount.items()):
        if max(t for t, _ in points) < newest:
            result = forecast_mount(points, now, critical, horizon_hours, min_samples, min_span_s)
            result.update(
                status="unknown",
                reason="mount no longer present",
                predicted_epoch=None,
                hours_to_critical=None,
            )
        else:
            result = forecast_mount(points, now, critical, horizon_hours, min_samples, min_span_s)
        report["mounts"][mount] = result
    report["status"] = hx_thresholds.worst(m["status"] for m in report["mounts"].values())
    return report
