"""supervisord's state over its own socket (_utils/hx_supervisor.py), against a real supervisord.

hx_service asks this way first and falls back to supervisorctl; both must
say the same about the same program, whatever state it is in.
"""
import os
import signal
import sys

import pytest

import hx_supervisor
from tests.support.loader import LoadedMinion, minion_opts
from tests.support.supervisor import Supervisor, demo_command
from tests.support.httpserver import free_port
from tests.support.wait import wait_for

VENV = os.path.dirname(os.path.dirname(sys.executable))


@pytest.fixture(scope="module")
def sup(tmp_path_factory):
    programs = {"runner": {"command": demo_command(free_port())}, "idle": {"command": demo_command(free_port())},
                "victim": {"command": demo_command(free_port())}}
    s = Supervisor(tmp_path_factory.mktemp("sv-rpc"), programs).start()
    assert s.ctl("start", "runner", "victim").returncode == 0
    yield s
    s.stop()


def _conf(tmp_path, text):
    path = tmp_path / "supervisord.conf"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, expected", [
    ("[supervisorctl]\nserverurl=unix:///run/sv.sock\n", "/run/sv.sock"),
    ("[unix_http_server]\nfile=/run/sv.sock ; a comment\n", "/run/sv.sock"),
    ("[unix_http_server]\nfile=%(here)s/sv.sock\n", "{here}/sv.sock"),
    ("[unix_http_server]\nfile=/run/sv.sock\nusername=ops\npassword=x\n", None),
    ("[supervisorctl]\nserverurl=http://127.0.0.1:9001\n", None),
    ("[unix_http_server]\nfile=%(ENV_HOME)s/sv.sock\n", None),
    ("[supervisord]\nnodaemon=true\n", None),
    ("this is not an ini file\n", None),
])
def test_socket_path_is_the_plain_unix_socket_or_none(tmp_path, text, expected):
    conf = _conf(tmp_path, text)
    want = expected.format(here=str(tmp_path)) if expected else None
    assert hx_supervisor.socket_path(conf) == want


def test_socket_path_of_a_missing_config_is_none(tmp_path):
    assert hx_supervisor.socket_path(str(tmp_path / "nope.conf")) is None
    assert hx_supervisor.socket_path(None) is None


def test_process_info_matches_supervisorctl(sup):
    path = hx_supervisor.socket_path(sup.conf)
    info = hx_supervisor.process_info(path, "runner")
    assert info["statename"] == "RUNNING"
    assert info["pid"] == sup.pid("runner")
    assert hx_supervisor.process_info(path, "idle")["statename"] == "STOPPED"


def test_unknown_program_and_unreachable_socket_are_told_apart(sup, tmp_path):
    path = hx_supervisor.socket_path(sup.conf)
    with pytest.raises(hx_supervisor.UnknownProgram):
        hx_supervisor.process_info(path, "no-such-program")
    with pytest.raises(OSError):
        hx_supervisor.process_info(str(tmp_path / "absent.sock"), "runner")


@pytest.fixture
def hx_service(sup, tmp_path):
    pillar = {"hx": {"supervisord": {"conf": sup.conf, "bin_env": VENV},
                     "services": {n: {"provider": "supervisord"} for n in ("runner", "idle", "victim", "ghost")}}}
    return LoadedMinion(minion_opts(tmp_path), pillar).mods


def _both(mods, monkeypatch, names):
    """hx_service.status by socket, then by supervisorctl (socket lookup switched off)."""
    by_socket = mods["hx_service.status"](names)
    module = mods["hx_service.status"].__globals__["hx_supervisor"]
    with monkeypatch.context() as patch:
        patch.setattr(module, "socket_path", lambda conf: None)
        by_ctl = mods["hx_service.status"](names)
    return by_socket, by_ctl


def test_hx_service_status_is_the_same_by_socket_and_by_supervisorctl(sup, hx_service, monkeypatch):
    pid = sup.pid("victim")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: sup.pid("victim") is None, 10, "supervisord to see the kill")
    by_socket, by_ctl = _both(hx_service, monkeypatch, ["runner", "idle", "victim"])
    for name in ("runner", "idle", "victim"):
        a, b = by_socket[name], by_ctl[name]
        assert (a["state"], a["raw_state"], a["pid"]) == (b["state"], b["raw_state"], b["pid"]), (name, a, b)
        if a["uptime_s"] is not None:
            assert abs(a["uptime_s"] - b["uptime_s"]) <= 2
    assert by_socket["runner"]["state"] == "running" and by_socket["runner"]["pid"] == sup.pid("runner")
    assert by_socket["idle"]["state"] == "stopped"
    assert by_socket["victim"]["state"] == "failed", "killed = EXITED = failed, not stopped on purpose"


def test_unknown_program_is_the_same_error_by_socket_and_by_supervisorctl(hx_service, monkeypatch):
    from salt.exceptions import CommandExecutionError  # pylint: disable=import-outside-toplevel

    with pytest.raises(CommandExecutionError, match="program 'ghost' is not known to supervisord"):
        hx_service["hx_service.status"](["ghost"])
    module = hx_service["hx_service.status"].__globals__["hx_supervisor"]
    monkeypatch.setattr(module, "socket_path", lambda conf: None)
    with pytest.raises(CommandExecutionError, match="program 'ghost' is not known to supervisord"):
        hx_service["hx_service.status"](["ghost"])
