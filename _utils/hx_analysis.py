"""Judging a color (bake) or a canary from the load balancer's own counters.

Figures come from HAProxy ``show stat`` taken at the start and the end of an
interval: the difference of the response counters tells how many requests a
set of servers answered and how many were 5xx. ``rtime`` is HAProxy's average
response time of a server over its last 1024 requests; servers are combined
weighted by the requests they answered in the interval.

A verdict is ``pass``, ``fail`` or ``inconclusive`` (too few requests to
judge), always with the figures and the reasons that decided it.
"""

RESPONSE_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


def _num(row, key):
    try:
        return float(row.get(key) or 0)
    except (TypeError, ValueError):
        return 0.0


def window(before, after, servers):
    """Requests, 5xx and response time of ``servers`` between two ``show stat`` snapshots.

    ``before``/``after`` map server name to its stat row (dict of counters),
    possibly summed over several load balancers by the caller. A counter that
    went down (HAProxy reloaded without state) counts from zero.
    """
    requests = errors = 0.0
    weighted_rtime = 0.0
    for server in servers:
        new, old = after.get(server) or {}, before.get(server) or {}
        answered = sum(_num(new, f) for f in RESPONSE_FIELDS)
        earlier = sum(_num(old, f) for f in RESPONSE_FIELDS)
        delta = answered - earlier if answered >= earlier else answered
        err_new, err_old = _num(new, "hrsp_5xx") + _num(new, "eresp"), _num(old, "hrsp_5xx") + _num(old, "eresp")
        err = err_new - err_old if err_new >= err_old else err_new
        requests += delta
        errors += err
        weighted_rtime += delta * _num(new, "rtime")
    return {
        "requests": int(requests),
        "errors": int(errors),
        "error_rate": round(100.0 * errors / requests, 3) if requests else None,
        "response_time": round(weighted_rtime / requests, 1) if requests else None,
    }


def merge_stats(per_lb):
    """Sum counters of the same server over several load balancers.

    ``per_lb`` is ``{lb: {server: row}}``; rtime is averaged weighted by the
    responses each load balancer saw.
    """
    out = {}
    for rows in per_lb.values():
        for server, row in rows.items():
            acc = out.setdefault(server, {f: 0.0 for f in RESPONSE_FIELDS + ("eresp", "rtime")})
            answered = sum(_num(row, f) for f in RESPONSE_FIELDS)
            before = sum(acc[f] for f in RESPONSE_FIELDS)
            for field in RESPONSE_FIELDS + ("eresp",):
                acc[field] += _num(row, field)
            total = before + answered
            if total:
                acc["rtime"] = (acc["rtime"] * before + _num(row, "rtime") * answered) / total
    return out


def judge(figures, limits, baseline=None):
    """Verdict for one interval.

    ``limits``: ``error_rate`` (%), ``response_time`` (ms), ``min_requests``
    and, when a ``baseline`` (the stable servers' figures of the same
    interval) is given, ``error_margin`` (percentage points the canary may
    exceed the baseline's error rate by) and ``latency_ratio`` (the canary's
    response time may be at most this multiple of the baseline's).
    A value equal to a limit breaches it, as everywhere in hx-ops.
    """
    reasons = []
    if figures["requests"] < limits.get("min_requests", 1):
        return {
            "verdict": "inconclusive",
            "reasons": [f"{figures['requests']} requests, fewer than min_requests {limits.get('min_requests', 1)}"],
            "figures": figures,
            "baseline": baseline,
        }
    rate, rtime = figures["error_rate"], figures["response_time"]
    if rate is not None and rate >= limits["error_rate"] and rate > 0:
        reasons.append(f"error rate {rate}% >= limit {limits['error_rate']}%")
    if rtime is not None and rtime >= limits["response_time"]:
        reasons.append(f"response time {rtime} ms >= limit {limits['response_time']} ms")
    if baseline and baseline.get("requests"):
        margin = limits.get("error_margin")
        if margin is not None and rate is not None and baseline["error_rate"] is not None:
            if rate > 0 and rate >= baseline["error_rate"] + margin:
                reasons.append(
                    f"error rate {rate}% >= stable {baseline['error_rate']}% + margin {margin} points"
                )
        ratio = limits.get("latency_ratio")
        base_rt = baseline.get("response_time")
        if ratio is not None and rtime is not None and base_rt:
            if rtime >= base_rt * ratio and rtime - base_rt >= limits.get("latency_floor", 0):
                reasons.append(f"response time {rtime} ms >= {ratio} x stable {base_rt} ms")
    return {
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons or ["within limits"],
        "figures": figures,
        "baseline": baseline,
    }
