"""A malformed pillar through a real master and minion: the answer names the
pillar key, not "Passed invalid arguments" and the function's docstring; a
wrong typed argument still names the argument.

Its own master and one minion (ids unlike conftest's), so it shares nothing
with the other integration modules.
"""
import os

import pytest
import yaml

from tests.support.masterconf import install_conf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MID = "hx-cfgerr-m1"
USAGE = "Passed invalid arguments"
DOCSTRING = "CLI Example"


@pytest.fixture(scope="module")
def cfg_pillar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfgerr_pillar")
    (root / "top.sls").write_text(yaml.safe_dump({"base": {MID: ["m1"]}}), encoding="utf-8")
    (root / "m1.sls").write_text("{}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def cfg_master(salt_factories, cfg_pillar_root):
    conf = install_conf()
    conf["pillar_roots"] = {"base": [str(cfg_pillar_root)]}
    factory = salt_factories.salt_master_daemon("hx-cfgerr-master", overrides=conf)
    with factory.started():
        yield factory


@pytest.fixture(scope="module")
def cfg_minion(cfg_master):
    factory = cfg_master.salt_minion_daemon(MID)
    with factory.started():
        ret = cfg_master.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt=MID)
        assert ret.returncode == 0, ret
        yield factory


@pytest.fixture(scope="module")
def set_pillar(cfg_master, cfg_minion, cfg_pillar_root):
    cli = cfg_master.salt_cli(timeout=60)

    def _set(data):
        (cfg_pillar_root / "m1.sls").write_text(yaml.safe_dump(data), encoding="utf-8")
        ret = cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=MID)
        assert ret.returncode == 0, ret

    return _set


def _text(ret):
    return f"{ret.stdout}\n{ret.stderr}\n{ret.data}"


def test_malformed_pillar_names_the_key_without_the_docstring(cfg_master, cfg_minion, set_pillar):
    salt = cfg_master.salt_cli(timeout=60)
    call = cfg_minion.salt_call_cli(timeout=60)

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


def test_wrong_typed_argument_still_names_the_argument(cfg_minion, set_pillar):
    call = cfg_minion.salt_call_cli(timeout=60)
    set_pillar({"hx": {"services": {"web": {}}}})
    ret = call.run("hx_service.start", "nope")
    text = _text(ret)
    assert ret.returncode != 0, ret
    assert USAGE in text and "unknown service 'nope'" in text, text


def test_bad_hx_ops_yaml_names_the_key_with_a_nonzero_exit(cfg_master):
    run = cfg_master.salt_run_cli(timeout=60)
    ret = run.run("saltutil.sync_all")
    assert ret.returncode == 0, ret
    path = os.path.join(cfg_master.config_dir, "hx_ops.yaml")
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
