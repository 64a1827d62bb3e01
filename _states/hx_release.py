"""
State for hx-ops releases: ``hx_release.deployed``.

.. code-block:: yaml

    demo-green:
      hx_release.deployed:
        - app: demo
        - version: 1.1.0
        - slot: green

The slot ends up pointing at the release and, when the slot has a service,
that service runs it (restarted through ``hx_service.restart``, which waits
for health). Nothing changes when the slot already points at the version and
its process is running, healthy and reports that version.
"""

import logging

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "hx_release"


def __virtual__():
    if "hx_release.install" not in __salt__:
        return (False, "hx_release state: the hx_release execution module is not loaded")
    return __virtualname__


def deployed(name, app, version, slot, source=None, checksum=None):
    """
    Ensure ``slot`` of ``app`` runs ``version``.

    name
        State id (free text).
    app, version, slot
        As for ``hx_release.install``.
    source, checksum
        Override pillar ``hx:apps:<app>:source`` / ``checksums``.

    Under ``test=True`` the result is None when something would change and
    ``changes.plan`` lists ``would`` (install | link | restart); nothing is
    touched. ``changes`` after a real run: ``{version: {old, new}, installed,
    restarted, pruned}``.

    CLI Example:

    .. code-block:: bash

        salt app1 state.single hx_release.deployed demo-green app=demo version=1.1.0 slot=green test=True
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        plan = __salt__["hx_release.plan"](app, version, slot, source=source, checksum=checksum)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Cannot plan {app} {version} in {slot}: {exc}"
        return ret
    if not plan["would"]:
        ret["result"] = True
        ret["comment"] = f"{app} slot {slot} already runs {version}"
        return ret
    if plan["checksum_match"] is False:
        ret["comment"] = (
            f"{app} {version} is installed with a different checksum than expected; "
            f"remove it first (hx_release.remove {app} {version})"
        )
        return ret
    if __opts__.get("test"):
        ret["result"] = None
        ret["changes"] = {"plan": {k: plan[k] for k in ("would", "link", "running_version", "installed", "source")}}
        ret["comment"] = f"Would {', '.join(plan['would'])} {app} {version} in slot {slot} (now {plan['link']})"
        return ret
    try:
        res = __salt__["hx_release.install"](app, version, slot, source=source, checksum=checksum)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = str(exc)
        # The install may have moved the link before the restart failed: say so.
        try:
            after = __salt__["hx_release.plan"](app, version, slot, source=source, checksum=checksum)
        except (CommandExecutionError, SaltInvocationError):
            return ret
        if after["link"] != plan["link"]:
            ret["changes"] = {"version": {"old": plan["link"], "new": after["link"]}}
        return ret
    changes = {}
    if res["link_changed"]:
        changes["version"] = {"old": res["previous"], "new": version}
    if res["installed"]:
        changes["installed"] = res["release_dir"]
    if res["restarted"]:
        changes["restarted"] = res["service"]
    if res["pruned"]:
        changes["pruned"] = res["pruned"]
    ret.update(result=True, changes=changes,
               comment=f"{app} slot {slot} runs {version} (running version: {res['running_version']})")
    return ret
