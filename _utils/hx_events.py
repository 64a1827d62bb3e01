"""Every hx-ops action is observable: an event on the master bus and an audit line.

The audit log itself (JSON lines at master option ``hx_audit_log``, default
``<cachedir>/hx/audit.log``) is ``hx_audit``'s; this module gives runners one
call for each.
"""
import logging

import salt.utils.event

import hx_audit

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


def audit(opts, what, target, result, who=None, jid=None, **details):
    """Append one audit line (``hx_audit``: JSON lines under an flock) and return it."""
    return hx_audit.write(opts, who or opts.get("user") or "salt", what, target, result, jid=jid, **details)
