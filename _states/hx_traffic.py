"""
State for hx-ops traffic: ``hx_traffic.weights``.

.. code-block:: yaml

    demo:
      hx_traffic.weights:
        - servers:
            app1_green: 100
            app2_green: 100
            app1_blue: 0
            app2_blue: 0

The backend's runtime weights end up as given, applied in the safe order
(raise first, then lower) by ``hx_traffic.weights``.
"""

import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hx_traffic"


def __virtual__():
    if "hx_traffic.plan" not in __salt__:
        return (False, "hx_traffic state: the hx_traffic execution module is not loaded")
    return __virtualname__


def _describe(steps):
    return "; ".join(f"{s['step']}. {s['server']} {s['action']} {s['from']} -> {s['to']}" for s in steps)


def weights(name, servers, driver=None):
    """
    Ensure the runtime weights of backend ``name`` are ``servers`` (``{server: weight}``).

    name
        The backend (HAProxy) or upstream (nginx).
    servers
        ``{server: weight}``, weights 0..256; servers not listed keep theirs.
    driver
        ``haproxy`` or ``nginx``; default pillar ``hx:traffic:driver``.

    No change when the runtime already matches. Under ``test=True``: result
    None and ``changes: {plan: [...]}`` with the exact ordered steps; nothing
    is touched. Otherwise ``changes: {steps: [...], before, after}``.

    CLI Example:

    .. code-block:: bash

        salt lb1 state.single hx_traffic.weights demo servers='{app1_green: 100, app1_blue: 0}' test=True
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        plan = __salt__["hx_traffic.plan"](name, servers, driver=driver)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Cannot plan weights of {name}: {exc}"
        return ret
    if not plan["steps"]:
        ret["result"] = True
        ret["comment"] = f"{name}: weights already {plan['before']}"
        return ret
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = {"plan": plan["steps"], "before": plan["before"], "after": plan["after"]}
        ret["comment"] = f"{name}: would apply {_describe(plan['steps'])}"
        return ret
    try:
        res = __salt__["hx_traffic.weights"](name, servers, driver=driver)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Failed to set weights of {name}: {exc}"
        return ret
    ret["result"] = True
    ret["changes"] = {"steps": res["changes"], "before": res["before"], "after": res["after"]}
    ret["comment"] = f"{name}: applied {_describe(res['changes'])}"
    return ret
