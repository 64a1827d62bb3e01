"""Two-tier (warning / critical) threshold logic for hx-ops health checks.

Boundary rule, the same for every metric: a value EQUAL to a threshold
breaches it (``value >= threshold``).  The Ansible framework this replaces used
``<`` in one place and ``>`` in another, so cpu = 80 was "unhealthy" yet
raised no incident; one rule everywhere removes that gap.

Statuses rank ``ok < unknown < warning < critical``: an overall status is
critical if anything is critical, else warning if anything is warning, else
unknown if anything could not be measured, else ok (also for an empty list:
nothing failed).

Pure Python, no Salt import: shared by ``_modules/hx_health.py`` and tests.
"""
import copy
import math
import numbers

import hx_numbers

OK = "ok"
WARNING = "warning"
CRITICAL = "critical"
UNKNOWN = "unknown"

STATUSES = (OK, UNKNOWN, WARNING, CRITICAL)
_RANK = {status: rank for rank, status in enumerate(STATUSES)}

# Carried over from the Ansible framework (health_check.sh tiers and
# alert_thresholds).  response_time has no warning tier unless configured.
DEFAULTS = {
    "cpu": {"warning": 60.0, "critical": 80.0},
    "memory": {"warning": 70.0, "critical": 85.0},
    "disk": {"warning": 80.0, "critical": 90.0},
    "load": {"warning": 3.0, "critical": 5.0},
    "response_time": {"warning": None, "critical": 2000.0},
}

TIERS = ("warning", "critical")


def is_number(value):
    """True for int/float (not bool, not NaN): YAML ``yes`` must not pass as 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return not math.isnan(value)


def evaluate(value, warning=None, critical=None):
    """Judge ``value`` against two tiers; a ``None`` tier is disabled.

    Returns ``"ok"``, ``"warning"``, ``"critical"``, or ``"unknown"`` when the
    value is missing (None) or not a number.
    """
    if not is_number(value):
        return UNKNOWN
    if critical is not None and value >= critical:
        return CRITICAL
    if warning is not None and value >= warning:
        return WARNING
    return OK


def worst(statuses):
    """Overall status of an iterable of statuses (see module docstring)."""
    result = OK
    for status in statuses:
        if status not in _RANK:
            raise ValueError(f"unknown status {status!r}")
        if _RANK[status] > _RANK[result]:
            result = status
    return result


def _validate_layer(layer, where):
    if layer is None:
        return {}
    if not isinstance(layer, dict):
        raise ValueError(
            f"{where}: must be a mapping of metric -> {{warning, critical}}, "
            f"got {type(layer).__name__}"
        )
    for metric, tiers in layer.items():
        if metric not in DEFAULTS:
            raise ValueError(
                f"{where}: unknown metric {metric!r} "
                f"(allowed: {', '.join(sorted(DEFAULTS))})"
            )
        if not isinstance(tiers, dict):
            raise ValueError(
                f"{where}.{metric}: must be a mapping with keys warning/critical, "
                f"got {type(tiers).__name__}"
            )
        for tier, value in tiers.items():
            if tier not in TIERS:
                raise ValueError(
                    f"{where}.{metric}: unknown key {tier!r} (allowed: warning, critical)"
                )
            # None disables a tier (e.g. no warning for response_time).
            if value is not None:
                try:
                    hx_numbers.check(f"{where}.{metric}.{tier}", value, hx_numbers.THRESHOLDS[metric])
                except ValueError as exc:
                    raise ValueError(f"{exc} (or null: no {tier} tier)") from None
    return layer


def merge(*layers, where="hx:health:thresholds"):
    """Merge override layers (later wins, per metric and tier) over DEFAULTS.

    Each layer looks like ``{"cpu": {"critical": 95}}``; a tier that is not
    given keeps the value beneath it.  Raises ValueError naming the bad key
    for an unknown metric/tier, a non-numeric value, or warning > critical
    after merging.
    """
    merged = copy.deepcopy(DEFAULTS)
    for layer in layers:
        for metric, tiers in _validate_layer(layer, where).items():
            for tier, value in tiers.items():
                merged[metric][tier] = None if value is None else float(value)
    for metric, tiers in merged.items():
        warn, crit = tiers["warning"], tiers["critical"]
        if warn is not None and crit is not None and warn > crit:
            raise ValueError(
                f"{where}.{metric}: warning ({warn:g}) is greater than "
                f"critical ({crit:g})"
            )
    return merged


def judge(metric, value, thresholds=None, unit=""):
    """Metric result dict ``{status, value, warning, critical, message}``."""
    tiers = (thresholds or DEFAULTS)[metric]
    warn, crit = tiers["warning"], tiers["critical"]
    status = evaluate(value, warn, crit)
    if status == UNKNOWN:
        message = f"{metric}: no value"
    elif status == CRITICAL:
        message = f"{metric} {value:g}{unit} >= critical {crit:g}{unit}"
    elif status == WARNING:
        message = f"{metric} {value:g}{unit} >= warning {warn:g}{unit}"
    else:
        message = f"{metric} {value:g}{unit} below thresholds"
    return {
        "status": status,
        "value": value,
        "warning": warn,
        "critical": crit,
        "message": message,
    }
