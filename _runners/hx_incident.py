"""Incidents opened by ``hx_remediate``: list, show, acknowledge, resolve, escalate, report.

Records live in ``salt.cache`` (bank ``hx/incidents``): localfs by default,
redis (or any driver) when the master's ``cache`` says so.
Reference: docs/reference/hx_incident.md; runbook: docs/operations/incidents.md.

CLI Example:

.. code-block:: bash

    salt-run hx_incident.list status=active
    salt-run hx_incident.ack INC-1732900000-web1 by=alice
"""
import logging
import os
import time

import hx_audit
import hx_fleet
import hx_incidents
import hx_numbers
import hx_runner
import hx_typed

try:
    import requests  # noqa: F401  (hx_incidents.make_desk posts with it)

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover
    HAS_REQUESTS = False

log = logging.getLogger(__name__)

__virtualname__ = "hx_incident"

LIST_COLUMNS = ("id", "priority", "status", "level", "minion", "check", "repeats", "opened", "summary")


def __virtual__():
    if not HAS_REQUESTS:
        return False, "hx_incident: the requests library is required for notifications"
    return __virtualname__


def _desk_or_error():
    try:
        return hx_incidents.make_desk(__opts__), None
    except ValueError as exc:
        text = hx_audit.secrets(__opts__).scrub(exc)
        log.error("hx_incident: bad configuration: %s", text)
        return None, hx_runner.finish(__context__, {"result": False, "comment": f"bad configuration: {text}"})


def _out(d, ret):
    """A return as salt-run shows and the job cache keeps it: without a configured secret in it,
    even in a record written before a secret was configured as one."""
    return d.secrets.scrub_obj(ret)


def list_(status=None, severity=None, minion=None, since=None):
    """
    Incidents, most urgent first, with a table printed to salt-run.

    status
        open, remediating, escalated, acknowledged, resolved, or ``active``
        (all but resolved); comma list allowed.
    severity
        critical/high/medium/low or P1..P4; comma list allowed.
    minion
        Only this minion's incidents.
    since
        Epoch seconds, or a duration like ``3600`` s back is ``since=-3600``.

    CLI Example:

    .. code-block:: bash

        salt-run hx_incident.list status=active severity=P1
        salt-run hx_incident.list minion=web1 since=-86400
    """
    try:
        status, severity, minion = hx_incidents.filters(status, severity, minion)
        if since is not None:
            since = hx_numbers.check("since", since, hx_numbers.INCIDENT_RUNNER["since"], text=True)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    if since is not None and since < 0:
        since = time.time() + since
    d, err = _desk_or_error()
    if err:
        return err
    found = [i for i in d.store.all() if hx_incidents.matches(i, status, severity, minion, since)]
    found = hx_incidents.sort_by_priority(found)
    rows = [
        dict(i, opened=hx_incidents._iso(i["opened_at"]), level=f"L{i['level']}" if i["level"] else "-")  # pylint: disable=protected-access
        for i in found
    ]
    hx_runner.progress(globals(), d.secrets.scrub(hx_fleet.render_table(LIST_COLUMNS, rows)) if rows else "no incidents",
                       log)
    return _out(d, {
        "result": True,
        "counts": hx_incidents.counts(d.store.all()),
        "incidents": [{k: i.get(k) for k in ("id", "priority", "severity", "status", "level", "minion", "check",
                                            "resource", "type", "repeats", "opened_at", "resolved_at", "summary")}
                      for i in found],
    })


# salt-run hx_incident.list (``list`` shadows a builtin inside the module)
__func_alias__ = {"list_": "list"}


def show(incident):
    """
    One incident with its whole timeline.

    CLI Example:

    .. code-block:: bash

        salt-run hx_incident.show INC-1732900000-web1
    """
    d, inc, err = _find(incident)
    if err:
        return err
    return _out(d, {"result": True, "incident": inc, **hx_incidents.durations(inc)})


def ack(incident, by=None, note=None):
    """
    Acknowledge an incident: stops its escalation; PagerDuty gets ``acknowledge``.

    by
        Who acknowledges (one line, at most 128 characters); default the
        invoking user.
    note
        Free text for the timeline (at most 4096 characters).

    CLI Example:

    .. code-block:: bash

        salt-run hx_incident.ack INC-1732900000-web1 by=alice note='looking at it'
    """
    return _change(incident, "acknowledge", by, note)


def resolve(incident, by=None, note=None):
    """
    Resolve an incident by hand (a person fixed it); channels that were told get ``resolve``.

    CLI Example:

    .. code-block:: bash

        salt-run hx_incident.resolve INC-1732900000-web1 by=alice note='disk replaced'
    """
    return _change(incident, "resolve", by, note)


def _find(incident):
    """``(desk, record, None)``, or ``(desk, None, error return)`` for a malformed or unknown id.

    The id is checked before the store sees it: it becomes a cache key and a
    report's file name, so ``../`` or a newline must never get that far."""
    d, err = _desk_or_error()
    if err:
        return d, None, err
    if not isinstance(incident, str) or not hx_incidents.ID_RE.fullmatch(incident):
        return d, None, hx_runner.finish(__context__, {
            "result": False, "comment": f"incident: {str(incident)[:80]!r} is not an incident id (INC-<epoch>-<minion>)"})
    inc = d.store.get(incident)
    if not inc:
        return d, None, hx_runner.finish(__context__, {"result": False, "comment": f"no incident {incident}"})
    return d, inc, None


def _change(incident, what, by, note):
    try:
        by = hx_runner.who(by)
        note = hx_typed.operator_text("note", note, 4096, lines=True)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    d, _, err = _find(incident)
    if err:
        return err
    try:
        inc = getattr(d, "acknowledge" if what == "acknowledge" else "resolve")(incident, by, note)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": d.secrets.scrub(exc)})
    return _out(d, {"result": True, "comment": f"{incident} {inc['status']} by {by}", "incident": inc})


def escalate_due():
    """
    Escalate every escalated incident nobody acknowledged within its
    ``escalation_timeout`` to the next level (L1 -> L2 -> L3) and notify that
    level. Run it from the master's schedule (docs/reference/hx_incident.md);
    ``hx_remediate.handle`` also runs it on every event.

    CLI Example:

    .. code-block:: bash

        salt-run hx_incident.escalate_due
    """
    d, err = _desk_or_error()
    if err:
        return err
    done = d.escalate_due()
    for item in done:
        hx_runner.progress(globals(), f"{item['id']} escalated to {item['level']}", log)
    return {"result": True, "escalated": done}


def report(incident, path=None):
    """
    Write the blameless post-incident report (Markdown) of an incident to
    ``<reports_dir>/<id>.md`` (default ``<cachedir>/hx/reports``) and return
    its path and text.

    path
        Write it here instead: an absolute path ending in ``.md`` (no ``..``).

    CLI Example:

    .. code-block:: bash

        salt-run hx_incident.report INC-1732900000-web1
        salt-run hx_incident.report INC-1732900000-web1 path=/srv/postmortems/web1.md
    """
    try:
        path = hx_typed.report_path(path)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    d, inc, err = _find(incident)
    if err:
        return err
    text = d.secrets.scrub(hx_incidents.render_report(inc, time.time()))
    target = path or os.path.join(d.cfg["reports_dir"] or os.path.join(__opts__["cachedir"], "hx", "reports"),
                                  f"{incident}.md")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    hx_audit.write(__opts__, hx_runner.who(), "incident.report", inc["minion"], "written", incident=incident, path=target)
    return {"result": True, "path": target, "text": text}
