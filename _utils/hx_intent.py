"""Intent: what a managed service should be doing, and who said so.

Every actor that stops or starts a service on purpose (an operator through
``hx_service.stop``/``start``, a deployment parking or warming a color, a
maintenance run, a quarantine) records its intent on the minion that runs
the service. Remediation acts only on a service intended up that is down;
a service stopped on purpose is left alone and the event about it is
audited as such. An entry::

    {"want": "down", "owner": "deploy demo-1795...", "reason": "parked",
     "since": 1795980714.3, "expires": null}

``expires`` (epoch s) bounds an intent whose holder may die (a maintenance
run): once past, the service is intended up again, so remediation takes
over. No entry means up: a service declared in ``hx:services`` is meant to
run unless someone said otherwise.
"""

UP = "up"
DOWN = "down"
WANTS = (UP, DOWN)
MAX_TEXT = 200


def _text(key, value, default):
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string, got {type(value).__name__}")
    value = " ".join(value.split())  # no newlines or control runs in records and audit lines
    if len(value) > MAX_TEXT:
        raise ValueError(f"{key}: at most {MAX_TEXT} characters")
    return value


def ttl_seconds(ttl):
    """``ttl`` as given by a caller (None, number or numeric string) -> seconds > 0 or None."""
    if ttl is None or ttl == "":
        return None
    if isinstance(ttl, bool):
        raise ValueError(f"ttl: must be a number of seconds, got {ttl!r}")
    try:
        value = float(ttl)
    except (TypeError, ValueError):
        raise ValueError(f"ttl: must be a number of seconds, got {ttl!r}") from None
    if value != value or value in (float("inf"), float("-inf")) or value <= 0 or value > 366 * 86400:
        raise ValueError(f"ttl: must be over 0 and at most one year of seconds, got {ttl!r}")
    return value


def entry(want, owner, reason, now, ttl=None):
    """A new intent entry (``ValueError`` naming the argument when one is wrong)."""
    if want not in WANTS:
        raise ValueError(f"want: must be one of {', '.join(WANTS)}, got {want!r}")
    seconds = ttl_seconds(ttl)
    return {
        "want": want,
        "owner": _text("owner", owner, "operator"),
        "reason": _text("reason", reason, "stopped by hand" if want == DOWN else "started"),
        "since": round(float(now), 3),
        "expires": round(float(now) + seconds, 3) if seconds else None,
    }


def effective(record, now):
    """The intent in force: the record, or None (= up) when there is none or it expired."""
    if not isinstance(record, dict) or record.get("want") not in WANTS:
        return None
    expires = record.get("expires")
    if isinstance(expires, (int, float)) and not isinstance(expires, bool) and now >= expires:
        return None
    return record


def wants_down(record, now):
    rec = effective(record, now)
    return bool(rec) and rec["want"] == DOWN


def describe(record):
    """``stopped on purpose by <owner> (<reason>)``: what an operator reads in audit lines and incidents."""
    if not record:
        return "intended up (no intent recorded)"
    verb = "stopped on purpose" if record["want"] == DOWN else "started on purpose"
    text = f"{verb} by {record.get('owner')} ({record.get('reason')})"
    if record.get("expires"):
        text += f" until {record['expires']:.0f}"
    return text


def view(record, now):
    """What ``hx_service.status`` shows beside the process state."""
    rec = effective(record, now)
    if rec is None:
        expired = isinstance(record, dict) and record.get("want") == DOWN
        return {"want": UP, "owner": None, "reason": "expired: " + describe(record) if expired else None,
                "since": None, "expires": None}
    return dict(rec)


def attention(state, health, quarantine, intent):
    """Why a service in a fleet report needs a person, or None when it is as intended.

    ``intent`` is what ``view`` returns. A service stopped on purpose and
    stopped is as intended (it does not fail the report); one intended down
    that runs anyway is drift and is named.
    """
    if quarantine:
        return "quarantined"
    if (intent or {}).get("want") == DOWN:
        return None if state in ("stopped", "failed") else f"{state}, though intended down"
    if state != "running":
        return state or "unknown"
    if health not in ("ok", "warning"):
        return f"health {health}"
    return None
