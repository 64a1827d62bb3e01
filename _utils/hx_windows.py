"""Maintenance windows, blackouts and the scheduled-highstate pillar: pure logic.

Semantics (decided once, tested on every edge, documented in
docs/reference/hx_maint.md):

* A window is ``[start, end)`` in local wall-clock time of its zone ``tz``:
  start inclusive, end exclusive.  ``end`` may be ``"24:00"`` (midnight at the
  end of the day); ``start == end`` is rejected (empty or 24 h: ambiguous).
* ``end <= start`` means the window crosses midnight; ``days`` names the day
  the window STARTS (``fri 22:00-02:00`` runs Friday night into Saturday).
* One occurrence is one contiguous interval of real time: it opens the first
  time the local clock shows ``start`` (or jumps past it) and closes the
  first time the clock shows ``end`` (or jumps past it).  So on the
  spring-forward day a 02:00-03:00 Europe/Berlin window never opens (its wall
  times do not exist) and 02:00-06:00 lasts 3 h; on the fall-back day
  01:30-02:30 closes at the first 02:30 (CEST) and does not reopen during the
  repeated hour, and 02:00-06:00 lasts 5 h.
* A blackout date (in the window's zone) vetoes every occurrence that touches
  it, entirely: a change freeze on the 24th also cancels 23rd 22:00-02:00.
* Times are parsed as base-10 ``HH:MM`` only (``"08:09"`` is 8:09, never octal).

Every configuration error is a ValueError naming the window and the key.
"""
import datetime
import re
import zoneinfo

UTC = datetime.timezone.utc
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
    "friday": "fri", "saturday": "sat", "sunday": "sun",
}
DEFAULT_WINDOW = {"name": "default", "start": "02:00", "end": "06:00", "tz": "UTC", "days": list(DAYS)}
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HHMM = re.compile(r"([0-9]{2}):([0-9]{2})")
_WINDOW_KEYS = {"name", "start", "end", "tz", "days"}
_BLACKOUT_KEYS = {"from", "to", "reason"}
# How far ahead next_open looks: a year of blackouts still finds the next window.
SEARCH_DAYS = 400
MINUTES_PER_DAY = 24 * 60


# ------------------------------------------------------------------ parsing


def parse_hhmm(value, where, allow_24=False):
    """``"HH:MM"`` -> minutes after midnight, base 10.  ``where`` names the key."""
    if isinstance(value, bool) or isinstance(value, int):
        # YAML 1.1 reads unquoted 22:00 as the base-60 integer 1320.
        raise ValueError(
            f"{where}: got the number {value!r}; YAML reads an unquoted HH:MM as a "
            f"base-60 number, quote it (e.g. '22:00')"
        )
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string 'HH:MM', got {value!r}")
    match = _HHMM.fullmatch(value.strip())
    if not match:
        raise ValueError(f"{where}: must be 'HH:MM' (two digits each, 24-hour clock), got {value!r}")
    hours, minutes = int(match.group(1), 10), int(match.group(2), 10)
    if allow_24 and hours == 24 and minutes == 0:
        return MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        limit = "00:00-24:00" if allow_24 else "00:00-23:59"
        raise ValueError(f"{where}: {value!r} is not a time of day ({limit})")
    return hours * 60 + minutes


def format_minutes(minutes):
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_date(value, where):
    """A YAML date or ``"YYYY-MM-DD"`` string -> datetime.date."""
    if isinstance(value, datetime.datetime):
        raise ValueError(f"{where}: must be a date YYYY-MM-DD, got a timestamp {value!r}")
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{where}: must be a date YYYY-MM-DD, got {value!r}")


def parse_at(value):
    """ISO-8601 timestamp (or datetime) -> aware UTC datetime.  None -> now.

    A timestamp without an offset is read as UTC.
    """
    if value is None or value == "":
        return datetime.datetime.now(UTC)
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"at: must be an ISO-8601 timestamp like 2024-06-01T03:00:00+02:00, got {value!r}"
            ) from None
    else:
        raise ValueError(f"at: must be an ISO-8601 timestamp string, got {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _days(value, where):
    if value is None:
        return list(DAYS)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: must be a non-empty list of days (mon..sun), got {value!r}")
    out = []
    for item in value:
        key = item.strip().lower() if isinstance(item, str) else item
        key = _FULL_DAYS.get(key, key)
        if key not in DAYS:
            raise ValueError(f"{where}: unknown day {item!r} (use {', '.join(DAYS)})")
        if key not in out:
            out.append(key)
    return sorted(out, key=DAYS.index)


def validate_window(raw, index):
    """One window entry -> normalised dict (``start``/``end`` in minutes, ``zone``)."""
    label = f"hx:maintenance:windows[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{label}: must be a mapping with name/start/end, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"{label}:name: must be a name of letters, digits, _ . - (got {name!r})")
    label = f"hx:maintenance:windows:{name}"
    unknown = sorted(set(raw) - _WINDOW_KEYS)
    if unknown:
        raise ValueError(f"{label}:{unknown[0]}: unknown key (known: {', '.join(sorted(_WINDOW_KEYS))})")
    for key in ("start", "end"):
        if key not in raw:
            raise ValueError(f"{label}:{key}: missing (format 'HH:MM')")
    start = parse_hhmm(raw["start"], f"{label}:start")
    end = parse_hhmm(raw["end"], f"{label}:end", allow_24=True)
    if start == end:
        raise ValueError(
            f"{label}:end: equals start ({raw['start']!r}); for a whole day use start '00:00' end '24:00'"
        )
    tz = raw.get("tz") or "UTC"
    if not isinstance(tz, str):
        raise ValueError(f"{label}:tz: must be a zoneinfo name like Europe/Berlin, got {tz!r}")
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{label}:tz: unknown time zone {tz!r} (zoneinfo name like Europe/Berlin)") from None
    return {
        "name": name,
        "start": start,
        "end": end,
        "tz": tz,
        "zone": zone,
        "days": _days(raw.get("days"), f"{label}:days"),
        "crosses_midnight": end < start,
    }


def validate_blackout(raw, index):
    label = f"hx:maintenance:blackouts[{index}]"
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - _BLACKOUT_KEYS)
        if unknown:
            raise ValueError(f"{label}:{unknown[0]}: unknown key (known: from, to, reason)")
        if "from" not in raw:
            raise ValueError(f"{label}:from: missing (a date YYYY-MM-DD)")
        first = parse_date(raw["from"], f"{label}:from")
        last = parse_date(raw.get("to", raw["from"]), f"{label}:to")
        if last < first:
            raise ValueError(f"{label}:to: {last} is before from {first}")
        reason = raw.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"{label}:reason: must be text, got {reason!r}")
    else:
        first = last = parse_date(raw, label)
        reason = None
    return {"from": first, "to": last, "reason": reason or "change freeze"}


def validate(windows=None, blackouts=None, enforce=True):
    """Pillar ``hx:maintenance`` parts -> validated config.

    ``windows`` None (or an empty list) means the default 02:00-06:00 UTC daily.
    """
    if windows is None or windows == []:
        windows, default = [dict(DEFAULT_WINDOW)], True
    else:
        default = False
    if not isinstance(windows, list):
        raise ValueError(f"hx:maintenance:windows: must be a list of windows, got {type(windows).__name__}")
    checked, names = [], set()
    for index, raw in enumerate(windows):
        window = validate_window(raw, index)
        if window["name"] in names:
            raise ValueError(f"hx:maintenance:windows:{window['name']}:name: used twice")
        names.add(window["name"])
        checked.append(window)
    if blackouts is None:
        blackouts = []
    if not isinstance(blackouts, list):
        raise ValueError(f"hx:maintenance:blackouts: must be a list of dates or ranges, got {blackouts!r}")
    if not isinstance(enforce, bool):
        raise ValueError(f"hx:maintenance:enforce: must be true or false, got {enforce!r}")
    return {
        "windows": checked,
        "blackouts": [validate_blackout(raw, i) for i, raw in enumerate(blackouts)],
        "enforce": enforce,
        "default": default,
    }


def describe(config):
    """Validated config -> plain data (what ``hx_maint.windows`` returns)."""
    return {
        "enforce": config["enforce"],
        "default": config["default"],
        "windows": [
            {
                "name": w["name"],
                "start": format_minutes(w["start"]),
                "end": format_minutes(w["end"]),
                "tz": w["tz"],
                "days": list(w["days"]),
                "crosses_midnight": w["end"] < w["start"],
            }
            for w in config["windows"]
        ],
        "blackouts": [
            {"from": b["from"].isoformat(), "to": b["to"].isoformat(), "reason": b["reason"]}
            for b in config["blackouts"]
        ],
    }


# ------------------------------------------------------------ time maths


def _wall(moment, zone):
    """Aware instant -> naive local wall-clock time in ``zone``."""
    return moment.astimezone(zone).replace(tzinfo=None)


def first_instant(local, zone):
    """The first instant at which the local clock of ``zone`` shows ``local`` or later.

    Ambiguous wall time (fall-back): the earlier instant.  Non-existent wall
    time (spring-forward gap): the instant of the jump.
    """
    early = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(early, late), max(early, late)
    if _wall(low, zone) == local:
        return low
    if _wall(high, zone) == local:
        return high
    # A gap: wall time is monotonic inside [low, high]; find the jump to the second.
    lo, hi = 0, int((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if _wall(low + datetime.timedelta(seconds=mid), zone) >= local:
            hi = mid
        else:
            lo = mid + 1
    return low + datetime.timedelta(seconds=lo)


def occurrence(window, day):
    """The occurrence of ``window`` that starts on local date ``day`` (or None).

    Returns ``(opens, closes)`` aware UTC instants; None when ``day`` is not
    one of the window's days or the occurrence is empty (DST gap).
    """
    if DAYS[day.weekday()] not in window["days"]:
        return None
    midnight = datetime.datetime.combine(day, datetime.time())
    start_local = midnight + datetime.timedelta(minutes=window["start"])
    end_day_offset = 0 if window["end"] > window["start"] else MINUTES_PER_DAY
    end_local = midnight + datetime.timedelta(minutes=window["end"] + end_day_offset)
    opens = first_instant(start_local, window["zone"])
    closes = first_instant(end_local, window["zone"])
    if closes <= opens:
        return None
    return opens, closes


def blackout_for(config, window, opens, closes):
    """The first blackout that touches the occurrence (local dates of its zone)."""
    first = _wall(opens, window["zone"]).date()
    last = _wall(closes - datetime.timedelta(microseconds=1), window["zone"]).date()
    for blackout in config["blackouts"]:
        if blackout["from"] <= last and blackout["to"] >= first:
            return blackout
    return None


def _blackout_text(blackout):
    span = blackout["from"].isoformat()
    if blackout["to"] != blackout["from"]:
        span += f"..{blackout['to'].isoformat()}"
    return f"blackout {span} ({blackout['reason']})"


def _occurrences_around(config, moment, back_days=2, ahead_days=0):
    """Every occurrence starting from ``back_days`` before to ``ahead_days`` after ``moment``."""
    found = []
    for window in config["windows"]:
        today = _wall(moment, window["zone"]).date()
        for offset in range(-back_days, ahead_days + 1):
            day = today + datetime.timedelta(days=offset)
            occ = occurrence(window, day)
            if occ is not None:
                found.append((window, occ[0], occ[1]))
    return found


def iso(moment, window=None):
    if moment is None:
        return None
    zone = window["zone"] if window else UTC
    return moment.astimezone(zone).isoformat()


def next_open(config, moment):
    """The first non-vetoed occurrence that opens strictly after ``moment``.

    Returns ``(window, opens, closes)`` or None within SEARCH_DAYS.
    """
    best = None
    for window in config["windows"]:
        today = _wall(moment, window["zone"]).date()
        for offset in range(-1, SEARCH_DAYS + 1):
            occ = occurrence(window, today + datetime.timedelta(days=offset))
            if occ is None or occ[0] <= moment:
                continue
            if best is not None and occ[0] >= best[1]:
                break
            if blackout_for(config, window, *occ) is None:
                best = (window, occ[0], occ[1])
                break
    return best


def _union_close(config, window, closes, active):
    """Extend ``closes`` while another open occurrence covers it (adjacent windows)."""
    for _ in range(len(active) + 1):
        extended = False
        for other, opens_o, closes_o in active:
            if opens_o <= closes < closes_o:
                closes, window, extended = closes_o, other, True
        if not extended:
            break
    return closes, window


def status(config, moment, emergency=False):
    """Is the maintenance gate open at ``moment`` (aware)?

    Returns ``{open, window, reason, emergency, enforce, at, opens_at,
    closes_at, next_open, next_window}``; times are ISO-8601 in the zone of the
    window they belong to.
    """
    moment = moment.astimezone(UTC)
    result = {
        "open": False, "window": None, "reason": "", "emergency": bool(emergency),
        "enforce": config["enforce"], "at": moment.isoformat(),
        "opens_at": None, "closes_at": None, "next_open": None, "next_window": None,
    }
    upcoming = next_open(config, moment)
    if upcoming:
        result["next_open"] = iso(upcoming[1], upcoming[0])
        result["next_window"] = upcoming[0]["name"]
    active, vetoed = [], []
    for window, opens, closes in _occurrences_around(config, moment, ahead_days=1):
        blackout = blackout_for(config, window, opens, closes)
        if blackout is None:
            active.append((window, opens, closes))
        elif opens <= moment < closes:
            vetoed.append((window, blackout))
    inside = [(w, o, c) for w, o, c in active if o <= moment < c]

    if emergency:
        result.update(open=True, reason="emergency bypass")
    elif not config["enforce"]:
        result.update(open=True, reason="maintenance windows not enforced (hx:maintenance:enforce is false)")
    elif inside:
        window, opens, closes = inside[0]
        closes, last = _union_close(config, window, closes, active)
        result.update(
            open=True, window=window["name"], opens_at=iso(opens, window), closes_at=iso(closes, last),
            reason=f"inside maintenance window {window['name']} "
            f"({format_minutes(window['start'])}-{format_minutes(window['end'])} {window['tz']})",
        )
    elif vetoed:
        window, blackout = vetoed[0]
        result["reason"] = f"window {window['name']} is vetoed by {_blackout_text(blackout)}"
    else:
        names = ", ".join(w["name"] for w in config["windows"])
        result["reason"] = f"outside maintenance windows ({names})"
    if not result["open"] or emergency or not config["enforce"]:
        if upcoming:
            result["reason"] += f"; next opens {result['next_open']} ({upcoming[0]['name']})"
        elif not result["open"]:
            result["reason"] += f"; no window opens within {SEARCH_DAYS} days"
    return result


# ---------------------------------------------------------- the schedule

SCHEDULE_JOB = "hx_highstate"
SCHEDULE_FUNCTION = "hx_maint.highstate"
DEFAULT_SCHEDULE = {"cron": "0 3 * * *", "splay": 600, "maxrunning": 1, "enabled": True}
_TIMING_KEYS = ("cron", "when", "range", "once", "seconds", "minutes", "hours", "days")
_SCHEDULE_KEYS = set(_TIMING_KEYS) | {"splay", "maxrunning", "enabled", "test", "run_on_start", "once_fmt"}


def _positive_int(value, where, zero_ok=False):
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero_ok else 1):
        floor = "a non-negative" if zero_ok else "a positive"
        raise ValueError(f"{where}: must be {floor} integer, got {value!r}")
    return value


def schedule_job(raw):
    """Pillar ``hx:maintenance:schedule`` -> keyword arguments for ``schedule.present``.

    The job always calls ``hx_maint.highstate`` (which checks the window
    first); the pillar only chooses when it is tried.
    """
    label = "hx:maintenance:schedule"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{label}: must be a mapping, got {raw!r}")
    unknown = sorted(set(raw) - _SCHEDULE_KEYS)
    if unknown:
        raise ValueError(f"{label}:{unknown[0]}: unknown key (known: {', '.join(sorted(_SCHEDULE_KEYS))})")
    timing = [k for k in _TIMING_KEYS if raw.get(k) is not None]
    merged = dict(DEFAULT_SCHEDULE)
    if timing:
        merged.pop("cron")
    merged.update({k: v for k, v in raw.items() if v is not None})
    interval = [k for k in ("seconds", "minutes", "hours", "days") if k in merged]
    exclusive = [k for k in ("cron", "when", "once") if k in merged]
    if len(exclusive) > 1 or (exclusive and interval):
        raise ValueError(f"{label}: {', '.join(exclusive + interval)} exclude each other: pick one way to time the job")
    if "range" in merged and not interval:
        raise ValueError(f"{label}:range: needs an interval (seconds/minutes/hours) to repeat inside the range")
    if not exclusive and not interval:
        raise ValueError(f"{label}: needs one of cron, when, once, seconds, minutes, hours")
    job = {"function": SCHEDULE_FUNCTION}
    for key in interval:
        job[key] = _positive_int(merged[key], f"{label}:{key}")
    if "cron" in merged:
        if not isinstance(merged["cron"], str) or len(merged["cron"].split()) not in (5, 6):
            raise ValueError(f"{label}:cron: must be a 5-field cron string like '0 3 * * *', got {merged['cron']!r}")
        job["cron"] = merged["cron"]
    if "when" in merged:
        when = merged["when"]
        if isinstance(when, str):
            when = [when]
        if not isinstance(when, list) or not when or not all(isinstance(w, str) and w for w in when):
            raise ValueError(f"{label}:when: must be a time string or a list of them, got {merged['when']!r}")
        job["when"] = when
    if "once" in merged:
        if not isinstance(merged["once"], str) or not merged["once"]:
            raise ValueError(f"{label}:once: must be a timestamp string, got {merged['once']!r}")
        job["once"] = merged["once"]
        if "once_fmt" in merged:
            job["once_fmt"] = merged["once_fmt"]
    if "range" in merged:
        rng = merged["range"]
        if not isinstance(rng, dict) or set(rng) - {"start", "end", "invert"} or not {"start", "end"} <= set(rng):
            raise ValueError(f"{label}:range: must be {{start: '2:00am', end: '6:00am'}}, got {rng!r}")
        job["range"] = dict(rng)
    job["splay"] = _positive_int(merged["splay"], f"{label}:splay", zero_ok=True)
    if job["splay"] == 0:
        del job["splay"]
    job["maxrunning"] = _positive_int(merged["maxrunning"], f"{label}:maxrunning")
    for key in ("enabled", "test", "run_on_start"):
        if key in merged and not isinstance(merged[key], bool):
            raise ValueError(f"{label}:{key}: must be true or false, got {merged[key]!r}")
    job["enabled"] = merged["enabled"]
    if "run_on_start" in merged:
        job["run_on_start"] = merged["run_on_start"]
    if merged.get("test"):
        job["job_kwargs"] = {"test": True}
    job["return_job"] = True
    return job
