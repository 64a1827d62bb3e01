"""Validation of pillar ``hx:health:checks`` and classification of probe facts.

``normalize(checks)`` turns the pillar list into a list of complete check dicts
(defaults filled in) or raises ValueError whose message names the check and
the key, e.g. ``hx:health:checks[1] (app_http): key 'timout' is not allowed
for kind http``.  Indexes are 0-based, as in the YAML list.

``classify_http`` / ``classify_tcp`` turn raw facts gathered by the execution
module (status code, latency, error kind) into a check result dict, so the
status mapping is testable without a network.

Pure Python, no Salt import.
"""
import re
from urllib.parse import urlsplit

import hx_numbers
import hx_thresholds

WHERE = "hx:health:checks"
KINDS = ("system", "http", "tcp", "process")

# Names become dict keys, flat "<check>:<metric>" keys and event tag parts
# (salt/beacon/<minion>/hx_health/<check>), so ':' and '/' are excluded.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

MAX_TIMEOUT = 60
DEFAULT_TIMEOUT = 3

# on_demand: run only when named (e.g. an idle color that is down by design,
# checked by the deployment and by hx_service when it starts that slot).
_COMMON = ("name", "kind", "on_demand")
_ALLOWED = {
    "system": _COMMON + ("thresholds",),
    "http": _COMMON
    + (
        "url",
        "timeout",
        "expect_status",
        "body_match",
        "warning_ms",
        "critical_ms",
        "verify_ssl",
    ),
    "tcp": _COMMON + ("host", "port", "timeout"),
    # The exact-name key is ``process_name`` because ``name`` is the check's.
    "process": _COMMON + ("process_name", "pattern", "min_count"),
}

HTTP_ERRORS = (
    None,
    "refused",
    "timeout",
    "dns",
    "http_5xx",
    "http_status",
    "body_mismatch",
    "connection",
)
TCP_ERRORS = (None, "refused", "timeout", "dns", "connection")


class _Ctx:
    """Formats error messages with the check's position and name."""

    def __init__(self, index, name):
        self.prefix = f"{WHERE}[{index}]" + (f" ({name})" if name else "")

    def fail(self, key, problem):
        if key is None:
            raise ValueError(f"{self.prefix}: {problem}")
        raise ValueError(f"{self.prefix}: key {key!r} {problem}")


def _number(ctx, check, key, default, low=0.0, high=None, low_inclusive=False):
    value = check.get(key, default)
    if value is None:
        return None
    if not hx_numbers.is_finite(value):
        ctx.fail(key, f"must be a number, got {hx_numbers.shown(value)}")
    too_low = value < low if low_inclusive else value <= low
    if too_low or (high is not None and value > high):
        bound = ("[" if low_inclusive else "(") + f"{low:g}, " + (
            f"{high:g}]" if high is not None else "inf)"
        )
        ctx.fail(key, f"must be in {bound}, got {value!r}")
    return value


def _integer(ctx, check, key, default, low, high):
    value = check.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        ctx.fail(key, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        ctx.fail(key, f"must be between {low} and {high}, got {value}")
    return value


def _string(ctx, check, key, required=False):
    value = check.get(key)
    if value is None:
        if required:
            ctx.fail(key, "is required")
        return None
    if not isinstance(value, str) or not value:
        ctx.fail(key, f"must be a non-empty string, got {value!r}")
    return value


def _regex(ctx, check, key):
    value = _string(ctx, check, key)
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            ctx.fail(key, f"is not a valid regular expression: {exc}")
    return value


def _timeout(ctx, check):
    return _number(ctx, check, "timeout", DEFAULT_TIMEOUT, 0.0, MAX_TIMEOUT)


def _system(ctx, check, _response_time):
    # Validated here so a bad override fails the config, not a later run.
    hx_thresholds.merge(check.get("thresholds"), where=f"{ctx.prefix}.thresholds")
    return {"thresholds": check.get("thresholds") or {}}


def _http(ctx, check, response_time):
    url = _string(ctx, check, "url", required=True)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        ctx.fail("url", f"must be an http:// or https:// URL with a host, got {url!r}")
    expect = check.get("expect_status", 200)
    codes = expect if isinstance(expect, list) else [expect]
    if not codes:
        ctx.fail("expect_status", "must not be an empty list")
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            ctx.fail(
                "expect_status",
                f"must be an HTTP status code (100-599) or a list of them, got {expect!r}",
            )
    ms = hx_numbers.THRESHOLDS["response_time"].high
    warning_ms = _number(ctx, check, "warning_ms", response_time["warning"], high=ms)
    critical_ms = _number(ctx, check, "critical_ms", response_time["critical"], high=ms)
    if warning_ms is not None and critical_ms is not None and warning_ms > critical_ms:
        ctx.fail("warning_ms", f"({warning_ms:g}) is greater than critical_ms ({critical_ms:g})")
    verify = check.get("verify_ssl", True)
    if not isinstance(verify, bool):
        ctx.fail("verify_ssl", f"must be true or false, got {verify!r}")
    return {
        "url": url,
        "timeout": _timeout(ctx, check),
        "expect_status": codes,
        "body_match": _regex(ctx, check, "body_match"),
        "warning_ms": warning_ms,
        "critical_ms": critical_ms,
        "verify_ssl": verify,
    }


def _tcp(ctx, check, _response_time):
    host = _string(ctx, check, "host", required=True)
    if check.get("port") is None:
        ctx.fail("port", "is required")
    return {
        "host": host,
        "port": _integer(ctx, check, "port", None, 1, 65535),
        "timeout": _timeout(ctx, check),
    }


def _process(ctx, check, _response_time):
    name = _string(ctx, check, "process_name")
    pattern = _regex(ctx, check, "pattern")
    if (name is None) == (pattern is None):
        ctx.fail(None, "kind process needs exactly one of 'process_name' or 'pattern'")
    return {
        "process_name": name,
        "pattern": pattern,
        "min_count": _integer(ctx, check, "min_count", 1, 1, 1_000_000),
    }


_BUILDERS = {"system": _system, "http": _http, "tcp": _tcp, "process": _process}


def normalize(checks, response_time=None):
    """Validate the pillar list and return complete check dicts.

    ``None`` (key present but empty) counts as an empty list; the caller
    decides what "no checks" means.  ``response_time`` (``{"warning",
    "critical"}`` in ms, from the merged thresholds) supplies the defaults of
    an http check's warning_ms / critical_ms.
    """
    if response_time is None:
        response_time = hx_thresholds.DEFAULTS["response_time"]
    if checks is None:
        return []
    if not isinstance(checks, list):
        raise ValueError(f"{WHERE}: must be a list of checks, got {type(checks).__name__}")
    seen = {}
    result = []
    for index, check in enumerate(checks):
        if not isinstance(check, dict):
            _Ctx(index, None).fail(None, f"must be a mapping, got {type(check).__name__}")
        raw_name = check.get("name")
        ctx = _Ctx(index, raw_name if isinstance(raw_name, str) else None)
        name = _string(ctx, check, "name", required=True)
        if not NAME_RE.fullmatch(name):
            ctx.fail("name", "may only contain letters, digits, '_', '.' and '-'")
        if name in seen:
            ctx.fail("name", f"duplicates {WHERE}[{seen[name]}]")
        seen[name] = index
        kind = check.get("kind")
        if kind not in KINDS:
            ctx.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
        for key in check:
            if key not in _ALLOWED[kind]:
                ctx.fail(key, f"is not allowed for kind {kind}")
        on_demand = check.get("on_demand", False)
        if not isinstance(on_demand, bool):
            ctx.fail("on_demand", f"must be true or false, got {on_demand!r}")
        entry = {"name": name, "kind": kind, "on_demand": on_demand}
        entry.update(_BUILDERS[kind](ctx, check, response_time))
        result.append(entry)
    return result


def select(checks, names):
    """The checks named in ``names`` (config order); ValueError names unknown ones.

    Without names: every check not marked ``on_demand``.
    """
    if names is None:
        return [check for check in checks if not check.get("on_demand")]
    known = {check["name"] for check in checks}
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(
            f"unknown check name(s): {', '.join(missing)} "
            f"(configured: {', '.join(sorted(known)) or 'none'})"
        )
    wanted = set(names)
    return [check for check in checks if check["name"] in wanted]


def classify_http(
    http_status=None,
    latency_ms=None,
    error=None,
    expect_status=(200,),
    body_matched=None,
    warning_ms=None,
    critical_ms=2000,
    detail=None,
):
    """Result dict for one HTTP probe.

    ``error`` is the transport outcome seen by the prober (None, "refused",
    "timeout", "dns", "connection"); HTTP-level errors ("http_5xx",
    "http_status", "body_mismatch") are derived here from ``http_status``
    and ``body_matched``.  Every error is critical: a health endpoint that
    cannot answer in time is as unusable to a load balancer as one that
    refuses.  Otherwise latency is judged against warning_ms/critical_ms.
    """
    if error not in (None, "refused", "timeout", "dns", "connection"):
        raise ValueError(f"unknown transport error {error!r}")
    if error is None and http_status is None:
        raise ValueError("classify_http needs an http_status or a transport error")
    threshold = {"warning": warning_ms, "critical": critical_ms}
    value = None if latency_ms is None else round(float(latency_ms), 1)
    suffix = f": {detail}" if detail else ""
    if error is not None:
        messages = {
            "refused": "connection refused",
            "timeout": "timed out",
            "dns": "name resolution failed",
            "connection": "connection failed",
        }
        status, message = hx_thresholds.CRITICAL, messages[error] + suffix
        value = None
    elif http_status not in expect_status:
        error = "http_5xx" if http_status >= 500 else "http_status"
        status = hx_thresholds.CRITICAL
        message = (
            f"HTTP {http_status}, expected "
            f"{' or '.join(str(code) for code in expect_status)}"
        )
    elif body_matched is False:
        error = "body_mismatch"
        status, message = hx_thresholds.CRITICAL, "response body does not match"
    else:
        status = hx_thresholds.evaluate(value, warning_ms, critical_ms)
        if status == hx_thresholds.CRITICAL:
            message = f"HTTP {http_status} in {value:g} ms >= critical {critical_ms:g} ms"
        elif status == hx_thresholds.WARNING:
            message = f"HTTP {http_status} in {value:g} ms >= warning {warning_ms:g} ms"
        elif status == hx_thresholds.UNKNOWN:
            message = f"HTTP {http_status}, latency not measured"
        else:
            message = f"HTTP {http_status} in {value:g} ms"
    return {
        "status": status,
        "value": value,
        "threshold": threshold,
        "message": message,
        "http_status": http_status,
        "error": error,
    }


def classify_tcp(error=None, latency_ms=None, host=None, port=None, detail=None):
    """Result dict for one TCP connect probe; any error is critical."""
    if error not in TCP_ERRORS:
        raise ValueError(f"unknown transport error {error!r}")
    target = f"{host}:{port}" if host is not None else "target"
    if error is None:
        value = None if latency_ms is None else round(float(latency_ms), 1)
        shown = "" if value is None else f" in {value:g} ms"
        status, message = hx_thresholds.OK, f"connected to {target}{shown}"
    else:
        value = None
        words = {
            "refused": "connection refused",
            "timeout": "connect timed out",
            "dns": "name resolution failed",
            "connection": "connection failed",
        }
        status = hx_thresholds.CRITICAL
        message = f"{target}: {words[error]}" + (f": {detail}" if detail else "")
    return {
        "status": status,
        "value": value,
        "threshold": None,
        "message": message,
        "error": error,
    }
