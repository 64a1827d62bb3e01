"""SLA compliance computed from the health history (compact samples).

Definitions (all over the samples inside the window ``now - window_days``
to ``now``):

* availability of a check = % of its samples whose status is ``ok`` or
  ``warning`` (the service answered); ``critical`` counts as down; ``unknown``
  samples are left out of the ratio (nothing was measured).  It is judged per
  check for every kind except ``system`` (a busy CPU is not an outage).
  Met when availability >= target (default 99.9 %).
* response time = mean of the latency values of ``http`` checks' samples
  (samples without a latency, i.e. connection errors, are left out; they
  count in the error rate).  Met when mean <= target (default 1000 ms).
* error rate = % of ``http`` samples whose status is ``critical``.  Met when
  rate <= target (default 1 %).

Targets are "met at equality" (the Ansible SLA rules: availability >= 99.9,
response <= 1000, errors <= 1), unlike alert thresholds which breach at
equality.  Overall: ``met`` if every judged part is met, ``violated`` if any
is not, ``unknown`` (with a reason) when the window holds no usable sample.

Samples with ``t > now`` (the clock went backwards since they were written)
are ignored and counted in ``skipped_future``; samples older than the window
are ignored and counted in ``outside_window``.

Pure Python, no Salt import.
"""
import math

DEFAULTS = {
    "window_days": 30.0,
    "availability": 99.9,
    "response_time_ms": 1000.0,
    "error_rate": 1.0,
}
UP = ("ok", "warning")


def _pct(part, whole):
    return round(100.0 * part / whole, 4) if whole else None


def validate(window_days, availability, response_time_ms, error_rate, source="hx:health:sla"):
    """ValueError naming the bad key (``source: key 'x'``, or the argument ``x`` when source is None)."""
    values = {
        "window_days": window_days,
        "availability": availability,
        "response_time_ms": response_time_ms,
        "error_rate": error_rate,
    }

    def name(key):
        return f"{source}: key {key!r}" if source else key

    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name(key)} must be a number, got {value!r}")
    if window_days <= 0:
        raise ValueError(f"{name('window_days')} must be > 0, got {window_days!r}")
    for key in ("availability", "error_rate"):
        if not 0 <= values[key] <= 100:
            raise ValueError(f"{name(key)} must be a percentage 0-100, got {values[key]!r}")
    if response_time_ms <= 0:
        raise ValueError(f"{name('response_time_ms')} must be > 0, got {response_time_ms!r}")
    return {key: float(value) for key, value in values.items()}


def compute(
    samples,
    now,
    window_days=DEFAULTS["window_days"],
    availability=DEFAULTS["availability"],
    response_time_ms=DEFAULTS["response_time_ms"],
    error_rate=DEFAULTS["error_rate"],
    kinds=None,
):
    """SLA report from compact samples.

    ``kinds`` maps a check name (as stored in the samples) to its kind; a name
    missing from it (e.g. a check since removed from pillar) is judged for
    availability only, except ``<check>:<metric>`` names, always system.
    """
    targets = validate(window_days, availability, response_time_ms, error_rate)
    kinds = kinds or {}
    start = now - targets["window_days"] * 86400.0
    report = {
        "status": "unknown",
        "reason": None,
        "window": {"days": targets["window_days"], "start": start, "end": now},
        "targets": {
            "availability": targets["availability"],
            "response_time_ms": targets["response_time_ms"],
            "error_rate": targets["error_rate"],
        },
        "samples": 0,
        "skipped_future": 0,
        "outside_window": 0,
        "checks": {},
        "response_time": {"mean_ms": None, "samples": 0, "met": None},
        "error_rate": {"pct": None, "samples": 0, "errors": 0, "met": None},
    }
    per_check = {}
    latencies = []
    http_total = http_errors = 0
    for sample in samples:
        t = sample["t"]
        if t > now:
            report["skipped_future"] += 1
            continue
        if t < start:
            report["outside_window"] += 1
            continue
        report["samples"] += 1
        for name, entry in sample.get("c", {}).items():
            status, value = (list(entry) + [None, None])[:2]
            # Check names cannot contain ':', so "<check>:<metric>" is always
            # a system metric, even for a check no longer in pillar.
            kind = kinds.get(name) or ("system" if ":" in name else None)
            if kind == "system":
                continue
            counts = per_check.setdefault(name, {"kind": kind, "up": 0, "down": 0, "unknown": 0})
            if status in UP:
                counts["up"] += 1
            elif status == "critical":
                counts["down"] += 1
            else:
                counts["unknown"] += 1
            if kind == "http" and status in UP + ("critical",):
                http_total += 1
                http_errors += status == "critical"
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    latencies.append(float(value))

    for name, counts in sorted(per_check.items()):
        judged = counts["up"] + counts["down"]
        pct = _pct(counts["up"], judged)
        report["checks"][name] = {
            "kind": counts["kind"],
            "samples": judged,
            "unknown_samples": counts["unknown"],
            "availability": pct,
            "met": None if pct is None else pct >= targets["availability"],
        }
    if latencies:
        mean = round(sum(latencies) / len(latencies), 1)
        report["response_time"] = {
            "mean_ms": mean,
            "samples": len(latencies),
            "met": mean <= targets["response_time_ms"],
        }
    if http_total:
        rate = _pct(http_errors, http_total)
        report["error_rate"] = {
            "pct": rate,
            "samples": http_total,
            "errors": http_errors,
            "met": rate <= targets["error_rate"],
        }

    verdicts = [c["met"] for c in report["checks"].values()]
    verdicts += [report["response_time"]["met"], report["error_rate"]["met"]]
    verdicts = [v for v in verdicts if v is not None]
    if not samples:
        report["reason"] = "no health history yet"
    elif report["samples"] == 0:
        report["reason"] = (
            f"no samples in the last {targets['window_days']:g} days "
            f"({report['outside_window']} older, {report['skipped_future']} in the future)"
        )
    elif not verdicts:
        report["reason"] = "no service check (http/tcp/process) measured in the window"
    else:
        report["status"] = "met" if all(verdicts) else "violated"
        failed = [name for name, c in report["checks"].items() if c["met"] is False]
        if report["response_time"]["met"] is False:
            failed.append("response_time")
        if report["error_rate"]["met"] is False:
            failed.append("error_rate")
        report["reason"] = f"violated: {', '.join(failed)}" if failed else None
    return report
