"""Master-side calls to the fleet that account for every targeted minion.

A plain LocalClient call only returns the minions that answered; a rollout or
a report must also know which targeted minions stayed silent (see "Down
minions pass silently" in docs/architecture.md, measured traps). Used by every hx-ops runner.
"""
import logging

import salt.client
import salt.utils.minions

log = logging.getLogger(__name__)


def expected_minions(opts, tgt, tgt_type="glob"):
    """The accepted minions a target matches, whether they are up or not."""
    found = salt.utils.minions.CkMinions(opts).check_minions(tgt, tgt_type)
    return sorted(found.get("minions", []))


def call(opts, tgt, fun, arg=(), kwarg=None, tgt_type="glob", timeout=30):
    """Run ``fun`` on the target and sort the outcome per minion.

    Returns ``{"expected": [...], "returns": {id: {"ret", "retcode"}},
    "missing": [...]}`` where ``missing`` lists targeted minions that did not
    answer within ``timeout``.
    """
    expected = expected_minions(opts, tgt, tgt_type)
    returns = {}
    if expected:
        with salt.client.get_local_client(opts["conf_file"]) as client:
            raw = client.cmd(
                tgt,
                fun,
                arg=list(arg),
                kwarg=kwarg or {},
                tgt_type=tgt_type,
                timeout=timeout,
                full_return=True,
            )
        for mid, data in (raw or {}).items():
            if isinstance(data, dict) and data.get("out") == "no_return":
                continue  # a row the client made up for a silent minion
            if isinstance(data, dict) and "ret" in data:
                returns[mid] = {"ret": data["ret"], "retcode": data.get("retcode", 0)}
            else:
                returns[mid] = {"ret": data, "retcode": 0}
    missing = sorted(set(expected) - set(returns))
    if missing:
        log.warning("%s on %s: no answer from %s", fun, tgt, ", ".join(missing))
    return {"expected": expected, "returns": returns, "missing": missing}


def render_table(columns, rows):
    """A plain-text table; ``rows`` are dicts keyed by column name."""
    cells = [[str(col) for col in columns]]
    for row in rows:
        cells.append(["" if row.get(col) is None else str(row.get(col)) for col in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for n, line in enumerate(cells):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
