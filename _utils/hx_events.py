"""Every hx-ops action is observable: an event on the master bus and an audit line.

Audit log: JSON lines (``ts``, ``who``, ``what``, ``target``, ``result``,
``jid`` and details) at master option ``hx_audit_log``, default
``<cachedir>/hx/audit.log``. Appends are serialised with an exclusive flock,
so reactor threads and concurrent runners never interleave lines.
"""
import fcntl
import json
import logging
import os
import time

import salt.utils.event

log = logging.getLogger(__name__)


def fire(opts, tag, data):
    """Fire ``tag`` on the master event bus; a failure is logged, never raised."""
    try:
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
            bus.fire_event(dict(data), tag)
    except Exception as exc:  # pylint: disable=broad-except
        # An unobservable action is bad; an action aborted because the bus
        # hiccuped is worse.
        log.warning("could not fire %s: %s", tag, exc)


def audit_path(opts):
    return opts.get("hx_audit_log") or os.path.join(opts["cachedir"], "hx", "audit.log")


def audit(opts, what, target, result, who=None, jid=None, **details):
    """Append one audit record and return it."""
    entry = {
        "ts": round(time.time(), 3),
        "who": who or opts.get("user") or "salt",
        "what": what,
        "target": target,
        "result": result,
        "jid": jid,
    }
    entry.update(details)
    path = audit_path(opts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return entry


def read_audit(opts, what=None, limit=100):
    """The newest audit records (optionally only those whose ``what`` starts with ``what``)."""
    path = audit_path(opts)
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if what is None or str(entry.get("what", "")).startswith(what):
                out.append(entry)
    return out[-limit:]
