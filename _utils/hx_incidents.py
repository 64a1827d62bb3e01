"""Incidents: classification, state machine, dedupe, timeline, escalation timing, report.

Pure functions over plain dicts; ``now`` always comes from the caller. The
:class:`Store` at the end keeps records in whatever ``salt.cache`` object it is
given (localfs or redis) and serialises read-modify-write with a lock the
caller supplies, so it needs no Salt daemon either.

Record (JSON-safe)::

    {"id": "INC-1732900000-hx-m1", "minion": "hx-m1", "check": "demo_http",
     "resource": "demo", "type": "service_down", "severity": "critical",
     "priority": "P1", "escalate": True, "status": "open", "level": 0,
     "summary": "...", "opened_at": ts, "first_bad_at": ts, "last_seen": ts,
     "repeats": 0, "acknowledged_by": None, "resolved_at": None,
     "resolution": None, "next_escalation_at": None, "notified": [...],
     "timeline": [{"t": ts, "kind": "detected", "text": "...", ...}]}
"""
import copy
import datetime
import hashlib
import logging
import re

import hx_inctypes
import hx_notify
import hx_numbers
import hx_secrets
import hx_typed

log = logging.getLogger(__name__)

SEVERITIES = hx_inctypes.SEVERITIES
PRIORITY = hx_inctypes.PRIORITY
STATUSES = ("open", "remediating", "escalated", "acknowledged", "resolved")
# Allowed moves. escalated -> escalated is a level bump (escalate()).
TRANSITIONS = {
    "open": {"remediating", "escalated", "acknowledged", "resolved"},
    "remediating": {"open", "escalated", "acknowledged", "resolved"},
    # escalated -> remediating: a retry once an unreachable minion answers again
    "escalated": {"escalated", "remediating", "acknowledged", "resolved"},
    "acknowledged": {"remediating", "resolved"},
    "resolved": set(),
}
ACTIVE = ("open", "remediating", "escalated", "acknowledged")
# Types and their classification defaults: the registry (_utils/hx_inctypes.py)
# that remediation, maintenance and deployment extend.
TYPES = hx_inctypes.names()
DEFAULT_RULES = hx_inctypes.default_rules()
RULE_KEYS = {"type", "status", "severity", "escalate"}
DEFAULT_ESCALATION_TIMEOUT = 300.0
TIMELINE_REPEAT_CAP = 10  # repeats beyond this are only counted
ID_RE = re.compile(r"INC-\d+-[A-Za-z0-9_.@-]+")


# -- classification ---------------------------------------------------------


def validate_rules(rules, what="hx:incidents:classification"):
    """A list of rules; ValueError names the bad index and key (``what`` is where they came from)."""
    if not isinstance(rules, list):
        raise ValueError(f"{what} must be a list of rules")
    out = []
    for i, rule in enumerate(rules):
        where = f"{what}[{i}]"
        if not isinstance(rule, dict):
            raise ValueError(f"{where} must be a mapping")
        unknown = sorted(set(rule) - RULE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(RULE_KEYS))})")
        if rule.get("type") not in TYPES + ("*",):
            raise ValueError(f"{where}: type must be one of {', '.join(TYPES)} or '*', got {rule.get('type')!r}")
        if "status" in rule and not isinstance(rule["status"], str):
            raise ValueError(f"{where}: status must be a check status such as critical or warning")
        if rule.get("severity") not in SEVERITIES:
            raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {rule.get('severity')!r}")
        if "escalate" in rule and not isinstance(rule["escalate"], bool):
            raise ValueError(f"{where}: escalate must be true or false")
        out.append(dict(rule))
    return out


def classify(incident_type, status, rules=None):
    """``{"type", "severity", "priority", "escalate"}``: the first matching rule, else the type's registry default.

    Operator rules extend the registry: a rule about one type leaves the
    others at their defaults (only a ``*`` rule overrides them all).
    """
    for rule in rules or ():
        if rule["type"] not in (incident_type, "*"):
            continue
        if rule.get("status") not in (None, status):
            continue
        return {
            "type": incident_type,
            "severity": rule["severity"],
            "priority": PRIORITY[rule["severity"]],
            "escalate": bool(rule.get("escalate", False)),
        }
    return dict(hx_inctypes.default(incident_type, status), type=incident_type)


def sort_by_priority(incidents):
    """P1 first, then the oldest."""
    return sorted(incidents, key=lambda inc: (inc.get("priority", "P9"), inc.get("opened_at", 0)))


# -- identity and dedupe ----------------------------------------------------


def dedupe_key(minion, check, resource=None):
    """One active incident per (minion, check, resource)."""
    return f"{minion}|{check}|{resource or ''}"


def dedupe_slot(key):
    """A cache-key-safe name for a dedupe key (check names hold ':' and '/')."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def make_id(now, host, taken=()):
    """``INC-<epoch>-<HOST>``; a suffix keeps two incidents of one second apart."""
    host = re.sub(r"[^A-Za-z0-9_.@-]", "_", str(host)) or "unknown"
    base = f"INC-{int(now)}-{host}"
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# -- records and the state machine ------------------------------------------


def add_timeline(inc, now, kind, text, **details):
    entry = {"t": float(now), "kind": kind, "text": text}
    entry.update({k: v for k, v in details.items() if v is not None})
    inc.setdefault("timeline", []).append(entry)
    return entry


def new_incident(inc_id, minion, check, resource, cls, now, summary, first_bad_at=None, dedupe=None, **facts):
    """A fresh ``open`` record. ``dedupe`` overrides the (minion, check, resource) key
    when the caller deduplicated on a key it computed before knowing the resource."""
    inc = {
        "id": inc_id,
        "minion": minion,
        "check": check,
        "resource": resource,
        "dedupe": dedupe or dedupe_key(minion, check, resource),
        "type": cls["type"],
        "severity": cls["severity"],
        "priority": cls["priority"],
        "escalate": cls["escalate"],
        "status": "open",
        "level": 0,
        "summary": summary,
        "opened_at": float(now),
        "first_bad_at": float(first_bad_at if first_bad_at and first_bad_at <= now else now),
        "last_seen": float(now),
        "repeats": 0,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "resolved_at": None,
        "resolution": None,
        "next_escalation_at": None,
        "notified": [],
        "facts": facts,
        "timeline": [],
    }
    add_timeline(inc, now, "detected", summary, status=facts.get("status"), value=facts.get("value"))
    add_timeline(
        inc, now, "classified", f"{cls['type']} -> {cls['severity']}/{cls['priority']}"
        + (", escalates" if cls["escalate"] else ", no escalation"),
    )
    return inc


def transition(inc, new_status, now, by="hx", note=None):
    """Move ``inc`` to ``new_status`` (a copy); ValueError for an illegal move."""
    old = inc["status"]
    if new_status not in STATUSES:
        raise ValueError(f"unknown incident status {new_status!r}")
    if new_status not in TRANSITIONS[old]:
        raise ValueError(f"incident {inc['id']} is {old}; cannot move to {new_status}")
    out = copy.deepcopy(inc)
    out["status"] = new_status
    if new_status == "acknowledged":
        out["acknowledged_by"] = by
        out["acknowledged_at"] = float(now)
        out["next_escalation_at"] = None
    if new_status == "resolved":
        out["resolved_at"] = float(now)
        out["resolution"] = note
        out["next_escalation_at"] = None
    add_timeline(out, now, "status", f"{old} -> {new_status}" + (f": {note}" if note else ""), by=by)
    return out


def note_repeat(inc, now, status=None):
    """Count a duplicate event; only the first few get a timeline line."""
    out = copy.deepcopy(inc)
    out["repeats"] += 1
    out["last_seen"] = max(out["last_seen"], float(now))
    if out["repeats"] <= TIMELINE_REPEAT_CAP:
        add_timeline(out, now, "repeat", f"same condition reported again (#{out['repeats']})", status=status)
    return out


def is_active(inc):
    return inc.get("status") in ACTIVE


# -- escalation -------------------------------------------------------------


def parse_levels(levels, what="hx_incident:levels"):
    """``[{name, notify: [channel...], contacts: [...]}]`` (at least one)."""
    if not isinstance(levels, list) or not levels:
        raise ValueError(f"{what} must be a non-empty list")
    out = []
    for i, level in enumerate(levels):
        if not isinstance(level, dict) or not isinstance(level.get("name"), str):
            raise ValueError(f"{what}[{i}] must be a mapping with a name")
        unknown = sorted(set(level) - {"name", "notify", "contacts"})
        if unknown:
            raise ValueError(f"{what}[{i}]: unknown key {unknown[0]!r}")
        notify = level.get("notify", [])
        contacts = level.get("contacts", [])
        if not isinstance(notify, list) or not isinstance(contacts, list):
            raise ValueError(f"{what}[{i}]: notify and contacts must be lists")
        out.append({"name": level["name"], "notify": list(notify), "contacts": list(contacts)})
    return out


def parse_timeout(value, what="escalation_timeout"):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{what} must be a number of seconds > 0, got {value!r}")
    return float(value)


def escalate(inc, now, levels, timeout, reason):
    """Raise the level by one (L0 -> L1 ...); the next step is due ``timeout`` s later.

    Returns the new record; ValueError when already at the top level.
    """
    if inc["level"] >= len(levels):
        raise ValueError(f"incident {inc['id']} is already at the top level {levels[-1]['name']}")
    out = transition(inc, "escalated", now, note=None) if inc["status"] != "escalated" else copy.deepcopy(inc)
    out["level"] = inc["level"] + 1
    level = levels[out["level"] - 1]
    out["next_escalation_at"] = float(now) + timeout if out["level"] < len(levels) else None
    add_timeline(out, now, "escalation", f"escalated to {level['name']}: {reason}",
                 level=level["name"], contacts=level["contacts"] or None)
    return out


def escalation_due(inc, now):
    """True when an escalated, unacknowledged incident waited past its timeout.

    The edge is inclusive: exactly at ``next_escalation_at`` it is due.
    """
    return (
        inc.get("status") == "escalated"
        and inc.get("next_escalation_at") is not None
        and now >= inc["next_escalation_at"]
    )


# -- queries ----------------------------------------------------------------


LIST_STATUSES = STATUSES + ("active",)
LIST_SEVERITIES = SEVERITIES + tuple(PRIORITY.values())


def _filter_names(key, value, known):
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else None
    if not items or any(not isinstance(i, str) or i not in known for i in items):
        raise ValueError(f"{key}: must be one or more (comma-separated) of {', '.join(known)}, "
                         f"got {hx_numbers.shown(value)}")
    return set(items)


def filters(status=None, severity=None, minion=None):
    """``hx_incident.list``'s filters as ``(statuses, severities, minion)``; ValueError naming the argument.

    A filter that matches nothing by construction (``status=opne``) is a typo, refused rather than
    answered with "no incidents".
    """
    if minion is not None:
        minion = hx_typed.minion_id("minion", minion)
    return _filter_names("status", status, LIST_STATUSES), _filter_names("severity", severity, LIST_SEVERITIES), minion


def matches(inc, status=None, severity=None, minion=None, since=None):
    def _as_set(value):
        if value is None:
            return None
        return set(value.split(",")) if isinstance(value, str) else set(value)

    statuses, severities = _as_set(status), _as_set(severity)
    if statuses is not None and "active" in statuses:
        statuses |= set(ACTIVE)
    if statuses is not None and inc.get("status") not in statuses:
        return False
    if severities is not None and not ({inc.get("severity"), inc.get("priority")} & severities):
        return False
    if minion is not None and inc.get("minion") != minion:
        return False
    if since is not None and inc.get("opened_at", 0) < float(since):
        return False
    return True


def counts(incidents):
    """Totals like the Ansible ``incident_database.json``, counted from the records."""
    out = {"total": len(incidents), "active": 0, "resolved": 0, "escalated": 0, "auto_resolved": 0}
    for inc in incidents:
        if is_active(inc):
            out["active"] += 1
        if inc.get("status") == "resolved":
            out["resolved"] += 1
            if inc.get("acknowledged_by") is None and inc.get("level", 0) == 0:
                out["auto_resolved"] += 1
        if inc.get("level", 0) > 0:
            out["escalated"] += 1
    return out


# -- report -----------------------------------------------------------------


def _iso(ts):
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _dur(seconds):
    if seconds is None:
        return "not recovered"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def durations(inc):
    """Time to detect (first bad sample -> incident) and to recover (-> resolved)."""
    ttd = inc["opened_at"] - inc["first_bad_at"]
    ttr = inc["resolved_at"] - inc["first_bad_at"] if inc.get("resolved_at") else None
    return {"time_to_detect_s": round(ttd, 3), "time_to_recover_s": None if ttr is None else round(ttr, 3)}


def render_report(inc, now):
    """Blameless post-incident report (Markdown) from the record alone."""
    d = durations(inc)
    actions = [e for e in inc["timeline"] if e["kind"] in ("action", "verification", "suppressed", "stale")]
    notes = [e for e in inc["timeline"] if e["kind"] == "notification"]
    auto = inc.get("status") == "resolved" and inc.get("level", 0) == 0 and not inc.get("acknowledged_by")
    lines = [
        f"# Post-incident report: {inc['id']}",
        "",
        f"*Generated {_iso(now)}. Blameless: this report describes what the systems did and what",
        "people knew at the time, not who is at fault.*",
        "",
        "## Summary",
        "",
        f"- **What:** {inc['summary']}",
        f"- **Where:** minion `{inc['minion']}`, check `{inc['check']}`"
        + (f", resource `{inc['resource']}`" if inc.get("resource") else ""),
        f"- **Type / severity:** {inc['type']}, {inc['severity']} ({inc['priority']})",
        f"- **Status:** {inc['status']}" + (f" ({inc['resolution']})" if inc.get("resolution") else ""),
        f"- **Highest escalation level:** {('L' + str(inc['level'])) if inc.get('level') else 'none'}",
        f"- **Acknowledged by:** {inc.get('acknowledged_by') or '-'}",
        f"- **Resolved:** {'automatically' if auto else ('by ' + str(inc.get('resolved_by') or 'a person') if inc.get('resolved_at') else 'no')}",
        "",
        "## Impact",
        "",
        f"- Affected: `{inc['minion']}` / `{inc.get('resource') or inc['check']}` for "
        f"{_dur(d['time_to_recover_s']) if d['time_to_recover_s'] is not None else 'an unresolved period'}.",
        f"- The condition was reported {inc['repeats'] + 1} time(s) ({inc['repeats']} repeat(s) deduplicated).",
        "- Customer impact: _to be filled in by the incident owner._",
        "",
        "## Detection",
        "",
        f"- First bad sample: {_iso(inc['first_bad_at'])}",
        f"- Incident opened: {_iso(inc['opened_at'])}",
        f"- **Time to detect:** {_dur(d['time_to_detect_s'])}",
        f"- **Time to recover:** {_dur(d['time_to_recover_s'])}",
        "",
        "## Timeline (UTC)",
        "",
        "| time | kind | what |",
        "|---|---|---|",
    ]
    for e in inc["timeline"]:
        lines.append(f"| {_iso(e['t'])} | {e['kind']} | {str(e['text']).replace('|', '/')} |")
    lines += ["", "## Remediation actions and outcome", ""]
    if actions:
        lines += [f"- {_iso(e['t'])} {e['kind']}: {e['text']}" for e in actions]
    else:
        lines.append("- No automatic action was taken.")
    lines += ["", "## Notifications", ""]
    lines += [f"- {_iso(e['t'])} {e['text']}" for e in notes] or ["- None sent."]
    lines += [
        "",
        "## Root cause",
        "",
        "_Left for a person: what made the condition happen, and why it was not prevented._",
        "",
        "## Action items",
        "",
        "- [ ] _Owner, action, due date (left for a person)._",
        "",
    ]
    return "\n".join(lines)


# -- storage ------------------------------------------------------------------

BANK = "hx/incidents"
OPEN_BANK = "hx/incidents/open"


class Store:
    """Incident records in a ``salt.cache`` object.

    ``lock(name)`` is a context manager serialising read-modify-write of one
    name (the caller provides ``hx_audit.lock``: an ``flock`` on localfs, a
    mutex in redis with ``cache: redis``; the cache drivers have no
    compare-and-swap). The dedupe index maps a
    :func:`dedupe_slot` to the active incident's id.
    """

    def __init__(self, cache, lock):
        self.cache = cache
        self.lock = lock

    def get(self, inc_id):
        return self.cache.fetch(BANK, inc_id) or None

    def put(self, inc):
        self.cache.store(BANK, inc["id"], inc)
        slot = dedupe_slot(inc["dedupe"])
        if is_active(inc):
            self.cache.store(OPEN_BANK, slot, {"id": inc["id"]})
        else:
            current = self.cache.fetch(OPEN_BANK, slot) or {}
            if current.get("id") == inc["id"]:
                self.cache.flush(OPEN_BANK, slot)

    def active_for(self, key):
        ref = self.cache.fetch(OPEN_BANK, dedupe_slot(key)) or {}
        inc = self.get(ref["id"]) if ref.get("id") else None
        return inc if inc and is_active(inc) else None

    def ids(self):
        # list_() of a bank also returns its sub-banks ("open")
        return sorted(k for k in (self.cache.list(BANK) or []) if ID_RE.fullmatch(k))

    def all(self):
        out = []
        for inc_id in self.ids():
            inc = self.get(inc_id)
            if inc:
                out.append(inc)
        return out


# -- configuration --------------------------------------------------------------

CONFIG_DEFAULTS = {
    "classification": [],  # operator rules, tried before the registry's defaults
    "escalation_timeout": DEFAULT_ESCALATION_TIMEOUT,
    "levels": [
        {"name": "L1", "notify": [], "contacts": ["team lead"]},
        {"name": "L2", "notify": [], "contacts": ["engineering manager"]},
        {"name": "L3", "notify": [], "contacts": ["executives"]},
    ],
    "on_open": None,  # channels told when an incident opens; None = every channel
    "open_min_severity": "high",
    "channels": {},
    "delivery": {},
    "reports_dir": None,
}
# A minion's pillar may tune how its incidents are judged, never where
# notifications go (webhook URLs and keys are secrets minions must not read).
PILLAR_KEYS = ("classification", "escalation_timeout")


def _rules_or_refused(rules, what, fallback, instead, errors):
    """Validated ``rules``; a bad list is refused whole (``errors`` gets why, naming ``what``) and
    ``fallback`` classifies instead. One typo in a rule must not stop every incident."""
    try:
        return validate_rules(rules, what)
    except ValueError as exc:
        errors.append(f"{exc}; {what} refused, {instead} classify until it is fixed")
        return fallback


def config(*layers, pillar=None):
    """Effective incident settings; ValueError names the bad key.

    A bad ``classification`` is the exception: it is refused (not applied) and
    reported in ``errors`` (each naming its key) while the rest of the settings
    work, because the classification is shared by every incident and the
    registry's defaults page people for what matters.
    """
    merged = copy.deepcopy(CONFIG_DEFAULTS)
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, dict):
            raise ValueError("hx_incident must be a mapping")
        merged.update(copy.deepcopy(layer))
    if pillar is not None and not isinstance(pillar, dict):
        raise ValueError("hx:incidents must be a mapping")
    pillar = copy.deepcopy(pillar or {})
    bad = sorted(set(pillar) - set(PILLAR_KEYS))
    if bad:
        raise ValueError(f"hx:incidents:{bad[0]}: not allowed in pillar (allowed: {', '.join(PILLAR_KEYS)}; "
                         "channels and levels belong in the master's hx-ops config)")
    unknown = sorted(set(merged) - set(CONFIG_DEFAULTS))
    if unknown:
        raise ValueError(f"hx_incident:{unknown[0]}: unknown key (known: {', '.join(sorted(CONFIG_DEFAULTS))})")
    errors = []
    merged["classification"] = _rules_or_refused(merged["classification"], "hx_incident:classification", [],
                                                 "the registry defaults", errors)
    if "classification" in pillar:
        merged["classification"] = _rules_or_refused(pillar["classification"], "hx:incidents:classification",
                                                     merged["classification"],
                                                     "the master's rules and the registry defaults", errors)
    merged["escalation_timeout"] = parse_timeout(merged["escalation_timeout"], "hx_incident:escalation_timeout")
    if "escalation_timeout" in pillar:
        merged["escalation_timeout"] = parse_timeout(pillar["escalation_timeout"], "hx:incidents:escalation_timeout")
    merged["levels"] = parse_levels(merged["levels"])
    merged["channels"] = hx_notify.parse_channels(merged["channels"])
    merged["delivery"] = hx_notify.parse_delivery(merged["delivery"])
    for i, level in enumerate(merged["levels"]):
        for ch in level["notify"]:
            if ch not in merged["channels"]:
                raise ValueError(f"hx_incident:levels[{i}] ({level['name']}): unknown channel {ch!r}")
    if merged["on_open"] is None:
        merged["on_open"] = sorted(merged["channels"])
    for ch in merged["on_open"]:
        if ch not in merged["channels"]:
            raise ValueError(f"hx_incident:on_open: unknown channel {ch!r}")
    if merged["open_min_severity"] not in SEVERITIES:
        raise ValueError(f"hx_incident:open_min_severity must be one of {', '.join(SEVERITIES)}")
    merged["errors"] = errors
    return merged


def severity_at_least(severity, minimum):
    return SEVERITIES.index(severity) <= SEVERITIES.index(minimum)


# -- the incident desk: store + notifications + events, effects injected ----------


class Desk:
    """Every change to an incident goes through here.

    ``store``: :class:`Store`; ``cfg``: :func:`config`; ``post``: HTTP POST
    callable; ``sleep``; ``fire(tag, data)``: master event; ``audit(what,
    target, result, **details)``; ``clock``: epoch seconds.
    """

    def __init__(self, store, cfg, post, sleep, fire, audit, clock):
        self.store, self.cfg = store, cfg
        self.post, self.sleep, self.fire, self.clock = post, sleep, fire, clock
        self._audit = audit
        # What a record, an event or an audit line may never hold (hx_secrets).
        self.secrets = hx_secrets.collect(cfg["channels"])

    def audit(self, what, target, result, **details):
        self._audit(what, target, result, **self.secrets.scrub_obj(details))

    def locked(self, key):
        return self.store.lock("incident:" + dedupe_slot(key))

    def update(self, inc_id, mutate):
        """Apply ``mutate(inc) -> inc`` under the incident's lock; returns the new record."""
        first = self.store.get(inc_id)
        if not first:
            raise KeyError(f"no incident {inc_id}")
        with self.locked(first["dedupe"]):
            inc = self.store.get(inc_id)
            new = self.secrets.scrub_obj(mutate(inc))
            self.store.put(new)
        if new["status"] != inc["status"] or new.get("level") != inc.get("level"):
            self._fire(new)
        return new

    def _fire(self, inc):
        try:
            self.fire(f"hx/incident/{inc['id']}/{inc['status']}", self.secrets.scrub_obj({
                "id": inc["id"], "minion": inc["minion"], "check": inc["check"], "status": inc["status"],
                "severity": inc["severity"], "priority": inc["priority"], "level": inc["level"],
                "repeats": inc["repeats"], "summary": inc["summary"],
            }))
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("hx incidents: cannot fire event for %s: %s", inc["id"], self.secrets.error(exc))

    def create(self, inc, config_errors=()):
        """Store a new record (caller holds the dedupe lock); fires its event.

        A refused part of the configuration (``cfg["errors"]``, plus the
        caller's ``config_errors``) is written on the timeline: whoever reads
        the incident learns why it was classified by the defaults.
        """
        for error in list(self.cfg.get("errors") or ()) + list(config_errors or ()):
            add_timeline(inc, inc["opened_at"], "config", error)
        inc = self.secrets.scrub_obj(inc)
        self.store.put(inc)
        self._fire(inc)
        self.audit("incident.open", inc["minion"], "open", incident=inc["id"], check=inc["check"],
                   severity=inc["severity"])
        return inc

    def note(self, inc_id, kind, text, **details):
        now = self.clock()

        def mutate(inc):
            add_timeline(inc, now, kind, text, **details)
            return inc

        return self.update(inc_id, mutate)

    def move(self, inc_id, status, by="hx", note=None):
        now = self.clock()
        return self.update(inc_id, lambda inc: transition(inc, status, now, by=by, note=note))

    # notifications --------------------------------------------------------

    def channels_for(self, inc, event):
        if event == "open":
            if not severity_at_least(inc["severity"], self.cfg["open_min_severity"]):
                return []
            return list(self.cfg["on_open"])
        if event == "escalated":
            return list(self.cfg["levels"][inc["level"] - 1]["notify"])
        # acknowledge/resolve: whoever was told about it
        return [c for c in inc.get("notified", []) if c in self.cfg["channels"]]

    def notify(self, inc_id, event):
        """Deliver ``event`` to its channels; record each delivery (or failure) on the timeline."""
        inc = self.store.get(inc_id)
        names = sorted(set(self.channels_for(inc, event)))
        results = {}
        for name in names:
            built = hx_notify.build(self.cfg["channels"][name], inc, event, self.clock())
            if built is None:
                continue
            url, body = built
            res = hx_notify.deliver(self.post, url, body, self.cfg["delivery"], self.sleep, self.secrets)
            results[name] = res
            self.audit("notify", inc["minion"], "delivered" if res["ok"] else "failed", incident=inc_id,
                       channel=name, event=event, attempts=res["attempts"], status=res["status"], error=res["error"])
        if not results:
            return {}
        now = self.clock()

        def mutate(rec):
            for name, res in sorted(results.items()):
                if res["ok"]:
                    text = f"{event} sent to {name} (HTTP {res['status']}, {res['attempts']} attempt(s))"
                    if name not in rec["notified"]:
                        rec["notified"].append(name)
                else:
                    text = f"{event} to {name} FAILED after {res['attempts']} attempt(s): {res['error']}"
                add_timeline(rec, now, "notification", text, channel=name, event=event, ok=res["ok"])
            return rec

        self.update(inc_id, mutate)
        return results

    # escalation ------------------------------------------------------------

    def escalate(self, inc_id, reason):
        now = self.clock()
        levels = self.cfg["levels"]

        def mutate(inc):
            timeout = inc.get("escalation_timeout") or self.cfg["escalation_timeout"]
            return escalate(inc, now, levels, timeout, reason)

        inc = self.update(inc_id, mutate)
        self.audit("incident.escalate", inc["minion"], levels[inc["level"] - 1]["name"], incident=inc_id, reason=reason)
        self.notify(inc_id, "escalated")
        return self.store.get(inc_id)

    def escalate_due(self):
        """Escalate every escalated, unacknowledged incident past its timeout by one level."""
        now = self.clock()
        done = []
        for inc in self.store.all():
            if not escalation_due(inc, now) or inc["level"] >= len(self.cfg["levels"]):
                continue
            waited = now - (inc["next_escalation_at"] - (inc.get("escalation_timeout") or self.cfg["escalation_timeout"]))
            try:
                new = self.escalate(inc["id"], f"not acknowledged for {waited:.0f} s")
            except ValueError:
                continue  # acknowledged or resolved meanwhile
            done.append({"id": new["id"], "level": self.cfg["levels"][new["level"] - 1]["name"]})
        return done

    def acknowledge(self, inc_id, by, note=None):
        inc = self.move(inc_id, "acknowledged", by=by, note=note)
        self.audit("incident.ack", inc["minion"], "acknowledged", incident=inc_id, by=by)
        self.notify(inc_id, "acknowledged")
        return self.store.get(inc_id)

    def resolve_planned(self, minions, service, by, note):
        """Resolve the active incidents about ``service`` on ``minions`` that planned work explains; their ids."""
        return self._resolve_each(planned(self.store.all(), set(minions), service), by, note)

    def resolve_held(self, minions, by, note):
        """Resolve the active incidents on ``minions`` that planned work held back, once it has ended there; their ids."""
        return self._resolve_each(held_back(self.store.all(), set(minions)), by, note)

    def _resolve_each(self, incidents, by, note):
        done = []
        for inc in incidents:
            try:
                self.resolve(inc["id"], by, note)
                done.append(inc["id"])
            except ValueError:
                pass  # resolved meanwhile
        return done

    def resolve(self, inc_id, by, note=None):
        now = self.clock()

        def mutate(inc):
            out = transition(inc, "resolved", now, by=by, note=note)
            out["resolved_by"] = by
            return out

        inc = self.update(inc_id, mutate)
        self.audit("incident.resolve", inc["minion"], "resolved", incident=inc_id, by=by, note=note)
        self.notify(inc_id, "resolved")
        return self.store.get(inc_id)


def planned(incidents, minions, service):
    """Active incidents about ``service`` on ``minions``: what planned work that stops it has caused."""
    return [inc for inc in incidents
            if inc.get("status") in ACTIVE and inc.get("minion") in minions
            and (inc.get("facts") or {}).get("service") == service]


def held_back(incidents, minions):
    """Active incidents on ``minions`` that remediation held back for planned work (``held_since``)."""
    return [inc for inc in incidents
            if inc.get("status") in ACTIVE and inc.get("minion") in minions and inc.get("held_since")]


_REPORTED = {}  # error text -> when it was last logged and audited by this process
REPORT_EVERY = 300.0


def report_config_errors(opts, errors, now):
    """Log (error level) and audit each refused configuration key, again every REPORT_EVERY s while it stays."""
    import hx_audit  # pylint: disable=import-outside-toplevel

    for error in errors or ():
        if now - _REPORTED.get(error, float("-inf")) < REPORT_EVERY:
            continue
        _REPORTED[error] = now
        log.error("hx incidents: configuration refused: %s", error)
        hx_audit.write(opts, "hx", "incident.config", None, "refused", error=error)


URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "urllib3.response")


def make_desk(opts, pillar=None, fire=None, cache=None):
    """The desk of a master: ``salt.cache`` store, master-local locks, requests, master events.

    ``fire`` replaces the master event bus (tests without a master); ``cache``
    is a ``salt.cache`` the caller already has.
    """
    # Salt and requests are imported here so the pure functions above import without them.
    import time  # pylint: disable=import-outside-toplevel

    import requests  # pylint: disable=import-outside-toplevel
    import salt.cache  # pylint: disable=import-outside-toplevel
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    import hx_audit  # pylint: disable=import-outside-toplevel

    cfg = config(*hx_audit.config_layers(opts, "hx_incident"), pillar=pillar)
    report_config_errors(opts, cfg["errors"], time.time())
    store = Store(cache or salt.cache.factory(opts), lambda name: hx_audit.lock(opts, name))
    session = requests.Session()
    # urllib3 logs each request line (path and query: the secret) at debug level.
    hx_secrets.scrub_logs(hx_secrets.collect(cfg["channels"]), URLLIB3_LOGGERS)

    def post(url, json, timeout):  # pylint: disable=redefined-outer-name
        return session.post(url, json=json, timeout=timeout)

    def master_fire(tag, data):
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as event:
            event.fire_event(data, tag)

    def audit(what, target, result, **details):
        hx_audit.write(opts, details.pop("by", None) or "hx", what, target, result, **details)

    return Desk(store, cfg, post, time.sleep, fire or master_fire, audit, time.time)
