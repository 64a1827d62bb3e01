"""
Maintenance windows on a minion: is maintenance allowed now, when is the next
window, and run something (highstate) only inside one.

Configuration lives in pillar ``hx:maintenance`` (``windows``, ``blackouts``,
``enforce``, ``schedule``; see ``pillar/hx/maintenance.sls`` and
``docs/reference/hx_maint.md``).  The window maths is in
``_utils/hx_windows.py``.  Not to be confused with the ``hx_maint`` runner
(master side, rolling maintenance runs), which shares the public name.
"""
import datetime
import json
import logging
import os

import hx_errors
import hx_typed
import hx_windows
from salt.exceptions import SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hx_maint"

AUDIT_FILE = os.path.join("hx", "maint_audit.jsonl")


def __virtual__():
    return __virtualname__


def _pillar(key, default=None):
    # Salt 3008 masks pillar values unless unmask=True.
    return __salt__["pillar.get"](f"hx:maintenance:{key}", default, unmask=True)


def _config():
    try:
        return hx_windows.validate(_pillar("windows"), _pillar("blackouts"), _pillar("enforce", True))
    except ValueError as exc:
        raise hx_errors.config(exc) from None


def _at(at):
    try:
        return hx_windows.parse_at(at)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from None


def _bool(value, key):
    try:
        return hx_typed.flag(key, value)
    except ValueError as exc:
        raise hx_errors.usage(exc) from None


def _audit(entry):
    """Append one JSON line to the minion's maintenance audit log (best effort)."""
    path = os.path.join(__opts__["cachedir"], AUDIT_FILE)
    entry = dict(entry, minion=__opts__.get("id"), logged_at=datetime.datetime.now(datetime.timezone.utc).isoformat())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    except OSError as exc:
        log.error("hx_maint: cannot write audit log %s: %s", path, exc)


def windows():
    """
    The validated maintenance configuration: windows (``start``/``end`` as
    ``HH:MM``, ``tz``, ``days``, ``crosses_midnight``), blackouts and
    ``enforce``.  ``default: True`` when no window is configured and the
    built-in 02:00-06:00 UTC daily window applies.  Malformed pillar raises
    CommandExecutionError naming the window and key.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_maint.windows
    """
    return hx_windows.describe(_config())


def window_open(at=None, emergency=False):
    """
    Is maintenance allowed at ``at`` (ISO-8601 timestamp; default now; no
    offset means UTC)?

    Returns ``{open, window, reason, emergency, enforce, at, opens_at,
    closes_at, next_open, next_window}``.  ``emergency=True`` opens the gate
    whatever the windows and blackouts say (reason ``emergency bypass``) and
    records the bypass in the minion's audit log and the minion log.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_maint.window_open
        salt '*' hx_maint.window_open at=2024-06-01T02:30:00+02:00
        salt '*' hx_maint.window_open emergency=True
    """
    emergency = _bool(emergency, "emergency")
    config = _config()
    result = hx_windows.status(config, _at(at), emergency=emergency)
    if emergency:
        log.warning("hx_maint: maintenance window bypassed (emergency) at %s", result["at"])
        _audit({"event": "emergency_bypass", "fun": "hx_maint.window_open", "at": result["at"],
                "jid": __opts__.get("jid")})
    return result


def next_window(at=None):
    """
    The next window opening strictly after ``at`` (default now), skipping
    occurrences vetoed by a blackout: ``{window, opens_at, closes_at}``, or
    ``{window: None, ...}`` when nothing opens within 400 days.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_maint.next_window
        salt '*' hx_maint.next_window at=2024-12-24T00:00:00Z
    """
    found = hx_windows.next_open(_config(), _at(at))
    if not found:
        return {"window": None, "opens_at": None, "closes_at": None}
    window, opens, closes = found
    return {"window": window["name"], "opens_at": hx_windows.iso(opens, window),
            "closes_at": hx_windows.iso(closes, window)}


def schedule_job():
    """
    The ``schedule.present`` arguments of the ``hx_highstate`` job, built from
    pillar ``hx:maintenance:schedule`` (used by ``salt://hx/maintenance``).
    Malformed pillar raises CommandExecutionError naming the key.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_maint.schedule_job
    """
    try:
        return hx_windows.schedule_job(_pillar("schedule"))
    except ValueError as exc:
        raise hx_errors.config(exc) from None


def run_if_open(fun, *args, **kwargs):
    """
    Run the execution function ``fun`` with ``args``/``kwargs`` only when the
    maintenance window is open now (``emergency=True`` bypasses, recorded).

    Returns ``{ran: True, window, status, return}`` or, outside a window,
    ``{ran: False, skipped: True, reason, status}`` (retcode 0: a skip is
    the expected outcome of a job tried outside its window).  The called
    function's retcode (e.g. a failed highstate) is kept.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_maint.run_if_open test.ping
        salt '*' hx_maint.run_if_open state.apply hx.maintenance test=True
    """
    emergency = _bool(kwargs.pop("emergency", False), "emergency")
    call_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    if not isinstance(fun, str) or fun not in __salt__:
        raise SaltInvocationError(f"fun: {fun!r} is not an available execution function")
    status = window_open(emergency=emergency)
    if not status["open"]:
        log.info("hx_maint: skipping %s: %s", fun, status["reason"])
        return {"ran": False, "skipped": True, "fun": fun, "reason": status["reason"], "status": status}
    log.info("hx_maint: running %s (%s)", fun, status["reason"])
    returned = __salt__[fun](*args, **call_kwargs)
    if emergency:
        _audit({"event": "emergency_run", "fun": fun, "at": status["at"], "jid": kwargs.get("__pub_jid")})
    return {"ran": True, "skipped": False, "fun": fun, "window": status["window"],
            "reason": status["reason"], "status": status, "return": returned}


def highstate(emergency=False, **kwargs):
    """
    ``state.highstate`` only inside a maintenance window: the function the
    ``hx_highstate`` schedule job calls.  Extra keyword arguments (``test``,
    ``pillar``, ...) go to ``state.highstate``.  Same return shape as
    ``run_if_open``; ``return`` holds the highstate result.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_maint.highstate
        salt '*' hx_maint.highstate test=True
    """
    return run_if_open("state.highstate", emergency=emergency, **kwargs)
