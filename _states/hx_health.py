"""
Health gate for orchestration: wait until configured health checks pass.

.. code-block:: yaml

    wait for green:
      hx_health.passing:
        - checks: [app_http, sshd]
        - timeout: 120
        - interval: 2

From an orchestration SLS, run it on the target minions with ``salt.state``
(an SLS holding the state above) or ``salt.function`` calling
``state.single`` with ``fun: hx_health.passing``; either way set
``expect_minions: True`` so a down minion fails the step.
"""
import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

import hx_errors
import hx_numbers

log = logging.getLogger(__name__)

__virtualname__ = "hx_health"


def __virtual__():
    if "hx_health.check" not in __salt__:
        return (False, "hx_health: the hx_health execution module is not available")
    return __virtualname__


def _failing(results, allow_warning):
    accepted = ("ok", "warning") if allow_warning else ("ok",)
    return {
        name: entry
        for name, entry in sorted(results.get("checks", {}).items())
        if entry.get("status") not in accepted
    }


def _describe(entries):
    return "; ".join(
        f"{name}={entry.get('status')} ({entry.get('message')})" for name, entry in entries.items()
    )


def passing(name, checks=None, timeout=60, interval=2, allow_warning=False):
    """
    Wait until every named health check (default: all configured in pillar
    ``hx:health:checks``) reports ``ok`` — or ``ok``/``warning`` with
    ``allow_warning: True``.  ``unknown`` never passes: an unmeasured check
    proves nothing.  A system check passes only when all its metrics do.

    name
        a label for the gate
    checks
        list of check names
    timeout
        seconds to keep polling (0: one poll)
    interval
        seconds between polls
    allow_warning
        accept ``warning`` as passing

    Fails at once, without waiting, on an unknown check name or a malformed
    pillar (retrying cannot fix configuration).  Changes nothing, so
    ``changes`` is always empty.  Under ``test=True`` no check is run; the
    comment says what would be waited for.
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    if isinstance(checks, str):
        checks = [checks]
    try:
        timeout = hx_numbers.check("timeout", timeout, hx_numbers.HEALTH_WAIT["timeout"], text=True)
        interval = hx_numbers.check("interval", interval, hx_numbers.HEALTH_WAIT["interval"], text=True)
    except ValueError as exc:
        ret["comment"] = str(exc)
        return ret
    accepted = "ok or warning" if allow_warning else "ok"

    try:
        # Validates the config and names without running any probe.
        selected = __salt__["hx_health.checks"](names=checks)
    except (CommandExecutionError, SaltInvocationError) as exc:
        ret["comment"] = f"Cannot gate on health checks: {exc}"
        return ret
    listed = ", ".join(c["name"] for c in selected)

    if __opts__.get("test"):
        ret["result"] = None
        ret["comment"] = (
            f"Would wait up to {timeout:g} s, polling every {interval:g} s, "
            f"until health checks {listed} are all {accepted}"
        )
        return ret

    deadline = time.monotonic() + timeout
    started = time.monotonic()
    polls = 0
    last_failing, last_error = {}, None
    while True:
        polls += 1
        try:
            results = __salt__["hx_health.check"](names=checks)
            last_error = None
        except (SaltInvocationError, hx_errors.ConfigError) as exc:
            # Neither a bad argument nor a bad pillar fixes itself: fail now.
            ret["comment"] = f"Cannot gate on health checks: {exc}"
            return ret
        except CommandExecutionError as exc:
            # Operational trouble may clear up; keep polling until timeout.
            last_error, results = str(exc), None
            log.warning("hx_health.passing %s: poll %d failed: %s", name, polls, exc)
        if results is not None:
            last_failing = _failing(results, allow_warning)
            if not last_failing and results.get("checks"):
                ret["result"] = True
                ret["comment"] = (
                    f"Health checks {listed} all {accepted} after "
                    f"{time.monotonic() - started:.1f} s ({polls} poll(s))"
                )
                return ret
        if time.monotonic() + interval > deadline:
            break
        time.sleep(interval)

    detail = last_error or _describe(last_failing) or "no check results"
    ret["comment"] = (
        f"Timed out after {time.monotonic() - started:.1f} s ({polls} poll(s)) "
        f"waiting for health checks {listed} to be {accepted}; still failing: {detail}"
    )
    return ret
