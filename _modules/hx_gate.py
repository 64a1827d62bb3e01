"""
The reactor's gate in front of ``hx_remediate.handle``: a flood is cut before
it costs a runner job.

Each beacon event the reactor maps to remediation would become one runner job
(a job id, two events on the master bus, a job-cache entry, a thread of the
reactor's pool). A minion that sends thousands of events would make the master
spend itself on them. The reactor's SLS asks :func:`admit` first; it runs in
the reactor process (Salt's master-side loader), so its token buckets live as
long as the reactor and cost a dictionary lookup per event.

Buckets are per minion named in the tag and per kind: events without a
signature (``unsigned_rate``/``unsigned_burst``, Salt's service beacon is the
only legitimate source) and events that carry one (``signed_rate``/
``signed_burst``; the runner verifies it). A name without an accepted key is
dropped outright. What is dropped is counted and reported once a minute per
sender: audit ``remediate.throttle``, event ``hx/remediate/<minion>/throttled``.
Reference: docs/reference/hx_remediate.md.
"""
import logging
import os
import threading
import time

import salt.utils.event

try:
    import hx_audit
    import hx_remediation

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "hx_gate"

REPORT_EVERY = 60.0  # s between audit lines about one sender's dropped events
POLICY_EVERY = 5.0  # s a read policy is reused: the gate must stay cheaper than the event
UNKNOWN = "(no accepted key)"

_LOCK = threading.Lock()
_BUCKETS = {}  # (minion, signed) -> token bucket
_DROPPED = {}  # sender -> {"count", "since", "told"}
_POLICY = {"at": -POLICY_EVERY, "pol": None}


def __virtual__():
    if _IMPORT_ERROR:
        return False, f"hx_gate: cannot import hx-ops utils ({_IMPORT_ERROR}); run saltutil.sync_all"
    if __opts__.get("__role") != "master":
        return False, "hx_gate runs on the master (in the reactor) only"
    return __virtualname__


def _policy(now):
    with _LOCK:
        if now - _POLICY["at"] < POLICY_EVERY and _POLICY["pol"] is not None:
            return _POLICY["pol"]
    try:
        pol = hx_remediation.policy(*hx_audit.config_layers(__opts__, "hx_remediation"))
    except ValueError as exc:
        # The runner reports a bad configuration on every event; the gate lets it through to say so.
        log.warning("hx_gate: policy unreadable, not gating: %s", exc)
        return None
    with _LOCK:
        _POLICY.update(at=now, pol=pol)
    return pol


def admit(tag, data):
    """
    True when the beacon event ``tag``/``data`` may go on to
    ``hx_remediate.handle``; False when its sender is over its rate or has no
    accepted key (counted, reported once a minute).

    CLI Example (from the reactor's SLS; on the master only):

    .. code-block:: jinja

        {% if salt['hx_gate.admit'](tag, data) %} ... {% endif %}
    """
    now = time.time()
    sender = hx_remediation.gate_sender(tag, data)
    pol = _policy(now)
    if sender is None or pol is None:
        return True  # malformed or unconfigured: the runner rejects it with the reason
    minion, signed = sender
    known = os.path.isfile(os.path.join(__opts__["pki_dir"], "minions", minion))
    rate, burst = ((pol["signed_rate"], pol["signed_burst"]) if signed
                   else (pol["unsigned_rate"], pol["unsigned_burst"]))
    with _LOCK:
        if known:
            ok, _BUCKETS[(minion, signed)] = hx_remediation.admit(_BUCKETS.get((minion, signed)), now, rate, burst)
            if ok:
                return True
        who = minion if known else UNKNOWN
        drop = _DROPPED.setdefault(who, {"count": 0, "since": now, "told": 0.0})
        drop["count"] += 1
        report = None
        if now - drop["told"] >= REPORT_EVERY:
            report = dict(drop)
            _DROPPED[who] = {"count": 0, "since": now, "told": now}
    if report:
        _report(minion if known else None, minion, report, signed, rate, burst)
    return False


def _report(target, named, report, signed, rate, burst):
    since = time.strftime("%H:%M:%S", time.gmtime(report["since"]))
    kind = "signed" if signed else "unsigned"
    if target:
        why = (f"{report['count']} {kind} event(s) from {target} dropped since {since} UTC: more than "
               f"{rate:g}/s (burst {burst:g})")
    else:
        why = (f"{report['count']} event(s) naming minions without an accepted key dropped since {since} UTC "
               f"(last: {named!r})")
    hx_audit.write(__opts__, "hx_remediate", "remediate.throttle", target, "dropped", reason=why,
                   dropped=report["count"])
    log.warning("hx_gate: %s", why)
    try:
        with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
            event.fire_event({"minion": target, "dropped": report["count"], "reason": why},
                             f"hx/remediate/{target or 'unknown'}/throttled")
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("hx_gate: cannot fire the throttle event: %s", exc)

