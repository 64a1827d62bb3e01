"""Every number an operator or a pillar gives hx-ops: finite, typed, within bounds.

One rule for every duration, count, weight, share and size: a value is an
``int`` or ``float`` (``bool`` is not a number: YAML ``yes`` is no
duration), finite (``.inf`` and ``.nan`` are refused: an infinite bake
never ends and a NaN compares false with every limit, so it passes every
check), and inside the documented bounds of its key. A number that breaks
the rule is refused by a ``ValueError`` that names the argument or pillar
key and the allowed range, before anything is changed.

The bounds live in the tables below, one per command or pillar block, and
are printed in docs/reference/bad-input.md (a unit test keeps both equal).

Salt hands CLI arguments over as YAML: ``bake=60`` arrives as 60, but
``bake=1e3`` arrives as the string ``"1e3"``. ``text=True`` (arguments
typed on a command line) accepts a plain decimal string such as ``"1e3"``
or ``"2.5"``; ``"nan"``, ``"inf"``, ``"1_000"``, ``"0x10"``, padded or
multi-line strings are refused. Pillar values are typed by YAML and are
never parsed from text.
"""
import collections
import math
import re

Bound = collections.namedtuple("Bound", "low high integer above unit")

# A decimal number as written by hand: what float() accepts minus its
# surprises (nan, inf, infinity, underscores, surrounding whitespace).
# ASCII digits only (``\d`` takes any script's), and short enough that
# int() never meets its digit limit.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,4})?")
_SHOWN = 80  # characters of a refused value repeated in the error


def bound(low, high, integer=False, above=False, unit=""):
    """``low``..``high`` (``above``: strictly over ``low``), whole numbers only with ``integer``."""
    return Bound(low, high, integer, above, unit)


def _figure(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def span(b):
    """The allowed range in words: ``from 0 to 86400 s``, ``over 0 and at most 3600 s``."""
    unit = f" {b.unit}" if b.unit else ""
    if b.above:
        return f"over {_figure(b.low)} and at most {_figure(b.high)}{unit}"
    return f"from {_figure(b.low)} to {_figure(b.high)}{unit}"


def shown(value):
    """``repr`` of a refused value, cut short: an error line never carries a megabyte of input."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def refusal(key, b, value):
    kind = "a whole number" if b.integer else "a number"
    return f"{key}: must be {kind} {span(b)}, got {shown(value)}"


def parse_text(value):
    """A hand-written decimal string as int/float, or None when it is not one."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        return None
    if any(c in value for c in ".eE"):
        return float(value)
    return int(value)


def is_finite(value):
    """An int or float that is not bool, NaN or infinite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    # A huge int has no float form; it is finite all the same.
    return isinstance(value, int) or math.isfinite(value)


def check(key, value, b, text=False):
    """``value`` as a number within ``b``, or ValueError naming ``key`` and the range.

    Integral floats of an ``integer`` key come back as ``int`` (``20.0`` ->
    20), everything else as given.
    """
    number = value
    if text and isinstance(value, str):
        parsed = parse_text(value)
        number = value if parsed is None else parsed
    if not is_finite(number):
        raise ValueError(refusal(key, b, value))
    if b.integer:
        if isinstance(number, float):
            if not number.is_integer():
                raise ValueError(refusal(key, b, value))
            number = int(number)
    too_low = number <= b.low if b.above else number < b.low
    if too_low or number > b.high:
        raise ValueError(refusal(key, b, value))
    return number


DAY = 86400
WEEK = 7 * DAY
TEN_MINUTES_MS = 600000
MAX_REQUESTS = 10**9

# hx:apps:<app>:deploy, and hx_deploy.blue_green's bake / keep_warm.
DEPLOY = {
    "weight": bound(1, 256, integer=True),  # HAProxy's maximum server weight
    "bake": bound(0, DAY, unit="s"),
    "bake_interval": bound(0, 3600, above=True, unit="s"),
    "keep_warm": bound(0, WEEK, unit="s"),
    "error_rate": bound(0, 100, unit="%"),
    "response_time": bound(0, TEN_MINUTES_MS, unit="ms"),
    "min_requests": bound(0, MAX_REQUESTS, integer=True),
    "verify_timeout": bound(0, 3600, unit="s"),
}

# hx:apps:<app>:canary, and the same keys as hx_deploy.canary / plan arguments.
CANARY = {
    "step_interval": bound(0, DAY, above=True, unit="s"),
    "sample_interval": bound(0, 3600, above=True, unit="s"),
    "error_rate": bound(0, 100, unit="%"),
    "response_time": bound(0, TEN_MINUTES_MS, unit="ms"),
    "error_margin": bound(0, 100, unit="percentage points"),
    "latency_ratio": bound(1, 1000, unit="x stable"),
    "latency_floor": bound(0, TEN_MINUTES_MS, unit="ms"),
    "success_threshold": bound(0, 100, unit="%"),
    "min_requests": bound(0, MAX_REQUESTS, integer=True),
    "max_repeats": bound(0, 100, integer=True),
    # steps[n].interval and canary_monitoring_time: one step's watch.
    "interval": bound(0, DAY, above=True, unit="s"),
    "canary_monitoring_time": bound(0, DAY, above=True, unit="s"),
    "keep_warm": DEPLOY["keep_warm"],
}

# Other hx_deploy arguments: how long pause/promote/abort wait for the
# running canary, how many records history shows.
DEPLOY_RUNNER = {
    "timeout": bound(0, 3600, above=True, unit="s"),
    "limit": bound(1, 10000, integer=True),
}

# hx_incident.list: ``since`` is epoch seconds, or seconds back when negative
# (ten years either way).
INCIDENT_RUNNER = {
    "since": bound(-3660 * DAY, 10**11, unit="s"),
}

# hx_report.health / services: how long to wait for the minions.
REPORT_RUNNER = {
    "timeout": bound(0, 3600, above=True, unit="s"),
}

# hx_maint.run / plan arguments (batch takes "n" hosts or "n%").
MAINT_RUNNER = {
    "batch": bound(1, 100000, integer=True, unit="hosts"),
    "batch%": bound(1, 100, integer=True, unit="%"),
    "max_fail_percentage": bound(0, 100, unit="%"),
}

# hx:maintenance (per host).
MAINTENANCE = {
    "backup:max_age_hours": bound(0, 24 * 366, unit="h"),
    "log_window_minutes": bound(0, 7 * 24 * 60, unit="min"),
    "log_max_bytes": bound(1, 1 << 30, integer=True, unit="bytes"),
    "cleanup:max_age_days": bound(1, 3660, unit="days"),
    "drain_timeout": bound(0, 3600, unit="s"),
    "restore_timeout": bound(0, 3600, unit="s"),
    "reboot_timeout": bound(0, DAY, unit="s"),
    "patch_timeout": bound(0, DAY, unit="s"),
}

# hx:health:thresholds (and hx_health.system thresholds=): each tier of a metric.
THRESHOLDS = {
    "cpu": bound(0, 100, unit="%"),
    "memory": bound(0, 100, unit="%"),
    "disk": bound(0, 100, unit="%"),
    "load": bound(0, 100000),
    "response_time": bound(0, TEN_MINUTES_MS, unit="ms"),
}

# hx_health.passing (state) and the hx_health beacon.
HEALTH_WAIT = {
    "timeout": bound(0, DAY, unit="s"),
    "interval": bound(0, 3600, above=True, unit="s"),
}

# hx_remediation (master config) and hx:remediation (pillar).
REMEDIATION = {
    "max_event_age": bound(1, DAY, unit="s"),
    "stale_ttl": bound(1, DAY, unit="s"),
    "recheck_timeout": bound(1, 3600, unit="s"),
    "action_timeout": bound(1, 3600, unit="s"),
    # the reactor's gate: tokens per second and bucket sizes per minion
    "unsigned_rate": bound(0.01, 10000, unit="events/s"),
    "unsigned_burst": bound(1, 1000000, integer=True, unit="events"),
    "signed_rate": bound(0.01, 10000, unit="events/s"),
    "signed_burst": bound(1, 1000000, integer=True, unit="events"),
    "declared_ttl": bound(1, DAY, unit="s"),
    "hold_max": bound(1, WEEK, unit="s"),
    "budget:minion:max": bound(1, 10000, integer=True, unit="actions"),
    "budget:minion:window": bound(1, WEEK, unit="s"),
    "budget:role:max_pct": bound(1, 100, unit="%"),
}

TABLES = {
    "hx:apps:<app>:deploy, hx_deploy.blue_green": DEPLOY,
    "hx:apps:<app>:canary, hx_deploy.canary / plan": CANARY,
    "hx_deploy.pause / promote / abort / history": DEPLOY_RUNNER,
    "hx_incident.list": INCIDENT_RUNNER,
    "hx_report.health / services": REPORT_RUNNER,
    "hx_maint.run / plan": MAINT_RUNNER,
    "hx:maintenance": MAINTENANCE,
    "hx:health:thresholds, hx_health.system thresholds=": THRESHOLDS,
    "hx_health.passing (state)": HEALTH_WAIT,
    "hx_remediation / hx:remediation": REMEDIATION,
}
