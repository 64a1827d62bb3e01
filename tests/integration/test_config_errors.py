"""A malformed pillar through a real master and minion: the answer names the
pillar key, not "Passed invalid arguments" and the function's docstring; a
wrong typed argument still names the argument.

On the shared master and minion hx-m1; each test's pillar is cleared after it
and the master's hx_ops.yaml removed.
"""
import os

import pytest
import yaml


MID = "hx-m1"
USAGE = "Passed invalid arguments"
DOCSTRING = "CLI Example"


@pytest.fixture
def set_pillar(pillar):
    """hx-m1's pillar for one test (the shared master and minions; cleared afterwards)."""
    return lambda data: pillar.set(MID, data)


def _text(ret):
    return f"{ret.stdout}\n{ret.stderr}\n{ret.data}"


def test_malformed_pillar_names_the_key_without_the_docstring(master, minions, set_pillar):
    salt = master.salt_cli(timeout=60)
    call = minions[MID].salt_call_cli(timeout=60)

    set_pillar({"hx": {"services": {"web": {"healthz": ["x"]}}}})
    for ret in (salt.run("hx_service.status", minion_tgt=MID), call.run("hx_service.status")):
        text = _text(ret)
        assert ret.returncode != 0, ret
        assert "hx:services:web:healthz: unknown key" in text, text
        assert USAGE not in text and DOCSTRING not in text, text

    set_pillar({"hx": {"traffic": {"driver": "bogus"}}})
    ret = call.run("hx_traffic.servers")
    text = _text(ret)
    assert ret.returncode != 0, ret
    assert "hx:traffic:driver: must be one of haproxy, nginx, got 'bogus'" in text, text
    assert USAGE not in text and DOCSTRING not in text, text


def test_wrong_typed_argument_still_names_the_argument(minions, set_pillar):
    call = minions[MID].salt_call_cli(timeout=60)
    set_pillar({"hx": {"services": {"web": {}}}})
    ret = call.run("hx_service.start", "nope")
    text = _text(ret)
    assert ret.returncode != 0, ret
    assert USAGE in text and "unknown service 'nope'" in text, text


def test_bad_hx_ops_yaml_names_the_key_with_a_nonzero_exit(master, minions):
    run = master.salt_run_cli(timeout=60)
    path = os.path.join(master.config_dir, "hx_ops.yaml")
    assert not os.path.exists(path), "another test left the master's hx_ops.yaml behind"
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump({"hx_incident": {"escalation_timout": 60}}, fh)
    try:
        ret = run.run("hx_incident.list")
    finally:
        os.unlink(path)
    text = _text(ret)
    assert ret.returncode != 0, ret
    assert "bad configuration: hx_incident:escalation_timout: unknown key" in text, text
    assert USAGE not in text and DOCSTRING not in text and "Traceback" not in text, text



@pytest.mark.parametrize("args, named", [
    (("hx_incident.list", "since=abc"), "since: must be a number from -316224000 to 100000000000 s, got 'abc'"),
    (("hx_incident.list", "since=nan"), "since: must be a number"),
    (("hx_incident.list", "status=opne"), "status: must be one or more (comma-separated) of open,"),
    (("hx_incident.report", "INC-1-hx-m1", "path=/etc/passwd"), "path: must be an absolute path of a .md file"),
    (("hx_maint.status", "run=../../x"), "run: must be a maintenance run id"),
])
def test_typed_runner_arguments_are_refused_naming_the_argument(master, minions, args, named):
    ret = master.salt_run_cli(timeout=60).run(*args)
    text = _text(ret)
    assert ret.returncode != 0, ret
    assert named in text, text
    assert "Traceback" not in text and USAGE not in text, text


def test_a_typed_minion_id_never_leaves_the_cache(master, minions, tmp_path):
    """``minion=`` is a cache key: a ``..`` path that would point at a file outside the budget bank
    is refused, naming the argument, and the file stays."""
    bait = tmp_path / "bait.p"
    bait.write_bytes(b"\x80")
    bank = os.path.join(master.config["cachedir"], "hx", "remediate", "budget")
    ret = master.salt_run_cli(timeout=60).run("hx_remediate.release", f"minion={os.path.relpath(tmp_path / 'bait', bank)}")
    assert ret.returncode != 0, ret
    assert "minion: must be one minion id" in _text(ret), ret
    assert bait.exists(), "a typed minion id removed a file outside the cache"
