"""Pure decisions of a rolling maintenance run (the ``hx_maint`` runner).

Batches, the failure threshold, the maintenance settings of a host (pillar
``hx:maintenance``), the backup age, the application-log scan, drain safety,
what "restore" means on a load balancer, the compliance fields and the CSV
summary line. No Salt here: the runner gathers facts and acts.
"""
import csv
import datetime
import io
import math
import re
import zoneinfo

import hx_numbers
import hx_paths
import hx_rotation

CSV_HEADER = (
    "date",
    "hostname",
    "duration_minutes",
    "services_restarted",
    "patches_applied",
    "verification_passed",
    "reboot_required",
)

# Keys of hx:maintenance read by hx_maint (the minion module); the runner
# must accept them beside its own.
TMP_DIRS_KEY = "hx:maintenance:cleanup:tmp_dirs"
WINDOW_KEYS = {"enforce", "windows", "blackouts", "schedule"}

DEFAULTS = {
    "backup": None,  # {path, pattern, max_age_hours}; None = no backup configured
    "stop_services": [],  # hx:services stopped while the host is patched
    "critical_services": None,  # None = every hx:services entry running before maintenance
    "health_checks": None,  # None = every configured check not on_demand; always + the critical services' checks
    "health_ok": ["ok", "warning"],  # hx_health statuses that pass
    "app_logs": [],  # paths scanned for ERROR/CRITICAL/FATAL lines
    "log_window_minutes": 10,
    "log_levels": ["ERROR", "CRITICAL", "FATAL"],
    "log_tz": "UTC",  # zone of log timestamps written without an offset
    "log_max_bytes": 1048576,  # how much of each log's end is read
    "cleanup": None,
    "patch": None,
    "drain_timeout": 60,  # s per server for in-flight sessions to finish
    "restore_timeout": 60,  # s for a restored server to be seen UP by the LB
    "reboot_timeout": 900,  # s for a rebooting host to come back
    "patch_timeout": 1800,  # s for hx_patch.apply
}
BACKUP_DEFAULTS = {"path": None, "pattern": "*.tar.gz", "max_age_hours": 24}
CLEANUP_DEFAULTS = {"tmp_dirs": [], "max_age_days": 7, "logrotate": None, "logrotate_state": None, "pkg_cache": False}
PATCH_DEFAULTS = {"security_only": False, "pkgs": None, "exclude": [], "refresh": True}
STATUSES = ("ok", "warning", "critical", "unknown")


def _fail(key, why):
    raise ValueError(f"hx:maintenance:{key}: {why}")


def names(key, value):
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(key, f"must be a list of names, got {value!r}")
    return list(value)


def _num(key, value):
    """``hx:maintenance:<key>`` within its bounds (``hx_numbers.MAINTENANCE``)."""
    return hx_numbers.check(f"hx:maintenance:{key}", value, hx_numbers.MAINTENANCE[key])


def _paths(key, value):
    value = names(key, value)
    for path in value:
        if not path.startswith("/"):
            _fail(key, f"{path!r} must be an absolute path")
    return value


def _sub(key, raw, defaults):
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _fail(key, "must be a mapping")
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        _fail(f"{key}:{unknown[0]}", f"unknown key (known: {', '.join(sorted(defaults))})")
    out = dict(defaults)
    out.update(raw)
    return out


def settings(raw):
    """The validated run settings of one host from its ``hx:maintenance`` pillar."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError("hx:maintenance: must be a mapping")
    unknown = sorted(set(raw) - set(DEFAULTS) - WINDOW_KEYS)
    if unknown:
        _fail(unknown[0], "unknown key (known: " + ", ".join(sorted(set(DEFAULTS) | WINDOW_KEYS)) + ")")
    cfg = {k: raw.get(k, v) for k, v in DEFAULTS.items()}
    backup = _sub("backup", cfg["backup"], BACKUP_DEFAULTS)
    if backup is not None:
        if not isinstance(backup["path"], str) or not backup["path"].startswith("/"):
            _fail("backup:path", f"must be an absolute path, got {backup['path']!r}")
        if not isinstance(backup["pattern"], str) or not backup["pattern"]:
            _fail("backup:pattern", "must be a file glob such as '*.tar.gz'")
        backup["max_age_hours"] = _num("backup:max_age_hours", backup["max_age_hours"])
    cfg["backup"] = backup
    cfg["stop_services"] = names("stop_services", cfg["stop_services"])
    if cfg["critical_services"] is not None:
        cfg["critical_services"] = names("critical_services", cfg["critical_services"])
    if cfg["health_checks"] is not None:
        cfg["health_checks"] = names("health_checks", cfg["health_checks"])
    cfg["health_ok"] = names("health_ok", cfg["health_ok"])
    bad = [s for s in cfg["health_ok"] if s not in STATUSES]
    if bad or not cfg["health_ok"]:
        _fail("health_ok", f"must list statuses among {', '.join(STATUSES)}, got {raw.get('health_ok')!r}")
    cfg["app_logs"] = _paths("app_logs", cfg["app_logs"])
    cfg["log_levels"] = names("log_levels", cfg["log_levels"])
    cfg["log_window_minutes"] = _num("log_window_minutes", cfg["log_window_minutes"])
    try:
        zoneinfo.ZoneInfo(str(cfg["log_tz"]))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _fail("log_tz", f"unknown time zone {cfg['log_tz']!r} (zoneinfo name like UTC or Europe/Berlin)")
    cfg["log_max_bytes"] = _num("log_max_bytes", cfg["log_max_bytes"])
    cleanup = _sub("cleanup", cfg["cleanup"], CLEANUP_DEFAULTS) or dict(CLEANUP_DEFAULTS)
    cleanup["tmp_dirs"] = _paths("cleanup:tmp_dirs", cleanup["tmp_dirs"])
    # The same allowlist as hx.cleanup.disk (checked again on the host, resolved, before removal).
    cleanup["tmp_dirs"] = [hx_paths.cleanup_dir(path, key=TMP_DIRS_KEY) for path in cleanup["tmp_dirs"]]
    cleanup["max_age_days"] = _num("cleanup:max_age_days", cleanup["max_age_days"])
    for key in ("logrotate", "logrotate_state"):
        if cleanup[key] is not None and (not isinstance(cleanup[key], str) or not cleanup[key].startswith("/")):
            _fail(f"cleanup:{key}", f"must be an absolute path, got {cleanup[key]!r}")
    if not isinstance(cleanup["pkg_cache"], bool):
        _fail("cleanup:pkg_cache", f"must be true or false, got {cleanup['pkg_cache']!r}")
    cfg["cleanup"] = cleanup
    patch = _sub("patch", cfg["patch"], PATCH_DEFAULTS) or dict(PATCH_DEFAULTS)
    for key in ("security_only", "refresh"):
        if not isinstance(patch[key], bool):
            _fail(f"patch:{key}", f"must be true or false, got {patch[key]!r}")
    if patch["pkgs"] is not None:
        patch["pkgs"] = names("patch:pkgs", patch["pkgs"])
    patch["exclude"] = names("patch:exclude", patch["exclude"])
    cfg["patch"] = patch
    for key in ("drain_timeout", "restore_timeout", "reboot_timeout", "patch_timeout"):
        cfg[key] = _num(key, cfg[key])
    return cfg


# -- batches and the failure threshold ---------------------------------------------


_BATCH = re.compile(r"([0-9]{1,9})(%?)")


def batch_size(batch, total):
    """Hosts per batch from ``n`` or ``"n%"`` (rounded up, at least 1, at most ``total``)."""
    hosts, share = hx_numbers.MAINT_RUNNER["batch"], hx_numbers.MAINT_RUNNER["batch%"]
    match = None if isinstance(batch, bool) else _BATCH.fullmatch(str(batch).strip())
    if not match:
        raise ValueError(f"batch: must be a number of hosts ({hx_numbers.span(hosts)}) or a percentage like "
                         f"'25%' ({hx_numbers.span(share)}), got {hx_numbers.shown(batch)}")
    if match.group(2):
        value = hx_numbers.check("batch", int(match.group(1)), share)
        size = math.ceil(total * value / 100)
    else:
        size = hx_numbers.check("batch", int(match.group(1)), hosts)
    return max(1, min(size, total)) if total else 0


def batches(hosts, batch):
    """The hosts (sorted) in consecutive batches."""
    hosts = sorted(hosts)
    size = batch_size(batch, len(hosts))
    return [hosts[i:i + size] for i in range(0, len(hosts), size)] if hosts else []


def max_fail(value):
    """``max_fail_percentage`` as a number 0..100 (``"25%"`` too; ValueError names the argument)."""
    text = value.strip().rstrip("%").strip() if isinstance(value, str) else value
    return hx_numbers.check("max_fail_percentage", text, hx_numbers.MAINT_RUNNER["max_fail_percentage"], text=True)


def fail_exceeded(failed, total, max_fail_percentage):
    """True when ``failed`` of ``total`` hosts is more than the allowed percentage.

    0 (the default) stops at the first failure; 100 never stops.
    """
    if failed <= 0 or total <= 0:
        return False
    return failed * 100.0 / total > max_fail_percentage


# -- backups ------------------------------------------------------------------------------


def newest_backup(entries, now, max_age_hours):
    """Judge ``[[path, mtime], ...]`` (what ``file.find print=path,mtime`` returns).

    Returns ``{fresh, path, mtime, age_hours, count, reason}``; a backup
    exactly ``max_age_hours`` old is stale.
    """
    rows = []
    for entry in entries or []:
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], (int, float)):
            rows.append((float(entry[1]), str(entry[0])))
    if not rows:
        return {"fresh": False, "path": None, "mtime": None, "age_hours": None, "count": 0,
                "reason": "no backup file found"}
    mtime, path = max(rows)
    age = (now - mtime) / 3600.0
    fresh = age < max_age_hours
    reason = (f"newest backup {path} is {age:.1f} h old" + ("" if fresh else f" (older than {max_age_hours} h)"))
    return {"fresh": fresh, "path": path, "mtime": mtime, "age_hours": round(age, 2), "count": len(rows),
            "reason": reason}


# -- application logs ----------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                        "Dec"), 1)}
_ISO_RE = re.compile(
    r"^\s*\[?(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)
_CLF_RE = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-]\d{4})\]")
_SYSLOG_RE = re.compile(r"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\b")


def _offset(text):
    if text in (None, "Z"):
        return datetime.timezone.utc if text == "Z" else None
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return datetime.timezone(sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def parse_timestamp(line, tz="UTC", now=None):
    """Epoch seconds of the timestamp a log line starts with, or None.

    Understood: ISO-8601 / Python logging (``2024-06-01 02:03:04,567``,
    ``2024-06-01T02:03:04.5+02:00``, optionally in ``[...]``), common log
    format ``[01/Jun/2024:02:03:04 +0000]`` anywhere in the line, and syslog
    ``Jun  1 02:03:04`` (no year: the latest such moment not after ``now`` +
    1 day). Times without an offset are read in ``tz``.
    """
    zone = zoneinfo.ZoneInfo(tz)
    try:
        match = _ISO_RE.match(line)
        if match:
            y, mo, d, h, mi, s, frac, off = match.groups()
            micro = int((frac or "0")[:6].ljust(6, "0"))
            dt = datetime.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro,
                                   tzinfo=_offset(off) or zone)
            return dt.timestamp()
        match = _CLF_RE.search(line)
        if match and match.group(2) in _MONTHS:
            d, mon, y, h, mi, s, off = match.groups()
            dt = datetime.datetime(int(y), _MONTHS[mon], int(d), int(h), int(mi), int(s), tzinfo=_offset(off))
            return dt.timestamp()
        match = _SYSLOG_RE.match(line)
        if match and match.group(1) in _MONTHS:
            mon, d, h, mi, s = match.groups()
            ref = datetime.datetime.fromtimestamp(now if now is not None else datetime.datetime.now().timestamp(),
                                                  zone)
            for year in (ref.year, ref.year - 1):
                try:
                    dt = datetime.datetime(year, _MONTHS[mon], int(d), int(h), int(mi), int(s), tzinfo=zone)
                except ValueError:
                    continue  # Feb 29 in a non-leap year
                if dt.timestamp() <= ref.timestamp() + 86400:
                    return dt.timestamp()
    except ValueError:
        return None
    return None


def scan_log(text, now, window_s, mtime=None, levels=("ERROR", "CRITICAL", "FATAL"), tz="UTC", path=None):
    """ERROR/CRITICAL/FATAL lines of ``text`` written during the last ``window_s`` seconds.

    Each line's time is the timestamp it starts with; a line without one
    (a traceback, a continuation) belongs to the entry above it, and lines
    before the first timestamp to the first one. A log whose lines carry no
    timestamp at all falls back to the file's ``mtime``: when the file was
    written within the window every matching line counts (it cannot be told
    apart, so it is not ignored). Levels match as whole, upper-case words.

    Returns ``{path, matches: [{line, ts, source}], source, scanned}``.
    """
    since = now - window_s
    level_re = re.compile(r"\b(" + "|".join(re.escape(lv) for lv in levels) + r")\b") if levels else None
    lines = (text or "").splitlines()
    stamps = [parse_timestamp(line, tz, now) for line in lines]
    known = [s for s in stamps if s is not None]
    source = "line" if known else "mtime"
    current = known[0] if known else mtime
    matches = []
    for line, stamp in zip(lines, stamps):
        if stamp is not None:
            current = stamp
        if level_re is None or not level_re.search(line):
            continue
        if current is not None and since <= current <= now + 60:
            matches.append({"line": line[:500], "ts": current, "source": source})
    return {"path": path, "matches": matches, "source": source, "scanned": len(lines)}


# -- load balancers -----------------------------------------------------------------------


live = hx_rotation.live  # one meaning of "takes traffic now" for drains and the budget


def remaining_live(rows, removing):
    """Servers of ``rows`` (``{server: row}``) still live once ``removing`` are out."""
    return sorted(name for name, row in rows.items() if name not in set(removing) and live(row))


def foreign_weight(now, left):
    """Did someone else change the weight since the drain (``left``: the row the drain left)?"""
    return left is not None and int((now or {}).get("weight") or 0) != int(left.get("weight") or 0)


def restore_changes(before, now, left=None):
    """What puts a server back as it was: ``{"state": ..., "weight": ...}`` (only what differs).

    A weight changed by someone else since the drain (a deployment switched
    colors, an operator moved traffic) is theirs: it is not put back.
    """
    out = {}
    if (now or {}).get("admin") != before.get("admin"):
        out["state"] = before.get("admin") or "ready"
    if int((now or {}).get("weight") or 0) != int(before.get("weight") or 0) and not foreign_weight(now, left):
        out["weight"] = int(before.get("weight") or 0)
    return out


def host_servers(apps, host):
    """``[(app, lb, backend, server)]`` for every app whose hosts include ``host``.

    ``apps`` are validated app definitions (``hx_apps.validate``).
    """
    out = []
    for name in sorted(apps):
        cfg = apps[name]
        if host not in cfg["hosts"]:
            continue
        for lb in cfg["lbs"]:
            for color in ("blue", "green"):
                out.append((name, lb, cfg["backend"], cfg["server"].format(host=host, color=color)))
    return out


# -- what the run reports -----------------------------------------------------------------


def compliance(run):
    """Compliance fields computed from what happened in ``run`` (the run record)."""
    hosts = run.get("hosts") or {}
    targeted = run.get("targets") or sorted(hosts)
    windows = run.get("window") or {}
    backups = run.get("backup") or {}
    emergency = bool(run.get("emergency"))
    window_respected = (
        not emergency
        and bool(targeted)
        and all((windows.get(h) or {}).get("open") is True and not (windows.get(h) or {}).get("emergency")
                for h in targeted)
    )
    backup_verified = bool(targeted) and all((backups.get(h) or {}).get("fresh") is True for h in targeted)
    verification_passed = bool(targeted) and all(
        (hosts.get(h) or {}).get("outcome") == "ok" and (hosts.get(h) or {}).get("verification", {}).get("passed")
        is True
        for h in targeted
    )
    return {
        "emergency": emergency,
        "window_respected": window_respected,
        "backup_verified": backup_verified,
        "verification_passed": verification_passed,
    }


def csv_row(host, rec):
    """One line of ``maintenance-summary.csv`` for a host's record."""
    ended = rec.get("ended") or rec.get("started") or 0
    reboot = rec.get("reboot") or {}
    required = reboot.get("required")
    return {
        "date": datetime.datetime.fromtimestamp(ended, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hostname": host,
        "duration_minutes": f"{max(0.0, ended - (rec.get('started') or ended)) / 60.0:.2f}",
        "services_restarted": len(rec.get("services_started") or []),
        "patches_applied": len(((rec.get("patch") or {}).get("changes")) or {}),
        "verification_passed": "true" if (rec.get("verification") or {}).get("passed") is True else "false",
        "reboot_required": "unknown" if required is None else ("true" if required else "false"),
    }


def csv_lines(rows, header=False):
    """CSV text for ``rows`` (dicts keyed by :data:`CSV_HEADER`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_HEADER, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buf.getvalue()
