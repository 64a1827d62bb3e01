"""How every hx-ops runner reports failure, so salt-run and orchestration agree.

salt-run exits with the ``retcode`` key of the runner's return dict, while
orchestration's ``salt.runner`` reads the job's success from
``__context__["retcode"]``; a failed runner sets both.
"""


def finish(context, ret, code=2):
    """Mark ``ret`` (a dict with a boolean ``result``) failed when it is."""
    if not ret.get("result"):
        context["retcode"] = code
        ret["retcode"] = code
    return ret
