"""Canary decisions: step lists, exact weights per step, limits, verdicts.

A canary moves a share of the traffic to the new color in steps. At step
``p`` % every canary server gets weight ``w_c`` and every stable server
``w_s`` such that ``w_c / (w_c + w_s)`` is ``p`` % within 0.5 percentage
points (both colors have one server per app host, so the color's share is
the server's share; HAProxy's roundrobin honours weights exactly). The
limits, the verdict of a step and what follows from it are decided here;
the ``hx_deploy`` runner gathers the figures and moves the weights.

Pillar ``hx:apps:<app>:canary`` (every key optional)::

    steps: [10, 25, 50, 100]     # % of traffic on the canary; "pause" = wait for resume;
                                 # {percent: 20, interval: 900} = a step with its own interval
    step_interval: 60            # s each step is watched
    sample_interval: 5           # s between samples (counters, health, control)
    error_rate: 5.0              # % 5xx of the canary's requests: fail at or above
    response_time: 2000          # ms: fail at or above
    error_margin: 2.0            # percentage points over the stable color's error rate
    latency_ratio: 2.0           # canary response time >= this x stable's: fail ...
    latency_floor: 20            # ... when it is also this many ms over it
    success_threshold: 95        # % of the canary hosts' health polls that must pass
    min_requests: 20             # fewer canary requests in a step: inconclusive
    inconclusive: pause          # pause | rollback | repeat
    max_repeats: 2               # repeat: this many repeats, then pause
"""
import math

import hx_numbers

MAX_WEIGHT = 256
PAUSE = "pause"
POLICIES = ("pause", "rollback", "repeat")

DEFAULTS = {
    "steps": [10, 25, 50, 100],
    "step_interval": 60,
    "sample_interval": 5,
    "error_rate": 5.0,
    "response_time": 2000,
    "error_margin": 2.0,
    "latency_ratio": 2.0,
    "latency_floor": 20,
    "success_threshold": 95,
    "min_requests": 20,
    "inconclusive": "pause",
    "max_repeats": 2,
}
# Keys judged by hx_analysis.judge.
LIMIT_KEYS = ("error_rate", "response_time", "error_margin", "latency_ratio", "latency_floor", "min_requests")


MAX_STEPS = 100
_PERCENT_RANGE = "a percentage over 0 and at most 100"


def _number(key, value, text=False):
    """``key``'s value within its bounds (``hx_numbers.CANARY``; a step's ``interval`` for ``steps[n].interval``)."""
    return hx_numbers.check(key, value, hx_numbers.CANARY[key.rsplit(".", 1)[-1]], text=text)


def _percent(where, value):
    number = value
    if isinstance(value, str):
        number = hx_numbers.parse_text(value.strip().rstrip("%").strip())
        if number is None:
            raise ValueError(f"{where}: {hx_numbers.shown(value)} is neither a percentage nor \"pause\" "
                             f"({_PERCENT_RANGE})")
        number = int(number) if number == int(number) else number
    if not hx_numbers.is_finite(number):
        raise ValueError(f"{where}: {hx_numbers.shown(value)} is neither a percentage nor \"pause\" ({_PERCENT_RANGE})")
    if number <= 0:
        raise ValueError(f"{where}: {hx_numbers.shown(value)} is not above 0 %")
    if number > 100:
        raise ValueError(f"{where}: {hx_numbers.shown(value)} is over 100 %")
    return number


def parse_steps(steps):
    """Normalise a step list; ValueError names the bad step.

    Accepts a list (or a comma-separated string) of percentages in (0, 100]
    (numbers, "25" or "25%"), ``"pause"`` entries, and mappings
    ``{percent: p, interval: s}``. Percentages must increase strictly.
    Returns ``[{"percent": p, "interval": s or None} | {"pause": True}]``.
    """
    if isinstance(steps, str):
        steps = [part.strip() for part in steps.strip().strip("[]").split(",") if part.strip()]
    if isinstance(steps, (int, float)) and not isinstance(steps, bool):
        steps = [steps]
    if not isinstance(steps, (list, tuple)):
        raise ValueError(f"steps: must be a list of percentages, got {hx_numbers.shown(steps)}")
    if len(steps) > MAX_STEPS:
        raise ValueError(f"steps: at most {MAX_STEPS} steps, got {len(steps)}")
    out = []
    last = None
    for index, raw in enumerate(steps):
        where = f"steps[{index}]"
        if isinstance(raw, str) and raw.strip().lower() == PAUSE:
            out.append({"pause": True})
            continue
        interval = None
        if isinstance(raw, dict):
            unknown = sorted(set(raw) - {"percent", "interval"})
            if unknown or "percent" not in raw:
                raise ValueError(f"{where}: a mapping step takes percent and interval, got {hx_numbers.shown(raw)}")
            if raw.get("interval") is not None:
                interval = _number(f"{where}.interval", raw["interval"])
            raw = raw["percent"]
        percent = _percent(where, raw)
        if last is not None and percent <= last:
            raise ValueError(f"{where}: {percent} % does not increase on the step before it ({last} %)")
        last = percent
        out.append({"percent": percent, "interval": interval})
    if last is None:
        raise ValueError("steps: no percentage given (at least one step is needed)")
    return out


def ansible_steps(percentage, monitoring_time, text=True):
    """The Ansible framework's single canary step, as a step list.

    ``canary_traffic_percentage=20 canary_monitoring_time=900`` becomes
    ``[{percent: 20, interval: 900}, 100]``: 20 % watched for 900 s, then all
    traffic on the canary watched for the usual ``step_interval`` before
    the promotion is final.
    """
    percent = _percent("canary_traffic_percentage", percentage)
    step = {"percent": percent}
    if monitoring_time is not None:
        step["interval"] = _number("canary_monitoring_time", monitoring_time, text=text)
    return [step] if percent == 100 else [step, 100]


def step_weights(percent, weight=100, max_weight=MAX_WEIGHT):
    """``(canary_weight, stable_weight)`` whose ratio gives ``percent`` %.

    100 % is ``(weight, 0)``. Otherwise both are 1..``max_weight``, the
    error is the smallest possible and, among equally close pairs, the sum
    nearest ``weight`` (a 10 % step with weight 100 is 10/90). Always within
    0.5 percentage points (the coarsest case, 1/257, is off by 0.39).
    """
    percent = _percent("percent", percent)
    if percent == 100:
        return int(weight), 0
    share = percent / 100.0
    best = None
    for stable in range(1, max_weight + 1):
        ideal = share * stable / (1.0 - share)
        for canary in {min(max(1, math.floor(ideal)), max_weight), min(max(1, math.ceil(ideal)), max_weight)}:
            error = abs(canary / (canary + stable) - share)
            key = (round(error, 12), abs(canary + stable - weight), canary)
            if best is None or key < best[0]:
                best = (key, canary, stable)
    return best[1], best[2]


def share(canary_weight, stable_weight):
    """The canary's share (%) of a roundrobin over equal numbers of servers per color."""
    total = canary_weight + stable_weight
    return round(100.0 * canary_weight / total, 3) if total else 0.0


def server_weights(canary_servers, stable_servers, percent, weight=100):
    """``{server: weight}`` for step ``percent``."""
    wc, ws = step_weights(percent, weight)
    out = {s: wc for s in canary_servers}
    out.update({s: ws for s in stable_servers})
    return out


def settings(app, raw):
    """Pillar ``hx:apps:<app>:canary`` with defaults filled in; ValueError names the key."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"hx:apps:{app}: canary: must be a mapping")
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"hx:apps:{app}: canary.{unknown[0]}: unknown setting (allowed: {', '.join(sorted(DEFAULTS))})"
        )
    try:
        return merge(dict(DEFAULTS), raw)
    except ValueError as exc:
        raise ValueError(f"hx:apps:{app}: canary.{exc}") from None


def merge(base, overrides, text=False):
    """``base`` settings with ``overrides`` (None values ignored), each checked for type and range.

    ``text``: the overrides are command-line arguments (decimal strings
    such as ``"1e3"`` accepted, see ``hx_numbers``); pillar values are not.
    """
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "steps":
            out[key] = parse_steps(value)
        elif key == "inconclusive":
            if not isinstance(value, str) or value not in POLICIES:
                raise ValueError(f"inconclusive: must be one of {', '.join(POLICIES)}, got {hx_numbers.shown(value)}")
            out[key] = value
        elif key in DEFAULTS:
            out[key] = _number(key, value, text=text)
        else:
            raise ValueError(f"{key}: unknown setting")
    if isinstance(out["steps"], list) and out["steps"] and not isinstance(out["steps"][0], dict):
        out["steps"] = parse_steps(out["steps"])
    return out


def limits(conf):
    """The keys ``hx_analysis.judge`` reads."""
    return {key: conf[key] for key in LIMIT_KEYS}


def health_rate(polls):
    """``polls``: list of booleans (one per host per poll) -> (ok, total, success %)."""
    total = len(polls)
    ok = sum(1 for p in polls if p)
    return ok, total, (round(100.0 * ok / total, 1) if total else None)


def decide(judged, health, threshold):
    """Combine the counters' verdict with the canary hosts' health polls.

    ``health``: ``{"ok", "polls", "success_rate"}``. A success rate under
    ``threshold`` fails the step whatever the counters said; no poll at all
    makes it inconclusive.
    """
    verdict, reasons = judged["verdict"], list(judged["reasons"])
    rate = health.get("success_rate")
    if rate is None:
        if verdict == "pass":
            verdict, reasons = "inconclusive", ["no health poll of the canary hosts"]
    elif rate < threshold:
        reasons = ([] if verdict != "fail" else reasons) + [
            f"health checks passed {rate}% of {health['polls']} polls < success_threshold {threshold}%"
        ]
        verdict = "fail"
    return dict(judged, verdict=verdict, reasons=reasons)


def after_verdict(verdict, policy, repeats, max_repeats):
    """What to do once a step is judged: next | rollback | repeat | pause."""
    if verdict == "pass":
        return "next"
    if verdict == "fail":
        return "rollback"
    if policy == "rollback":
        return "rollback"
    if policy == "repeat" and repeats < max_repeats:
        return "repeat"
    return "pause"


def describe(steps, conf, weight=100):
    """Plan lines for a step list: the weights and the watch of each step."""
    lines = []
    for n, step in enumerate(steps, 1):
        if step.get("pause"):
            lines.append(f"step {n}: pause until hx_deploy.resume (or promote/abort)")
            continue
        wc, ws = step_weights(step["percent"], weight)
        interval = step["interval"] or conf["step_interval"]
        lines.append(
            f"step {n}: {step['percent']}% -> canary servers weight {wc}, stable servers weight {ws} "
            f"(share {share(wc, ws)}%); watch {interval}s"
        )
    return lines
