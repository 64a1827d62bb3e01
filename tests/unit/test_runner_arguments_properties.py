"""Every argument an operator types to the incident, remediation, maintenance and report runners
(docs/reference/bad-input.md), fed hostile values by hypothesis.

The runners are loaded as Salt loads them (tests/support/fakefleet.py: ``__opts__`` with the
cache and audit log in a temporary directory, every minion call recorded). For each value the
runner returns, never raises; a refusal is ``result: False`` with retcode 2 and names the
argument, and a refused value changed nothing: no minion was called, no audit line written, no
file of the cache touched.
"""
import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.support.fakefleet import load_any_runner
from tests.support.hostile import hostile

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=40,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Beside the shared hostile values: ids and names the runners take (an id with a traversal, a
# typo of a status or priority, a run id with a trailing newline, a huge string).
HOSTILE = hostile("opne", "P9", "INC-1-x/../../y", "maint-20240601T020000-ab12cd\n", ["../x"], "x" * 5000,
                  alphabet="abc0123456789.-_/@*\n;$`|\\ ")


INC = "INC-1732900000-web1"
# (runner, function, the arguments that are fixed, the argument under test)
CASES = [
    ("hx_incident", "list_", {}, "status"),
    ("hx_incident", "list_", {}, "severity"),
    ("hx_incident", "list_", {}, "minion"),
    ("hx_incident", "list_", {}, "since"),
    ("hx_incident", "show", {}, "incident"),
    ("hx_incident", "ack", {"incident": INC}, "by"),
    ("hx_incident", "ack", {"incident": INC}, "note"),
    ("hx_incident", "resolve", {"incident": INC}, "incident"),
    ("hx_incident", "report", {"incident": INC}, "path"),
    ("hx_remediate", "release", {}, "minion"),
    ("hx_remediate", "release", {"minion": "web1"}, "by"),
    ("hx_remediate", "disable", {}, "reason"),
    ("hx_remediate", "enable", {}, "by"),
    ("hx_maint", "status", {}, "run"),
    ("hx_maint", "plan", {"tgt_type": "glob"}, "tgt"),
    ("hx_maint", "plan", {"tgt": "app*"}, "tgt_type"),
    ("hx_report", "health", {}, "tgt"),
    ("hx_report", "health", {}, "tgt_type"),
    ("hx_report", "services", {}, "timeout"),
]
# Refusals that are about the world, not the typed value: the value was fine.
NOT_ABOUT_THE_VALUE = ("no incident ", "no maintenance run ", "matches no minion", "matches no accepted minion",
                       "no minion matched")


class Calls(list):
    def __call__(self, opts, tgt, fun, arg=(), kwarg=None, tgt_type="glob", timeout=30):  # pylint: disable=unused-argument
        self.append((tgt, fun))
        return {"expected": [], "returns": {}, "missing": []}


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    calls = Calls()
    with pytest.MonkeyPatch.context() as mp:
        loaded = {}
        for name in sorted({c[0] for c in CASES}):
            mod = load_any_runner(tmp_path_factory.mktemp(name), name, calls, mp)
            mp.setattr(mod.hx_fleet, "expected_minions", lambda *_a, **_k: [])
            loaded[name] = mod
        yield loaded, calls


def _tree(root):
    out = {}
    for base, _dirs, files in os.walk(root):
        for f in files:
            path = os.path.join(base, f)
            if not f.endswith(".lock"):
                with open(path, "rb") as fh:
                    out[path] = fh.read()
    return out


def _state(mod):
    audit = mod.__opts__["hx_audit_log"]
    size = os.path.getsize(audit) if os.path.exists(audit) else 0
    return size, _tree(mod.__opts__["cachedir"])


@pytest.mark.parametrize("runner, fun, fixed, arg", CASES, ids=[f"{r}.{f.rstrip('_')}-{a}" for r, f, _x, a in CASES])
@FUZZ
@given(value=HOSTILE)
def test_a_typed_argument_is_used_or_refused_by_name(runners, runner, fun, fixed, arg, value):
    loaded, calls = runners
    mod = loaded[runner]
    mod.__context__.clear()
    calls.clear()
    before = _state(mod)
    ret = getattr(mod, fun)(**dict(fixed, **{arg: value}))
    assert isinstance(ret, dict), ret
    if ret.get("result") is not False:
        return
    assert ret["retcode"] == 2 and mod.__context__["retcode"] == 2, ret
    comment = ret["comment"]
    if any(phrase in comment for phrase in NOT_ABOUT_THE_VALUE):
        return
    assert comment.startswith(f"{arg}: must be ") or comment.startswith(f"{arg}: "), (value, comment)
    assert calls == [], "a refused value reached a minion"
    assert _state(mod) == before, "a refused value changed the audit log or the cache"
