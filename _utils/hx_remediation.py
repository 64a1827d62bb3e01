"""Remediation policy: event trust, what a check means, which action, budgets.

Pure functions; ``now`` comes from the caller. Used by ``_runners/hx_remediate``
(master) and, for the signed message, by ``_beacons/hx_health`` (minion).
"""
import base64
import copy
import json
import math
import re

import hx_inctypes
import hx_numbers
import hx_lease

# Where each setting may come from (see docs/reference/hx_remediate.md):
# built-in defaults <- master opts ``hx_remediation`` <- the hx-ops config file
# <- the affected minion's pillar ``hx:remediation`` (compiled on the master).
DEFAULTS = {
    "enabled": True,
    "require_signature": True,
    "unsigned_sources": ["service"],
    "max_event_age": 300,
    # The reactor's gate (hx_gate) lets each minion named in a tag send
    # ``unsigned_rate`` unsigned events per second (bursts of
    # ``unsigned_burst``) and ``signed_rate``/``signed_burst`` events that
    # carry a signature; the rest is dropped before a runner job exists.
    # The names an unsigned hint may use are the minion's declared
    # hx:services, cached for ``declared_ttl`` s (one compile per flood).
    "unsigned_rate": 2.0,
    "unsigned_burst": 20,
    "signed_rate": 20.0,
    "signed_burst": 200,
    "declared_ttl": 60,
    "min_status": "critical",
    "actions": {
        "service_down": {"action": "recover"},
        "endpoint_failure": {"action": "recover"},
        "process_down": {"action": "notify"},
        "disk": {"action": "state", "sls": "hx.cleanup.disk"},
        "disk_forecast": {"action": "notify"},
        "cpu": {"action": "notify"},
        "memory": {"action": "notify"},
        "load": {"action": "notify"},
        "config_error": {"action": "notify"},
        "unknown": {"action": "notify"},
    },
    "budget": {"minion": {"max": 5, "window": 3600}, "role": {"max_pct": 50}},
    # What maintenance holds remediation back. "lease" = only the hosts the
    # live maintenance run is working on (its lease's batch): an open window
    # with no run in it is when crashes happen too. "configured" = also any
    # window declared in the minion's hx:maintenance:windows while it is open,
    # "any" = also hx_maint's built-in 02:00-06:00 default, "never" = nothing.
    "maintenance": "lease",
    # Seconds a problem may stay held back by planned work (maintenance,
    # deployment) before people are told: the work may be stuck.
    "hold_max": 3600,
    "stale_ttl": 30,
    "recheck_timeout": 15,
    "action_timeout": 180,
}
ACTIONS = ("recover", "state", "notify")
MAINTENANCE_MODES = ("lease", "configured", "any", "never")
# Security settings are the master's alone: a pillar override is refused.
MASTER_ONLY = ("require_signature", "unsigned_sources", "max_event_age", "unsigned_rate", "unsigned_burst",
               "signed_rate", "signed_burst", "declared_ttl")
STATUS_ORDER = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3, "config_error": 1}
SOURCES = ("hx_health", "service")
SLS_RE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


class Rejected(Exception):
    """An event that must not lead to any action (the message says why)."""


# -- configuration ------------------------------------------------------------


def deep_merge(base, override):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _number(value, prefix, key):
    """``key`` within its bounds (``hx_numbers.REMEDIATION``); the error names ``prefix:key``."""
    b = hx_numbers.REMEDIATION[key]
    number = hx_numbers.check(f"{prefix}:{key}", value, b)
    return number if b.integer else float(number)


def policy(*layers, pillar=None):
    """Effective policy from ``layers`` (master side) and a minion's pillar.

    ValueError names the bad key (``hx_remediation:...`` or
    ``hx:remediation:...``). ``enabled`` can only be switched off by pillar.
    """
    merged = copy.deepcopy(DEFAULTS)
    for layer in layers:
        if layer is not None and not isinstance(layer, dict):
            raise ValueError("hx_remediation must be a mapping")
        merged = deep_merge(merged, layer)
    master_enabled = merged.get("enabled")
    # The master's layers alone first: what fails after the pillar is merged is the pillar's key.
    merged = validate(merged)
    if pillar is not None:
        if not isinstance(pillar, dict):
            raise ValueError("hx:remediation must be a mapping")
        for key in MASTER_ONLY:
            if key in pillar:
                raise ValueError(f"hx:remediation:{key}: only the master's configuration may set this")
        merged = deep_merge(merged, pillar)
        if master_enabled is False:
            merged["enabled"] = False
        merged = validate(merged, "hx:remediation")
    return merged


def validate(p, prefix="hx_remediation"):
    """``p`` checked; ValueError names the key under ``prefix`` (where the value came from)."""
    unknown = sorted(set(p) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{prefix}:{unknown[0]}: unknown key (known: {', '.join(sorted(DEFAULTS))})")
    for key in ("enabled", "require_signature"):
        if not isinstance(p[key], bool):
            raise ValueError(f"{prefix}:{key} must be true or false")
    if not isinstance(p["unsigned_sources"], list) or any(s not in SOURCES for s in p["unsigned_sources"]):
        raise ValueError(f"{prefix}:unsigned_sources must be a list of {', '.join(SOURCES)}")
    if p["maintenance"] not in MAINTENANCE_MODES:
        raise ValueError(f"{prefix}:maintenance must be {', '.join(MAINTENANCE_MODES[:-1])} or never")
    if p["min_status"] not in ("warning", "critical"):
        raise ValueError(f"{prefix}:min_status must be warning or critical")
    for key in ("max_event_age", "stale_ttl", "recheck_timeout", "action_timeout", "unsigned_rate", "unsigned_burst",
                "signed_rate", "signed_burst", "declared_ttl", "hold_max"):
        p[key] = _number(p[key], prefix, key)
    if not isinstance(p["actions"], dict):
        raise ValueError(f"{prefix}:actions must be a mapping of incident type to action")
    for itype, spec in p["actions"].items():
        where = f"{prefix}:actions:{itype}"
        if itype not in hx_inctypes.names():
            raise ValueError(f"{where}: unknown incident type (known: {', '.join(hx_inctypes.names())})")
        if isinstance(spec, str):
            spec = p["actions"][itype] = {"action": spec}
        if not isinstance(spec, dict) or spec.get("action") not in ACTIONS:
            raise ValueError(f"{where}: action must be one of {', '.join(ACTIONS)}")
        extra = sorted(set(spec) - {"action", "sls"})
        if extra:
            raise ValueError(f"{where}: unknown key {extra[0]!r}")
        if spec["action"] == "state":
            if not isinstance(spec.get("sls"), str) or not SLS_RE.fullmatch(spec["sls"]):
                raise ValueError(f"{where}: sls must name an SLS like hx.cleanup.disk")
    budget = p["budget"]
    if not isinstance(budget, dict) or set(budget) - {"minion", "role"}:
        raise ValueError(f"{prefix}:budget must be a mapping with minion and role")
    minion = budget.get("minion") or {}
    if not isinstance(minion, dict) or set(minion) - {"max", "window"}:
        raise ValueError(f"{prefix}:budget:minion: only max and window are allowed")
    minion["max"] = _number(minion.get("max", 5), prefix, "budget:minion:max")
    minion["window"] = _number(minion.get("window", 3600), prefix, "budget:minion:window")
    role = budget.get("role") or {}
    if not isinstance(role, dict) or set(role) - {"max_pct"}:
        raise ValueError(f"{prefix}:budget:role: only max_pct is allowed")
    role["max_pct"] = _number(role.get("max_pct", 50), prefix, "budget:role:max_pct")
    budget["minion"], budget["role"] = minion, role
    return p


def action_for(p, incident_type):
    spec = p["actions"].get(incident_type) or p["actions"].get("unknown") or {"action": "notify"}
    return dict(spec)


# -- events -----------------------------------------------------------------

TAG_RE = re.compile(r"salt/beacon/(?P<minion>[^/]+)/(?P<source>[^/]+)/(?P<name>.*)")


def parse_event(tag, data):
    """Who sent what. Raises :class:`Rejected` when the event cannot be trusted.

    Two shapes reach the master under a ``salt/beacon/`` tag:

    * a beacon event (the minion's ``events`` list): the master fires the
      minion's dict as is, so ``data["id"]`` is whatever the minion wrote;
    * ``event.send``/``fire_master`` from a minion: the master fires the whole
      request load, whose ``id`` the request server verified against the
      minion's key, and the sender's payload is ``data["data"]``.

    In both, the minion named in the tag must be the sender.
    """
    if not isinstance(tag, str):
        raise Rejected("tag is not a string")
    m = TAG_RE.fullmatch(tag)
    if not m:
        raise Rejected(f"tag {tag!r} is not salt/beacon/<minion>/<source>/<name>")
    if not isinstance(data, dict):
        raise Rejected("event data is not a mapping")
    if data.get("cmd") == "_minion_event" and isinstance(data.get("data"), dict):
        form, sender, payload = "send", data.get("id"), data["data"]
    else:
        form, sender, payload = "beacon", data.get("id"), data
    if not isinstance(sender, str) or sender != m["minion"]:
        raise Rejected(f"sender {sender!r} is not the minion named in the tag ({m['minion']!r})")
    if m["source"] not in SOURCES:
        raise Rejected(f"beacon source {m['source']!r} is not handled (known: {', '.join(SOURCES)})")
    return {"minion": m["minion"], "source": m["source"], "name": m["name"], "form": form, "payload": payload}


def signed_message(minion, source, name, payload):
    """The exact bytes the beacon signs: what the tag says plus the data.

    Left out: ``id`` and ``tag`` (the beacon framework adds/removes them),
    ``sig`` itself, and ``_``-keys (the event bus stamps ``_stamp``).
    """
    body = {k: v for k, v in payload.items() if k not in ("id", "sig", "tag") and not str(k).startswith("_")}
    return json.dumps(
        {"minion": minion, "source": source, "name": name, "data": body},
        sort_keys=True, separators=(",", ":"), default=str,
    ).encode()


def encode_sig(raw):
    return base64.b64encode(raw).decode()


def decode_sig(text):
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (ValueError, AttributeError) as exc:
        raise Rejected("signature is not base64") from exc


def freshness(payload, now, max_age):
    """Reject events from the future (> 60 s skew) or older than ``max_age`` (replays)."""
    ts = payload.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise Rejected("signed event has no timestamp")
    if ts > now + 60:
        raise Rejected(f"event timestamp is {ts - now:.0f} s in the future")
    if now - ts > max_age:
        raise Rejected(f"event is {now - ts:.0f} s old (max_event_age {max_age:g} s)")


def note_nonce(seen, nonce, now, max_age):
    """Remember a signed event's nonce: ``(replayed_at, seen)``.

    ``seen`` is {nonce: first seen} of one minion; entries older than
    ``max_age`` are dropped (an event that old is refused by its timestamp
    anyway). ``replayed_at`` is when this nonce was first seen, or None.
    """
    if not isinstance(nonce, str) or not nonce:
        raise Rejected("signed event has no nonce")
    kept = {n: t for n, t in (seen or {}).items() if isinstance(t, (int, float)) and now - t <= max_age}
    if nonce in kept:
        return kept[nonce], kept
    kept[nonce] = now
    return None, kept


# -- what a check means -------------------------------------------------------

SYSTEM_METRICS = ("cpu", "memory", "load")


def check_facts(name, kind=None, services=None):
    """Incident type, resource and owning service of a check.

    ``services``: the minion's ``hx:services`` (from its pillar, compiled on
    the master). A check listed in a service's ``health`` belongs to it.
    Returns ``{"check", "type", "resource", "service"}``; ``type`` is
    ``service`` for a service's check (the caller tells down from endpoint
    failure by the process state).
    """
    if name.startswith("forecast/"):
        return {"check": name, "type": "disk_forecast", "resource": name[len("forecast"):] or "/", "service": None}
    if name == "config/error":
        return {"check": name, "type": "config_error", "resource": None, "service": None}
    if ":" in name:
        _, metric = name.split(":", 1)
        if metric in SYSTEM_METRICS:
            return {"check": name, "type": metric, "resource": metric, "service": None}
        if metric.startswith("disk:"):
            return {"check": name, "type": "disk", "resource": metric[len("disk:"):], "service": None}
        return {"check": name, "type": "unknown", "resource": metric, "service": None}
    for svc, spec in sorted((services or {}).items()):
        health = (spec or {}).get("health") or []
        if isinstance(health, str):
            health = [h.strip() for h in health.split(",")]
        if name in health:
            return {"check": name, "type": "service", "resource": svc, "service": svc}
    kind_type = {"http": "endpoint_failure", "tcp": "endpoint_failure", "process": "process_down"}
    return {"check": name, "type": kind_type.get(kind, "unknown"), "resource": None, "service": None}


def admit(bucket, now, rate, burst):
    """Token bucket of one sender's unsigned events: ``(admitted, bucket)``.

    ``bucket`` is ``(tokens, at)`` from the previous call, or None for a
    sender not seen yet (it starts full).
    """
    tokens, at = bucket if bucket else (float(burst), now)
    tokens = min(float(burst), tokens + max(0.0, now - at) * rate)
    if tokens >= 1.0:
        return True, (tokens - 1.0, now)
    return False, (tokens, now)


def gate_sender(tag, data):
    """``(minion named in the tag, carries a signature)`` for the reactor's gate, or None.

    Only the shape is read here; whether the signature verifies is the
    runner's business (the gate only chooses which bucket pays).
    """
    m = TAG_RE.match(tag) if isinstance(tag, str) else None
    if not m:
        return None
    payload = data.get("data") if isinstance(data, dict) and data.get("cmd") == "_minion_event" else data
    return m["minion"], isinstance(payload, dict) and "sig" in payload


def declared_names(services):
    """Every name a built-in ``service`` beacon event may use for a minion's hx:services."""
    names = set()
    for svc, spec in (services or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        names.update(n for n in (svc, spec.get("unit"), spec.get("program")) if isinstance(n, str))
    return frozenset(names)


def service_for(services, name):
    """The hx:services entry a built-in ``service`` beacon name refers to (name, unit or program)."""
    for svc, spec in sorted((services or {}).items()):
        spec = spec or {}
        if name in (svc, spec.get("unit"), spec.get("program")):
            return svc
    return None


def reaches(status, min_status):
    return STATUS_ORDER.get(status, 0) >= STATUS_ORDER[min_status]


def below_min_status(name, status, min_status):
    """Is an event about check ``name`` at ``status`` too mild to handle?

    A disk forecast is a warning by nature (the disk is not full yet): judged
    by min_status it would never reach anyone, so it always goes on to the
    policy, whose default for it is notify.
    """
    return not reaches(status, min_status) and check_facts(name)["type"] != "disk_forecast"


# -- budgets ------------------------------------------------------------------


def in_window(stamps, now, window):
    """Stamps counting now: ``now - window < ts <= now`` (as hx_budget)."""
    return [ts for ts in stamps if now - window < ts <= now]


def minion_budget(stamps, now, limits):
    used = len(in_window(stamps, now, limits["window"]))
    return {"allowed": used < limits["max"], "used": used, "max": limits["max"], "window": limits["window"]}


def role_slots(role_size, max_pct):
    """How many of a role's minions may be remediated at once (always at least one)."""
    return max(1, math.floor(role_size * max_pct / 100.0 + 1e-9))


def role_budget(active, role_size, max_pct):
    slots = role_slots(role_size, max_pct)
    return {"allowed": active < slots, "active": active, "slots": slots, "size": role_size}


def maintenance_lease_hold(holder, minion, now, alive=None):
    """The maintenance run's description when its live lease is working on ``minion``, else None.

    ``holder``: the lease under ``hx/maint/locks`` (None when no run holds
    it). Only the hosts of the batch in progress (and those it left failed,
    out of rotation, until the run ends) are under planned work; the other
    targets still get remediation. A dead run holds nothing back.
    """
    if not isinstance(holder, dict) or holder.get("kind", "maint") != "maint":
        return None
    if hx_lease.stale(holder, now, alive)[0]:
        return None
    if minion not in (holder.get("batch") or []):
        return None
    return hx_lease.describe(holder, now)


def held_too_long(held_since, now, hold_max):
    """Text for the escalation when planned work has held a problem back longer than ``hold_max`` s, else None."""
    if not isinstance(held_since, (int, float)) or now - held_since <= hold_max:
        return None
    return f"held back by planned work for {now - held_since:.0f} s, longer than hx_remediation:hold_max ({hold_max:g} s)"


def maintenance_holds(mode, window_status, configured_windows):
    """Does an ``hx_maint.window_open`` answer hold remediation back under ``mode``?

    Windows count only in modes ``configured`` and ``any``; in ``lease`` (the
    default) only a live run's batch does (``maintenance_lease_hold``).
    """
    if mode not in ("configured", "any") or not isinstance(window_status, dict) or not window_status.get("open"):
        return False
    if window_status.get("enforce") is False or window_status.get("emergency"):
        return False  # "always open" because not enforced is not a maintenance window
    return mode == "any" or bool(configured_windows)


def deploy_suppression(holders, service, now, alive=None):
    """``(app, text)`` when a running deployment has ``service`` under work, else None.

    ``holders``: {app: lease holder} from ``hx/deploy/locks``. Only a lease
    that is running (a paused canary's colors are live and guarded like any
    other), fresh (a dead deployment silences nothing) and covers this very
    service (the color being installed) holds remediation back.
    """
    for app in sorted(holders):
        holder = holders[app]
        if not isinstance(holder, dict) or holder.get("state", "running") != "running":
            continue
        if hx_lease.stale(holder, now, alive(holder) if alive else None)[0]:
            continue
        if hx_lease.covers(holder, service):
            return app, hx_lease.describe(holder, now)
    return None


