"""salt://hx/app through a real master and minion: the slots of an app become
supervisord programs of the host's real supervisord, idempotently."""
import os
import sys

import pytest

from tests.support.supervisor import Supervisor

VENV = os.path.dirname(os.path.dirname(sys.executable))


@pytest.fixture
def host(tmp_path, pillar):
    include = tmp_path / "conf.d"
    sup = Supervisor(tmp_path / "sup", {}, include_dir=str(include))
    (tmp_path / "sup").mkdir()
    sup.start()
    pillar.set("hx-m1", {"hx": {
        "supervisord": {"conf": sup.conf, "bin_env": VENV, "include_dir": str(include), "log_dir": str(tmp_path)},
        "services": {"web-blue": {"provider": "supervisord", "stop_timeout": 7}},
        "apps": {"web": {
            "root": str(tmp_path / "apps"),
            "address": "127.0.0.31",
            "slots": {"blue": {"port": 18080, "service": "web-blue"}, "green": {"port": 18081, "service": "web-green"}},
            "run": "/bin/sleep 3600 {slot_dir} {address}:{port} {color} {app}",
        }},
    }})
    yield sup, include
    sup.stop()


def _states(ret):
    return list(ret.data.values()) if isinstance(ret.data, dict) else []


def test_app_slots_become_supervisord_programs(salt_cli, host):
    sup, include = host
    planned = salt_cli.run("state.apply", "hx.app", "test=True", minion_tgt="hx-m1")
    assert planned.returncode == 0, planned
    assert any(s["result"] is None for s in _states(planned)), planned.data
    assert not include.exists() or not os.listdir(include), "test=True wrote files"

    applied = salt_cli.run("state.apply", "hx.app", minion_tgt="hx-m1")
    assert applied.returncode == 0, applied
    assert all(s["result"] is True for s in _states(applied)), applied.data
    status = sup.ctl("status").stdout
    assert "web-blue" in status and "web-green" in status, status
    conf = (include / "hx-app-web.conf").read_text()
    root = host[1].parent / "apps"
    assert f"command=/bin/sleep 3600 {root}/web/blue 127.0.0.31:18080 blue web" in conf
    assert "autorestart=false" in conf
    assert "stopwaitsecs=12" in conf, "stop_timeout 7 + 5 s so hx, not supervisord, decides the kill"

    again = salt_cli.run("state.apply", "hx.app", minion_tgt="hx-m1")
    assert all(not s["changes"] for s in _states(again)), again.data


def test_bad_run_template_is_refused_by_name(salt_cli, pillar, host):
    sup, _ = host
    data = pillar.data["hx-m1"]
    data["hx"]["apps"]["web"]["run"] = "/bin/sleep 3600"
    pillar.set("hx-m1", data)
    ret = salt_cli.run("hx_release.versions", "web", minion_tgt="hx-m1")
    assert ret.returncode != 0
    assert "hx:apps:web" in ret.stdout and "run" in ret.stdout and "{slot_dir}" in ret.stdout
