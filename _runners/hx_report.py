"""Fleet reports for operators: health of every targeted minion in one table.

CLI Example:

.. code-block:: bash

    salt-run hx_report.health
    salt-run hx_report.health tgt='app*'
"""
import logging

import hx_fleet
import hx_intent
import hx_numbers
import hx_runner
import hx_typed

log = logging.getLogger(__name__)

__virtualname__ = "hx_report"

HEALTH_COLUMNS = ("minion", "check", "status", "value", "threshold", "message")


def __virtual__():
    return __virtualname__


def _threshold_text(threshold):
    if isinstance(threshold, dict):
        return "/".join("-" if threshold.get(k) is None else f"{threshold[k]:g}" for k in ("warning", "critical"))
    return threshold


def _health_rows(mid, ret, retcode):
    if not isinstance(ret, dict) or "checks" not in ret:
        # A string here is the minion's error text (module missing, bad pillar, ...).
        return [{"minion": mid, "check": "-", "status": "error", "message": str(ret)[:200]}]
    rows = []
    for name, check in sorted(ret["checks"].items()):
        rows.append(
            {
                "minion": mid,
                "check": name,
                "status": check.get("status"),
                "value": check.get("value"),
                "threshold": _threshold_text(check.get("threshold")),
                "message": check.get("message"),
            }
        )
    return rows


def _typed(tgt, tgt_type, timeout):
    """The checked ``(tgt, tgt_type, timeout)``, or the refusal naming the argument."""
    try:
        tgt, tgt_type = hx_typed.target(tgt, tgt_type)
        timeout = hx_numbers.check("timeout", timeout, hx_numbers.REPORT_RUNNER["timeout"], text=True)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    return tgt, tgt_type, timeout


def health(tgt="*", tgt_type="glob", timeout=30):
    """
    Run ``hx_health.check`` on the targeted minions and show one table:
    minion, check, status, value, threshold. Targeted minions that did not
    answer are listed with status ``no answer``.

    Sets a non-zero exit code when any check is critical, a minion failed or a
    minion did not answer.

    tgt
        Minions to ask (default ``*``).
    tgt_type
        Salt target type (``glob``, ``list``, ``grain``, ``compound``...).
    timeout
        Seconds to wait for the minions' answers.

    CLI Example:

    .. code-block:: bash

        salt-run hx_report.health
        salt-run hx_report.health tgt='G@hx_roles:app' tgt_type=compound
    """
    checked = _typed(tgt, tgt_type, timeout)
    if isinstance(checked, dict):
        return checked
    tgt, tgt_type, timeout = checked
    outcome = hx_fleet.call(__opts__, tgt, "hx_health.check", tgt_type=tgt_type, timeout=timeout)
    rows = []
    per_minion = {}
    for mid in sorted(outcome["returns"]):
        data = outcome["returns"][mid]
        rows.extend(_health_rows(mid, data["ret"], data["retcode"]))
        ret = data["ret"]
        per_minion[mid] = ret.get("status", "error") if isinstance(ret, dict) else "error"
    for mid in outcome["missing"]:
        rows.append({"minion": mid, "check": "-", "status": "no answer"})
        per_minion[mid] = "no answer"
    table = hx_fleet.render_table(HEALTH_COLUMNS, rows)
    hx_runner.progress(globals(), table, log)
    bad = sorted(m for m, s in per_minion.items() if s in ("critical", "error", "no answer"))
    result = not bad and bool(per_minion)
    ret = {
        "result": result,
        "minions": per_minion,
        "missing": outcome["missing"],
        "rows": rows,
        "comment": (
            "no minion matched " + repr(tgt)
            if not per_minion
            else ("all targeted minions answered, none critical" if result else "not healthy: " + ", ".join(bad))
        ),
    }
    return hx_runner.finish(__context__, ret)


SERVICE_COLUMNS = ("minion", "service", "provider", "state", "pid", "uptime_s", "health", "chain", "quarantine",
                   "intent")


def _intent_text(intent):
    if not intent or intent.get("want") != hx_intent.DOWN:
        return None
    return f"down: {intent.get('owner')} ({intent.get('reason')})"


def _service_rows(mid, ret):
    if not isinstance(ret, dict):
        return [{"minion": mid, "service": "-", "state": "error", "health": str(ret)[:200], "attention": "error"}]
    rows = []
    for name, svc in sorted(ret.items()):
        quarantine = svc.get("quarantine")
        rows.append(
            {
                "minion": mid,
                "service": name,
                "provider": svc.get("provider"),
                "state": svc.get("state"),
                "pid": svc.get("pid"),
                "uptime_s": svc.get("uptime_s"),
                "health": (svc.get("health") or {}).get("status"),
                "chain": " > ".join(svc.get("chain") or []) or None,
                "quarantine": "yes" if quarantine else None,
                "intent": _intent_text(svc.get("intent")),
                "attention": hx_intent.attention(svc.get("state"), (svc.get("health") or {}).get("status"),
                                                 quarantine, svc.get("intent")),
            }
        )
    return rows


def services(tgt="*", tgt_type="glob", timeout=30):
    """
    Run ``hx_service.discover`` on the targeted minions and show the managed
    services of the fleet as one table: minion, service, provider, state, pid,
    uptime, health, dependency chain, quarantine. Targeted minions that did
    not answer are listed with state ``no answer``.

    Sets a non-zero exit code when a service is not running, unhealthy or
    quarantined, a minion failed, or a minion did not answer. A service
    stopped on purpose (``hx_service.stop``, a parked color, a maintenance
    run) is shown with its intent and does not fail the report; one that
    runs although intended down does.

    tgt
        Minions to ask (default ``*``).
    tgt_type
        Salt target type.
    timeout
        Seconds to wait for the minions' answers.

    CLI Example:

    .. code-block:: bash

        salt-run hx_report.services
        salt-run hx_report.services tgt='app*'
    """
    checked = _typed(tgt, tgt_type, timeout)
    if isinstance(checked, dict):
        return checked
    tgt, tgt_type, timeout = checked
    outcome = hx_fleet.call(__opts__, tgt, "hx_service.discover", tgt_type=tgt_type, timeout=timeout)
    rows = []
    for mid in sorted(outcome["returns"]):
        rows.extend(_service_rows(mid, outcome["returns"][mid]["ret"]))
    for mid in outcome["missing"]:
        rows.append({"minion": mid, "service": "-", "state": "no answer", "attention": "no answer"})
    hx_runner.progress(globals(), hx_fleet.render_table(SERVICE_COLUMNS, rows), log)
    bad = [
        f"{r['minion']}/{r['service']} ({r['attention']})"
        for r in rows
        if r.get("attention")
    ]
    ret = {
        "result": not bad,
        "rows": rows,
        "missing": outcome["missing"],
        "comment": "every managed service runs and is healthy" if not bad else "needs attention: " + ", ".join(bad),
    }
    return hx_runner.finish(__context__, ret)
