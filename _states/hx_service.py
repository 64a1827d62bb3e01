"""
State for hx-ops services: ``hx_service.running``.

.. code-block:: yaml

    demo-blue:
      hx_service.running: []

    web-stack:
      hx_service.running:
        - names:
          - demo-blue
          - demo-green

The service and everything it ``requires`` (pillar ``hx:services``) end up
running and healthy, started in dependency order; a running but unhealthy
service is recovered through ``hx_service.recover`` (which spends its restart
budget and may quarantine it).
"""

import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hx_service"


def __virtual__():
    if "hx_service.plan" not in __salt__:
        return (False, "hx_service state: the hx_service execution module is not loaded")
    return __virtualname__


def running(name, timeout=None):
    """
    Ensure the service ``name`` (and what it requires) is running and healthy.

    name
        A service declared in pillar ``hx:services``.
    timeout
        Seconds to wait for each started service's health (default: its
        ``start_timeout``).

    Under ``test=True`` the result is None when something would change and
    ``changes`` holds the plan; nothing is touched. ``changes`` lists
    ``started`` and ``recovered`` services.

    CLI Example:

    .. code-block:: bash

        salt app1 state.single hx_service.running demo-blue test=True
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        plan = __salt__["hx_service.plan"](name)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Cannot plan {name}: {exc}"
        return ret
    todo = [(svc, p["would"]) for svc, p in plan["services"].items() if p["would"] != "none"]
    quarantined = [svc for svc, would in todo if would == "quarantined"]
    if quarantined:
        ret["comment"] = (
            f"{', '.join(quarantined)} quarantined after repeated failures; "
            f"see hx_service.budget, lift with hx_service.release"
        )
        return ret
    if not todo:
        ret["result"] = True
        ret["comment"] = f"{name} is running and healthy (order: {', '.join(plan['order'])})"
        return ret
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = {"plan": [{"service": svc, "action": would} for svc, would in todo]}
        ret["comment"] = "Would " + "; ".join(f"{would} {svc}" for svc, would in todo)
        return ret

    started, recovered = [], []
    for svc, would in todo:
        try:
            if would == "start":
                res = __salt__["hx_service.start"](svc, timeout=timeout)
                started.extend(n for n, r in res["services"].items() if r["action"] == "started")
            else:
                res = __salt__["hx_service.recover"](svc)
                if res["outcome"] == "recovered":
                    recovered.append(svc)
                elif res["outcome"] != "already_healthy":
                    ret["comment"] = f"Recovery of {svc} ended {res['outcome']}: " + (
                        (res.get("quarantine") or {}).get("detail") or res["evidence"]["after"].get("message", "")
                    )
                    break
        except (CommandExecutionError, SaltInvocationError) as exc:
            ret["comment"] = f"{would} {svc} failed: {exc}"
            break
    else:
        ret["result"] = True
        ret["comment"] = f"{name} is running and healthy"
    if started:
        ret["changes"]["started"] = list(dict.fromkeys(started))
    if recovered:
        ret["changes"]["recovered"] = recovered
    return ret
