"""
Health checks for hx-ops minions: system resources, HTTP endpoints, TCP ports
and processes, judged against two-tier thresholds, with a local history used
for SLA reports and disk-fill forecasts.

Configuration lives in pillar ``hx:health`` (see ``pillar/hx/health.sls`` and
``docs/reference/hx_health.md``).  The decision logic is in ``_utils/``
(``hx_thresholds``, ``hx_checks``, ``hx_sla``, ``hx_forecast``,
``hx_history``); this module only gathers facts and records them.

:depends: psutil, requests
"""
import logging
import os
import re
import socket
import threading
import time

import hx_checks
import hx_errors
import hx_forecast
import hx_history
import hx_sla
import hx_thresholds
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import psutil

    HAS_PSUTIL = True
except ImportError:
    HAS_PSUTIL = False

try:
    import requests

    HAS_REQUESTS = True
except ImportError:
    HAS_REQUESTS = False

log = logging.getLogger(__name__)

__virtualname__ = "hx_health"

# Filesystems that never fill with data an operator cares about.  overlay is
# NOT here: it is the root filesystem in containers.  squashfs/iso9660 are
# read-only images that always read 100 %.
PSEUDO_FS = frozenset(
    {
        "proc", "sysfs", "tmpfs", "devtmpfs", "devpts", "cgroup", "cgroup2",
        "securityfs", "pstore", "bpf", "debugfs", "tracefs", "configfs",
        "fusectl", "mqueue", "hugetlbfs", "autofs", "binfmt_misc", "rpc_pipefs",
        "nsfs", "ramfs", "efivarfs", "selinuxfs", "squashfs", "iso9660",
        "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "nfsd",
    }
)
# The body is only read for body_match; a health page larger than this is a bug.
MAX_BODY_BYTES = 1 << 20
HISTORY_FILE = os.path.join("hx", "health_history.jsonl")


def __virtual__():
    if not HAS_PSUTIL:
        return (False, "hx_health: the psutil python library is not installed")
    if not HAS_REQUESTS:
        return (False, "hx_health: the requests python library is not installed")
    return __virtualname__


# ---------------------------------------------------------------- helpers


def _pillar(key, default=None):
    # Salt 3008 pillar.get redacts every leaf to "**********" for callers
    # other than templates unless unmask=True.
    return __salt__["pillar.get"](f"hx:health:{key}", default, unmask=True)


def _thresholds(*overrides, where="thresholds", typed=True):
    """Pillar thresholds with ``overrides`` on top.

    A bad pillar is a configuration error (ConfigError naming
    ``hx:health:thresholds``); what only the overrides break is theirs:
    SaltInvocationError naming the argument when the user ``typed`` them,
    ConfigError naming ``where`` when they come from pillar too (a check's own
    thresholds).
    """
    pillar = _pillar("thresholds")
    try:
        base = hx_thresholds.merge(pillar)
    except ValueError as exc:
        raise hx_errors.config(exc) from None
    if not any(overrides):
        return base
    try:
        return hx_thresholds.merge(pillar, *overrides, where=where)
    except ValueError as exc:
        raise (hx_errors.usage(exc) if typed else hx_errors.config(exc)) from None


def _history_path():
    return os.path.join(__opts__["cachedir"], HISTORY_FILE)


def _real_mounts(partitions):
    """Mountpoints worth watching: writable, not pseudo, each once."""
    seen = []
    for part in partitions:
        if part.fstype in PSEUDO_FS or "ro" in part.opts.split(","):
            continue
        if part.mountpoint not in seen:
            seen.append(part.mountpoint)
    return seen


def _error_chain(exc):
    """Every exception wrapped inside a requests/urllib3 exception."""
    todo, seen = [exc], []
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        todo.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
    return seen


def _classify_exception(exc):
    chain = _error_chain(exc)
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
        type(e).__name__ == "NameResolutionError" for e in chain
    ):
        return "dns"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused"
    # urllib3's ReadTimeoutError (wrapped in a requests ConnectionError when
    # it happens while streaming the body) is not a builtin TimeoutError.
    if any(
        isinstance(e, (socket.timeout, TimeoutError))
        or type(e).__name__ in ("ReadTimeoutError", "ConnectTimeoutError")
        or (HAS_REQUESTS and isinstance(e, requests.exceptions.Timeout))
        for e in chain
    ):
        return "timeout"
    return "connection"


def _names(names):
    if names is None or names == "":
        return None
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise SaltInvocationError(f"names must be a list or comma-separated string, got {names!r}")
    return list(names)


def _configured_checks():
    raw = _pillar("checks")
    response_time = _thresholds()["response_time"]
    try:
        checks = hx_checks.normalize(raw, response_time)
    except ValueError as exc:
        raise hx_errors.config(exc) from None
    # No configuration still means something useful: watch the machine itself.
    return checks or [{"name": "system", "kind": "system", "thresholds": {}}]


# ---------------------------------------------------------------- probes


CPU_SAMPLE_S = 0.2
CPU_REUSE_S = 10.0


def _cpu_percent():
    """CPU busy % since this process last asked, when that was 0.2-10 s ago, else over a 0.2 s sample.

    The health beacon runs every second inside the minion's main loop: a
    0.2 s sleep there would hold every job the master sends behind it.
    """
    # psutil keeps its last sample per thread: so does this.
    asked = __context__.setdefault("hx_health_cpu_at", {})
    tid = threading.get_ident()
    last, now = asked.get(tid), time.monotonic()
    if last is not None and CPU_SAMPLE_S <= now - last <= CPU_REUSE_S:
        asked[tid] = now
        return psutil.cpu_percent(interval=None)
    value = psutil.cpu_percent(interval=CPU_SAMPLE_S)
    asked[tid] = time.monotonic()
    return value


def system(thresholds=None):
    """
    Measure cpu %, memory %, disk % of every real writable mount and the load
    average, each judged against the warning/critical thresholds (a value
    equal to a threshold breaches it).

    thresholds
        Overrides merged over pillar ``hx:health:thresholds`` and the
        defaults, e.g. ``{"cpu": {"critical": 95}}``.

    Returns ``{"status", "metrics": {"cpu": {...}, "memory": {...},
    "disk:/": {...}, "load": {...}}}``, each metric ``{status, value,
    warning, critical, message}``; load is judged on the 1-minute average and
    also carries ``load5``/``load15``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.system
        salt '*' hx_health.system thresholds='{"cpu": {"critical": 95}}'
    """
    return _measure(_thresholds(thresholds))


def _measure(limits):
    metrics = {
        "cpu": hx_thresholds.judge("cpu", _cpu_percent(), limits, "%"),
        "memory": hx_thresholds.judge(
            "memory", psutil.virtual_memory().percent, limits, "%"
        ),
    }
    # all=True: all=False drops "nodev" filesystems, which includes overlay.
    for mount in _real_mounts(psutil.disk_partitions(all=True)):
        try:
            pct = psutil.disk_usage(mount).percent
        except OSError as exc:
            metric = hx_thresholds.judge("disk", None, limits)
            metric["message"] = f"disk {mount}: {exc}"
        else:
            metric = hx_thresholds.judge("disk", pct, limits, "%")
            metric["message"] = metric["message"].replace("disk", f"disk {mount}", 1)
        metrics[f"disk:{mount}"] = metric
    load1, load5, load15 = psutil.getloadavg()
    metrics["load"] = hx_thresholds.judge("load", round(load1, 2), limits)
    metrics["load"].update(load5=round(load5, 2), load15=round(load15, 2))
    return {
        "status": hx_thresholds.worst(m["status"] for m in metrics.values()),
        "metrics": metrics,
    }


def http(
    url,
    timeout=3,
    expect_status=200,
    body_match=None,
    warning_ms=None,
    critical_ms=None,
    verify_ssl=True,
):
    """
    Probe an HTTP(S) endpoint once.  Never raises for a failing endpoint: the
    failure is the result.

    ``requests`` is used directly rather than ``http.query``: its typed
    exceptions tell refused, DNS failure and timeout apart, and connect/read
    timeouts are explicit (``http.query`` defaults to 3600 s).  The body is
    read under the same deadline, so a server that trickles bytes still
    times out.  Proxy environment variables are ignored: a health check
    must reach the endpoint itself.

    url
        http:// or https:// URL
    timeout
        seconds, > 0 and <= 60, for connect + response + body (default 3)
    expect_status
        status code or list of codes counted as healthy (default 200)
    body_match
        regular expression the body must match (re.search)
    warning_ms / critical_ms
        latency tiers in ms; default to pillar
        ``hx:health:thresholds:response_time`` (built-in: none / 2000)
    verify_ssl
        verify https certificates (default True)

    Returns ``{status, value: latency_ms, threshold: {warning, critical},
    message, http_status, error}``; ``error`` is None, "refused", "timeout",
    "dns", "http_5xx", "http_status", "body_mismatch" or "connection".  Every
    error is critical; otherwise latency >= critical_ms is critical and
    >= warning_ms is warning.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.http http://127.0.0.1:8080/health timeout=2
        salt '*' hx_health.http http://127.0.0.1:8080/health body_match='"ok"'
    """
    check = _validate_one(
        {
            "kind": "http",
            "url": url,
            "timeout": timeout,
            "expect_status": expect_status,
            "body_match": body_match,
            "warning_ms": warning_ms,
            "critical_ms": critical_ms,
            "verify_ssl": verify_ssl,
        }
    )
    return _probe_http(check)


def _validate_one(check):
    check = {key: value for key, value in check.items() if value is not None}
    check.setdefault("name", "adhoc")
    try:
        return hx_checks.normalize([check], _thresholds()["response_time"])[0]
    except ValueError as exc:
        # The index prefix means nothing for a direct call.
        raise SaltInvocationError(str(exc).replace("hx:health:checks[0] (adhoc): ", "")) from None


def _probe_http(check):
    timeout = check["timeout"]
    facts = {
        "expect_status": check["expect_status"],
        "warning_ms": check["warning_ms"],
        "critical_ms": check["critical_ms"],
    }
    session = requests.Session()
    session.trust_env = False
    start = time.monotonic()
    try:
        response = session.get(
            check["url"],
            timeout=(timeout, timeout),
            stream=True,
            verify=check["verify_ssl"],
            headers={"User-Agent": "hx-ops-health/1"},
        )
        try:
            body = b""
            for chunk in response.iter_content(chunk_size=65536):
                body += chunk
                if time.monotonic() - start > timeout:
                    raise requests.exceptions.ReadTimeout("body not read within timeout")
                if len(body) >= MAX_BODY_BYTES:
                    break
        finally:
            response.close()
        latency = (time.monotonic() - start) * 1000.0
        if latency > timeout * 1000.0:
            raise requests.exceptions.ReadTimeout("response not complete within timeout")
        matched = None
        if check["body_match"] is not None:
            text = body.decode(response.encoding or "utf-8", errors="replace")
            matched = re.search(check["body_match"], text) is not None
        return hx_checks.classify_http(
            http_status=response.status_code,
            latency_ms=latency,
            body_matched=matched,
            **facts,
        )
    except requests.exceptions.RequestException as exc:
        kind = _classify_exception(exc)
        log.debug("hx_health.http %s: %s (%s)", check["url"], kind, exc)
        detail = f"{check['url']} after {timeout:g} s" if kind == "timeout" else check["url"]
        return hx_checks.classify_http(error=kind, detail=detail, **facts)
    finally:
        session.close()


def tcp(host, port, timeout=3):
    """
    Open (and close) a TCP connection.  Never raises for a failing target.

    Returns ``{status, value: connect_ms, threshold: None, message, error}``;
    ``error`` is None, "refused", "timeout", "dns" or "connection", each
    critical.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.tcp 127.0.0.1 4506 timeout=2
    """
    check = _validate_one({"kind": "tcp", "host": host, "port": port, "timeout": timeout})
    return _probe_tcp(check)


def _probe_tcp(check):
    host, port = check["host"], check["port"]
    start = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=check["timeout"]):
            latency = (time.monotonic() - start) * 1000.0
    except OSError as exc:
        return hx_checks.classify_tcp(
            error=_classify_exception(exc), host=host, port=port, detail=str(exc) or None
        )
    return hx_checks.classify_tcp(latency_ms=latency, host=host, port=port)


def process(name=None, pattern=None, min_count=1):
    """
    Count live processes by exact process ``name`` or by a ``pattern``
    (regular expression searched in the command line).  Zombies are not
    counted: a killed process that nobody reaped is not running.  The calling
    process itself is excluded (its own command line contains the pattern).

    Returns ``{status, value: count, threshold: {"min_count": n}, message,
    pids}``; critical when fewer than ``min_count`` are found.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.process name=sshd
        salt '*' hx_health.process pattern='gunicorn.*app:main' min_count=2
    """
    if (name is None) == (pattern is None):
        raise SaltInvocationError("process: give exactly one of name or pattern")
    check = _validate_one(
        {"kind": "process", "process_name": name, "pattern": pattern, "min_count": min_count}
    )
    return _probe_process(check)


def _probe_process(check):
    name, pattern, wanted = check["process_name"], check["pattern"], check["min_count"]
    regex = re.compile(pattern) if pattern else None
    me = os.getpid()
    pids = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "status"]):
        info = proc.info
        if info["pid"] == me or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if regex is not None:
            cmdline = " ".join(info["cmdline"] or []) or (info["name"] or "")
            if regex.search(cmdline):
                pids.append(info["pid"])
        elif info["name"] == name:
            pids.append(info["pid"])
    what = f"name {name!r}" if name else f"pattern {pattern!r}"
    count = len(pids)
    ok = count >= wanted
    return {
        "status": hx_thresholds.OK if ok else hx_thresholds.CRITICAL,
        "value": count,
        "threshold": {"min_count": wanted},
        "message": f"{count} live process(es) matching {what}"
        + ("" if ok else f", need at least {wanted}"),
        "pids": sorted(pids)[:50],
    }


# ---------------------------------------------------------------- configured checks


def checks(names=None, on_demand=False):
    """
    The configured checks (pillar ``hx:health:checks``) after validation,
    with defaults filled in; runs nothing.  A malformed configuration raises
    CommandExecutionError naming the pillar key, an unknown name
    SaltInvocationError naming it. Without names: the routine checks, plus
    the ``on_demand`` ones when ``on_demand=True``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.checks
        salt '*' hx_health.checks on_demand=True
        salt '*' hx_health.checks names=app_http,sshd
    """
    configured = _configured_checks()
    if on_demand and names is None:
        return configured
    try:
        return hx_checks.select(configured, _names(names))
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None


def _run_one(check):
    kind = check["kind"]
    if kind == "system":
        # Per-check overrides sit on top of pillar thresholds; both are configuration.
        res = _measure(_thresholds(check["thresholds"] or None, typed=False,
                                   where=f"hx:health:checks ({check['name']}).thresholds"))
        return {
            f"{check['name']}:{metric}": dict(
                result,
                kind="system",
                threshold={"warning": result["warning"], "critical": result["critical"]},
            )
            for metric, result in res["metrics"].items()
        }
    probe = {"http": _probe_http, "tcp": _probe_tcp, "process": _probe_process}[kind]
    return {check["name"]: dict(probe(check), kind=kind)}


def check(names=None):
    """
    Run every check configured in pillar ``hx:health:checks`` (or only the
    ``names`` given, list or comma-separated) and record a sample in the
    history.  Without configured checks a single ``system`` check runs.

    Returns::

        {"status": "ok|warning|critical|unknown",   # worst of all checks
         "minion": "<id>", "timestamp": <epoch>,
         "checks": {"<name>": {"kind", "status", "value", "threshold",
                               "message", ...kind-specific keys},
                    "<system check>:cpu": {...}, "<system check>:memory": {...},
                    "<system check>:disk:<mount>": {...},
                    "<system check>:load": {...}}}

    A system check appears as one flat entry per metric, named
    ``<check>:<metric>``.  When the overall status is critical the return
    code is 2 (``salt-call`` exits 1, or 2 with ``--retcode-passthrough``;
    the job return carries ``retcode: 2``).

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.check
        salt-call --retcode-passthrough hx_health.check names=app_http,sshd
    """
    selected = checks(names=names)
    # Fail on bad pillar thresholds before probing anything.
    _thresholds()
    results = {}
    for item in selected:
        try:
            results.update(_run_one(item))
        except (SaltInvocationError, CommandExecutionError):
            raise
        except Exception as exc:  # pylint: disable=broad-except
            # One broken probe must not hide the others' results.
            log.exception("hx_health: check %s failed", item["name"])
            results[item["name"]] = {
                "kind": item["kind"],
                "status": hx_thresholds.UNKNOWN,
                "value": None,
                "threshold": None,
                "message": f"check failed: {exc}",
            }
    now = time.time()
    overall = hx_thresholds.worst(r["status"] for r in results.values())
    _record(now, results)
    if overall == hx_thresholds.CRITICAL:
        __context__["retcode"] = 2
    return {
        "status": overall,
        "minion": __opts__.get("id"),
        "timestamp": now,
        "checks": results,
    }


def _max_samples():
    value = _pillar("history:max_samples", hx_history.DEFAULT_MAX_SAMPLES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise hx_errors.ConfigError(
            f"hx:health:history: key 'max_samples' must be a positive integer, got {value!r}"
        )
    return value


def _record(now, results):
    disk = {}
    for name, result in results.items():
        metric = name.partition(":")[2]
        if result["kind"] == "system" and metric.startswith("disk:") and result["value"] is not None:
            disk[metric[len("disk:"):]] = result["value"]
    sample = hx_history.compact(now, results, disk)
    try:
        hx_history.append(_history_path(), sample, _max_samples())
    except OSError as exc:
        # Losing one sample is better than failing the health check itself.
        log.warning("hx_health: cannot write history %s: %s", _history_path(), exc)


def _read_history():
    samples, corrupt = hx_history.read(_history_path())
    if corrupt:
        log.warning("hx_health: skipped %d corrupt line(s) in %s", corrupt, _history_path())
    return samples, corrupt


def history(name=None, limit=100):
    """
    Recent health samples from this minion's history
    (``<cachedir>/hx/health_history.jsonl``), oldest first.

    name
        only this check (a system check's ``<check>:<metric>`` entries are
        included for its name)
    limit
        at most this many samples (the newest), default 100

    Returns ``{"path", "corrupt_lines", "samples": [{"t", "checks":
    {name: {"status", "value"}}, "disk": {mount: pct}}]}``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.history
        salt '*' hx_health.history name=app_http limit=20
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise SaltInvocationError(f"limit must be a positive integer, got {limit!r}")
    samples, corrupt = _read_history()
    out = []
    for sample in samples:
        entries = {
            key: {"status": value[0], "value": value[1] if len(value) > 1 else None}
            for key, value in sample["c"].items()
            if isinstance(value, list) and value
            and (name is None or key == name or key.startswith(f"{name}:"))
        }
        if name is not None and not entries:
            continue
        out.append({"t": sample["t"], "checks": entries, "disk": sample["d"]})
    return {"path": _history_path(), "corrupt_lines": corrupt, "samples": out[-limit:]}


def sla(window_days=None, availability=None, response_time_ms=None, error_rate=None):
    """
    SLA compliance over the history window.  Arguments default to pillar
    ``hx:health:sla`` and then to window_days=30, availability=99.9 (%),
    response_time_ms=1000 (mean http latency), error_rate=1.0 (% of http
    samples critical).  Targets are met at equality.

    Returns ``{"status": "met|violated|unknown", "reason", "window",
    "targets", "samples", "skipped_future", "outside_window", "checks":
    {name: {"kind", "samples", "availability", "met"}}, "response_time":
    {"mean_ms", "samples", "met"}, "error_rate": {"pct", "samples",
    "errors", "met"}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.sla
        salt '*' hx_health.sla window_days=7 availability=99.5
    """
    conf = _pillar("sla", {}) or {}
    if not isinstance(conf, dict):
        raise hx_errors.ConfigError(f"hx:health:sla must be a mapping, got {type(conf).__name__}")
    unknown = set(conf) - set(hx_sla.DEFAULTS)
    if unknown:
        raise hx_errors.ConfigError(f"hx:health:sla: unknown key(s) {', '.join(sorted(unknown))}")
    configured = {key: conf.get(key, default) for key, default in hx_sla.DEFAULTS.items()}
    try:
        hx_sla.validate(**configured)
    except ValueError as exc:
        raise hx_errors.config(exc) from None
    typed = {
        "window_days": window_days,
        "availability": availability,
        "response_time_ms": response_time_ms,
        "error_rate": error_rate,
    }
    args = dict(configured, **{key: value for key, value in typed.items() if value is not None})
    try:
        hx_sla.validate(**args, source=None)  # the pillar passed: what fails now is an argument
    except ValueError as exc:
        raise hx_errors.usage(exc) from None
    try:
        kinds = {c["name"]: c["kind"] for c in _configured_checks()}
    except hx_errors.ConfigError:
        kinds = {}  # a broken config must not hide the SLA of past samples
    samples, _ = _read_history()
    return hx_sla.compute(samples, time.time(), kinds=kinds, **args)


def forecast(horizon_hours=24, lookback_hours=24):
    """
    Disk-fill forecast per mount: a least-squares line through the disk
    samples of the last ``lookback_hours`` (like Prometheus predict_linear),
    extrapolated to the critical disk threshold.

    Per mount: critical if already >= critical, warning if the trend reaches
    critical within ``horizon_hours``, ok if flat/decreasing or beyond the
    horizon, unknown (with a reason) with fewer than 3 samples, a span under
    5 minutes, or a mount no longer present.

    Returns ``{"status", "reason", "horizon_hours", "lookback_hours",
    "critical", "mounts": {mount: {"status", "reason", "current",
    "slope_pct_per_hour", "predicted_epoch", "hours_to_critical",
    "samples", "span_hours", "critical"}}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_health.forecast
        salt '*' hx_health.forecast horizon_hours=72
    """
    critical = _thresholds()["disk"]["critical"]
    if critical is None:
        raise hx_errors.ConfigError("hx:health:thresholds: disk critical is disabled, nothing to forecast")
    samples, _ = _read_history()
    try:
        return hx_forecast.forecast(
            samples,
            time.time(),
            critical=critical,
            horizon_hours=horizon_hours,
            lookback_hours=lookback_hours,
        )
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None
