"""Judging a color (bake) or a canary from the load balancer's own counters.

Figures come from HAProxy ``show stat`` taken at the start and the end of an
interval: the difference of the response counters tells how many requests a
set of servers answered and how many were 5xx. ``rtime`` is HAProxy's
sliding average of a server's response time over its last 1024 requests: a
server that answered thousands of fast requests before a slow release went in
would show the slow release only diluted, so the mean of the interval's own
requests is recovered from the two averages and the request counts
(``interval_rtime``); servers are combined weighted by the requests they
answered in the interval.

A verdict is ``pass``, ``fail`` or ``inconclusive`` (too few requests to
judge), always with the figures and the reasons that decided it.
"""

RESPONSE_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")
SAMPLES = 1024  # HAProxy's TIME_STATS_SAMPLES
MIN_WEIGHT = 64  # fewer effective samples: HAProxy's own average is the better guess


def _num(row, key):
    try:
        return float(row.get(key) or 0)
    except (TypeError, ValueError):
        return 0.0


def interval_rtime(rtime0, count0, rtime1, count1, with_error=False):
    """Mean response time (ms) of the requests between two readings of one server.

    HAProxy keeps ``sum`` and shows ``ceil(sum / min(count, 1024))``; up to
    1024 requests ``sum`` is a plain sum, past that every request does
    ``sum = sum - sum/1024 + t``. Undoing that: with ``m`` requests before
    the 1024th and ``k`` after, ``sum1 = sum0 * d**k + x * (m * d**k +
    1024 * (1 - d**k))`` with ``d = 1 - 1/1024``, solved for ``x``. The
    shown averages are rounded up to whole ms, so each ``sum`` is known to
    half its window: ``with_error=True`` returns ``(x, error)``, the bound
    that rounding puts on ``x``. When the interval holds too few requests to
    outweigh it (fewer than ``MIN_WEIGHT`` effective samples) HAProxy's
    average itself is returned, with error None (unknown). ``None`` when the
    interval has no request.
    """
    if count1 < count0:  # counters restarted (reload without state): count from zero
        rtime0, count0 = 0.0, 0
    n = count1 - count0
    if n <= 0:
        return (None, None) if with_error else None
    w0, w1 = min(count0, SAMPLES), min(count1, SAMPLES)
    sum0 = (rtime0 - 0.5) * w0 if rtime0 > 0 else 0.0
    sum1 = (rtime1 - 0.5) * w1 if rtime1 > 0 else 0.0
    m = max(0, min(n, SAMPLES - count0))
    decay = (1.0 - 1.0 / SAMPLES) ** (n - m)
    weight = m * decay + SAMPLES * (1.0 - decay)
    if weight < MIN_WEIGHT:
        return (float(rtime1), None) if with_error else float(rtime1)
    value = max(0.0, (sum1 - sum0 * decay) / weight)
    # Half a window of rounding on each sum, plus HAProxy rounding each
    # decay step up (at most 1 ms per request after the 1024th).
    error = (w1 / 2.0 + w0 * decay / 2.0 + (n - m)) / weight
    return (value, error) if with_error else value


def _rtime_parts(old, new, delta):
    """[(requests, mean ms, error ms or None)] of one server, per load balancer when known."""
    pairs = [(old.get("lbs", {}).get(lb) or {}, row) for lb, row in (new.get("lbs") or {}).items()]
    if not pairs:
        pairs = [(old, new)]
    parts = []
    for before, after in pairs:
        c0, c1 = _num(before, "req_tot"), _num(after, "req_tot")
        if not c1:  # rows without req_tot (older callers): HAProxy's average
            parts.append((delta, _num(after, "rtime"), None))
            continue
        value, error = interval_rtime(_num(before, "rtime"), c0, _num(after, "rtime"), c1, with_error=True)
        if value is not None:
            parts.append((c1 - c0 if c1 >= c0 else c1, value, error))
    return parts


def window(before, after, servers, strict=False):
    """Requests, 5xx and response time of ``servers`` between two ``show stat`` snapshots.

    ``before``/``after`` map server name to its stat row (dict of counters),
    possibly summed over several load balancers by ``merge_stats`` (which
    keeps each load balancer's ``req_tot``/``rtime`` under ``lbs``). A
    counter that went down (HAProxy reloaded without state) counts from zero.

    ``response_time`` is the interval's own mean (``interval_rtime``) and
    ``response_time_error`` its rounding bound. Where too few requests make
    that unknowable, HAProxy's sliding average stands in; with
    ``strict=True`` (canary comparisons, where that average may still
    be the previous release's) such servers are left out instead, and
    ``response_time`` is None when all are.
    """
    requests = errors = 0.0
    rt_sum = rt_covered = err_sum = 0.0
    unbounded = False
    for server in servers:
        new, old = after.get(server) or {}, before.get(server) or {}
        answered = sum(_num(new, f) for f in RESPONSE_FIELDS)
        earlier = sum(_num(old, f) for f in RESPONSE_FIELDS)
        delta = answered - earlier if answered >= earlier else answered
        err_new, err_old = _num(new, "hrsp_5xx") + _num(new, "eresp"), _num(old, "hrsp_5xx") + _num(old, "eresp")
        err = err_new - err_old if err_new >= err_old else err_new
        requests += delta
        errors += err
        if not delta:
            continue
        for count, value, error in _rtime_parts(old, new, delta):
            if error is None and strict:
                continue
            rt_sum += count * value
            err_sum += count * (error or 0.0)
            rt_covered += count
            unbounded = unbounded or error is None
    known = bool(requests and rt_covered)
    return {
        "requests": int(requests),
        "errors": int(errors),
        "error_rate": round(100.0 * errors / requests, 3) if requests else None,
        "response_time": round(rt_sum / rt_covered, 1) if known else None,
        "response_time_error": round(err_sum / rt_covered, 1) if known and not unbounded else None,
    }


def merge_stats(per_lb):
    """Sum counters of the same server over several load balancers.

    ``per_lb`` is ``{lb: {server: row}}``; rtime is averaged weighted by the
    responses each load balancer saw, and each load balancer's ``req_tot``
    and ``rtime`` are kept under ``lbs`` (``window`` undoes HAProxy's sliding
    average per load balancer).
    """
    out = {}
    summed = RESPONSE_FIELDS + ("eresp", "req_tot")
    for lb, rows in sorted(per_lb.items()):
        for server, row in rows.items():
            acc = out.setdefault(server, {f: 0.0 for f in summed + ("rtime",)})
            acc.setdefault("lbs", {})[lb] = {"req_tot": _num(row, "req_tot"), "rtime": _num(row, "rtime")}
            answered = sum(_num(row, f) for f in RESPONSE_FIELDS)
            before = sum(acc[f] for f in RESPONSE_FIELDS)
            for field in summed:
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
    response time may be at most this multiple of the baseline's) with
    ``latency_floor`` (ms: a difference smaller than this never fails, so
    1 ms against 0.3 ms is no breach).
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
    # Response times are judged by what they certainly are: the canary's
    # lowest and the baseline's highest value within their rounding bounds.
    low = None if rtime is None else rtime - (figures.get("response_time_error") or 0.0)
    if rate is not None and rate >= limits["error_rate"] and rate > 0:
        reasons.append(f"error rate {rate}% >= limit {limits['error_rate']}%")
    if low is not None and low >= limits["response_time"]:
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
        floor = limits.get("latency_floor", 0)
        # A stable color answering in under a millisecond shows 0: the floor,
        # not the ratio, keeps that from failing every canary.
        if ratio is not None and low is not None and base_rt is not None:
            high = base_rt + (baseline.get("response_time_error") or 0.0)
            if low >= high * ratio and low - high >= floor:
                reasons.append(
                    f"response time {rtime} ms >= {ratio} x stable {base_rt} ms (and {round(rtime - base_rt, 1)} ms"
                    f" >= latency_floor {floor} ms over it)"
                )
    return {
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons or ["within limits"],
        "figures": figures,
        "baseline": baseline,
    }
