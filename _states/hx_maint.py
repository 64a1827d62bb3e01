"""
Maintenance-window gate: any SLS can refuse to change things outside a window.

.. code-block:: yaml

    maintenance window:
      hx_maint.window: []

    upgrade nginx:
      pkg.latest:
        - name: nginx
        - require:
          - hx_maint: maintenance window

Outside a window the gate fails, so every state that requires it is not run
("One or more requisite failed").  ``emergency: True`` opens the gate and is
recorded (minion log and audit log).
"""
import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hx_maint"


def __virtual__():
    if "hx_maint.window_open" not in __salt__:
        return (False, "hx_maint: the hx_maint execution module is not available")
    return __virtualname__


def window(name, emergency=False):
    """
    Pass inside a maintenance window (pillar ``hx:maintenance``), fail outside
    it with the reason and the next opening.

    name
        a label for the gate
    emergency
        bypass the windows and blackouts (recorded)

    Never changes anything, so ``changes`` is always empty.  Under
    ``test=True`` the result is None and the comment says whether the gate
    would pass.  Malformed pillar fails the gate with the bad key named.
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        status = __salt__["hx_maint.window_open"](emergency=emergency)
    # A bad pillar is a ConfigError (CommandExecutionError), a bad emergency= a usage error.
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Cannot evaluate maintenance windows: {exc}"
        return ret
    if status["open"]:
        comment = f"Maintenance allowed: {status['reason']}"
        if status.get("closes_at"):
            comment += f" (closes {status['closes_at']})"
    else:
        comment = f"Maintenance not allowed: {status['reason']}"
    if __opts__.get("test"):
        ret["result"] = None
        ret["comment"] = ("Would pass. " if status["open"] else "Would fail. ") + comment
        return ret
    ret["result"] = bool(status["open"])
    ret["comment"] = comment
    return ret
