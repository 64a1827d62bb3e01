"""Leases: who holds an app, a host or the fleet for planned work, and until when.

One holder schema for every automation that must not run twice at once or
under another's feet (deployments, canaries, maintenance runs)::

    {"id": "<token>", "kind": "deploy" | "maint", "scope": "app:demo" | "fleet",
     "owner": "<deployment or run id>", "user": "root", "master": "salt1",
     "pid": 4242, "started": 1795980714.3, "heartbeat": 1795980744.1,
     "expires": 1795980774.1, "state": "running" | "paused", ...}

A running holder renews ``heartbeat``/``expires`` while it works; a lease
is **stale** once ``expires`` has passed or its process is known to be gone
(``alive`` False, only knowable on the holder's own master). A paused
canary holds its app with no process and no expiry until resumed or ended.
The store takes and renews leases atomically; these functions only decide.
"""
import time

DEFAULT_TTL = 30.0
MIN_TTL = 3.0
MAX_TTL = 3600.0


def ttl_from(conf):
    """``hx_lease: {ttl: s}`` from the master's settings (``None``: the default), checked."""
    value = (conf or {}).get("ttl", DEFAULT_TTL) if isinstance(conf, dict) else DEFAULT_TTL
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"hx_lease:ttl: must be a number of seconds, got {value!r}")
    if not MIN_TTL <= value <= MAX_TTL:
        raise ValueError(f"hx_lease:ttl: must be between {MIN_TTL:g} and {MAX_TTL:g} s, got {value!r}")
    return float(value)


def heartbeat_every(ttl):
    """A holder renews three times per ttl: one missed renewal never loses the lease."""
    return max(0.5, ttl / 3.0)


def new(token, kind, scope, owner, user, master, pid, now, ttl, **extra):
    holder = {
        "id": token[:12],  # shown; the full token (what release checks) never is
        "token": token,
        "kind": kind,
        "scope": scope,
        "owner": owner,
        "user": user,
        "master": master,
        "pid": pid,
        "started": round(now, 3),
        "since": round(now, 3),
        "heartbeat": round(now, 3),
        "expires": round(now + ttl, 3),
        "ttl": ttl,
        "state": "running",
    }
    holder.update(extra)
    return holder


def renewed(holder, now):
    ttl = float(holder.get("ttl") or DEFAULT_TTL)
    return dict(holder, heartbeat=round(now, 3), expires=round(now + ttl, 3))


def paused(holder):
    """A paused holder keeps the lease without a process or an expiry."""
    return dict(holder, state="paused", pid=None, expires=None)


def stale(holder, now, alive=None):
    """``(True, why)`` when nobody holds this lease any more, else ``(False, None)``."""
    if not holder:
        return True, "no holder"
    if holder.get("state") == "paused":
        return False, None
    expires = holder.get("expires")
    if expires is None:
        # A holder written before leases expired: its age alone cannot tell.
        return (alive is False), ("its process is gone" if alive is False else None)
    if now >= float(expires):
        return True, f"its lease expired {now - float(expires):.0f} s ago (no heartbeat since {_clock(holder.get('heartbeat'))})"
    if alive is False:
        return True, "its process is gone"
    return False, None


def _clock(ts):
    if not isinstance(ts, (int, float)):
        return "?"
    return time.strftime("%H:%M:%S", time.gmtime(ts)) + " UTC"


def describe(holder, now=None):
    """One line an operator reads in a refusal: who, what, where, since, and how fresh."""
    now = time.time() if now is None else now
    what = holder.get("what") or f"{holder.get('kind')} {holder.get('owner')}"
    text = (f"{what} by {holder.get('user')} since {_clock(holder.get('started') or holder.get('since'))}, "
            f"pid {holder.get('pid')} on {holder.get('master')}")
    if holder.get("state") == "paused":
        return text.replace(f", pid {holder.get('pid')}", "") + ", paused"
    if isinstance(holder.get("heartbeat"), (int, float)):
        text += f", heartbeat {max(0.0, now - holder['heartbeat']):.0f} s ago"
    return text


def covers(holder, service):
    """Does this lease put ``service`` under planned work (its ``services`` list)?"""
    return bool(service) and service in (holder.get("services") or [])
