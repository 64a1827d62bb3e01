"""How every hx-ops runner reports failure, so salt-run and orchestration agree.

salt-run exits with the ``retcode`` key of the runner's return dict, while
orchestration's ``salt.runner`` reads the job's success from
``__context__["retcode"]``; a failed runner sets both.
"""
import os

import hx_typed


def who(by=None, default="operator"):
    """The person an action is recorded for: ``by=`` as typed (checked, ValueError naming ``by``),
    else the user behind sudo, else the invoking user."""
    by = hx_typed.operator_text("by", by, 128)
    return by or os.environ.get("SUDO_USER") or os.environ.get("USER") or default


def finish(context, ret, code=2):
    """Mark ``ret`` (a dict with a boolean ``result``) failed when it is."""
    if not ret.get("result"):
        context["retcode"] = code
        ret["retcode"] = code
    return ret


def progress(runner_globals, message, log=None):
    """Show ``message`` to the salt-run user as it happens (a progress event).

    ``runner_globals`` is the runner's ``globals()``: ``__jid_event__`` is only
    injected when the runner runs under salt-run or orchestration.
    """
    jid_event = runner_globals.get("__jid_event__")
    if jid_event is not None:
        jid_event.fire_event({"message": message, "outputter": "hx_text"}, "progress")
    elif log is not None:
        log.info("%s", message)
