"""hx_release through a real master and minion (hx-m1), a real supervisord
running the blue/green slots through their links, and a real HTTP artifact
server on 127.0.0.1.

The salt:// case needs a file root holding the artifacts. The test master
serves only the repository's ``salt/`` (tests must not write into the
repository), so that test runs when the session provides a
``release_file_root`` fixture (a temporary directory appended to the master's
``file_roots``) and is skipped otherwise; see docs/reference/hx_release.md.
"""

import functools
import http.server
import importlib.util
import os
import sys
import threading

import pytest
import requests

from tests.support import evil_tar
from tests.support.httpserver import free_port
from tests.support.supervisor import Supervisor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.dirname(os.path.dirname(sys.executable))
SLOTS = ("blue", "green")
STATE_KEY = "hx_release_|-demo-green_|-demo-green_|-deployed"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_release", os.path.join(REPO, "lab", "build_release.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


build_release = _load_builder()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    sums = {v: build_release.build(v, str(out))[1] for v in ("1.0.0", "1.1.0", "1.2.0")}
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), functools.partial(_Quiet, directory=str(out)))
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{srv.server_address[1]}", "sums": sums, "dir": out}
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def ports():
    return {slot: free_port() for slot in SLOTS}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("apps")


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory, root, ports):
    programs = {
        f"demo-{slot}": {"command": (f"{sys.executable} {root}/demo/{slot}/app.py --release-dir {root}/demo/{slot} "
                                     f"--bind 127.0.0.1 --port {ports[slot]}")}
        for slot in SLOTS
    }
    sup = Supervisor(tmp_path_factory.mktemp("sv"), programs).start()
    yield sup
    sup.stop()


def release_pillar(sup, root, ports, source):
    return {"hx": {
        "supervisord": {"conf": sup.conf, "bin_env": VENV},
        "services": {f"demo-{s}": {"provider": "supervisord", "health": [f"demo_{s}_http"], "start_timeout": 10}
                     for s in SLOTS},
        "health": {"checks": [{"name": f"demo_{s}_http", "kind": "http", "timeout": 1,
                               "url": f"http://127.0.0.1:{ports[s]}/health"} for s in SLOTS]},
        "apps": {"demo": {"root": str(root), "source": source, "keep": 3,
                          "slots": {s: {"port": ports[s], "service": f"demo-{s}"} for s in SLOTS}}},
    }}


@pytest.fixture
def app(pillar, supervisor, root, ports, artifacts):
    pillar.set("hx-m1", release_pillar(supervisor, root, ports, artifacts["url"] + "/{app}-{version}.tar.gz"))
    yield supervisor
    supervisor.ctl("stop", "demo-blue", "demo-green")


def running_version(port):
    return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()["version"]


def test_install_and_deployed_state_over_the_master(salt_cli, app, root, ports, artifacts):
    ret = salt_cli.run("hx_release.install", "demo", "1.0.0", "blue", minion_tgt="hx-m1")
    assert ret.returncode == 0, ret
    assert ret.data["running_version"] == "1.0.0" and ret.data["checksum"] == f"sha256={artifacts['sums']['1.0.0']}"
    assert running_version(ports["blue"]) == "1.0.0"

    args = ("hx_release.deployed", "name=demo-green", "app=demo", "version=1.1.0", "slot=green")
    dry = salt_cli.run("state.single", *args, "test=True", minion_tgt="hx-m1")
    assert dry.data[STATE_KEY]["result"] is None, dry
    assert dry.data[STATE_KEY]["changes"]["plan"]["would"] == ["install", "link", "restart"]
    assert not os.path.lexists(root / "demo" / "green")

    real = salt_cli.run("state.single", *args, minion_tgt="hx-m1")
    assert real.returncode == 0, real
    assert real.data[STATE_KEY]["result"] is True
    assert real.data[STATE_KEY]["changes"]["version"] == {"old": None, "new": "1.1.0"}
    assert running_version(ports["green"]) == "1.1.0"

    again = salt_cli.run("state.single", *args, minion_tgt="hx-m1")
    assert again.returncode == 0 and again.data[STATE_KEY]["changes"] == {}, again

    ver = salt_cli.run("hx_release.versions", "demo", minion_tgt="hx-m1")
    assert ver.returncode == 0, ver
    assert {s: (ver.data["slots"][s]["link"], ver.data["slots"][s]["running"]) for s in SLOTS} == {
        "blue": ("1.0.0", "1.0.0"), "green": ("1.1.0", "1.1.0")}


def test_errors_reach_the_cli_and_change_nothing(salt_cli, app, root, ports):
    ret = salt_cli.run("hx_release.install", "demo", "1.0.0", "blue", minion_tgt="hx-m1")
    assert ret.returncode == 0, ret
    bad = salt_cli.run("hx_release.install", "demo", "1.2.0", "blue", f"checksum=sha256={'0' * 64}",
                       minion_tgt="hx-m1")
    assert bad.returncode != 0 and "checksum mismatch" in bad.stdout, bad
    # the CLI turns an all-digit value into an int: refused, not ignored
    bad = salt_cli.run("hx_release.install", "demo", "1.2.0", "blue", f"checksum={'0' * 64}", minion_tgt="hx-m1")
    assert bad.returncode != 0 and "bad checksum" in bad.stdout, bad
    assert not os.path.lexists(root / "demo" / "releases" / "1.2.0")
    assert os.readlink(root / "demo" / "blue") == "releases/1.0.0"
    assert running_version(ports["blue"]) == "1.0.0"

    bad = salt_cli.run("hx_release.install", "demo", "../../etc", "blue", minion_tgt="hx-m1")
    assert bad.returncode != 0 and "bad version" in bad.stdout, bad
    bad = salt_cli.run("hx_release.install", "nope", "1.0.0", "blue", minion_tgt="hx-m1")
    assert bad.returncode != 0 and "unknown app 'nope'" in bad.stdout, bad


@pytest.mark.parametrize("kind", ["cve_2025_4517", "link_then_child"])
def test_crafted_archive_refused_over_the_master(salt_cli, app, root, artifacts, tmp_path, kind):
    """A crafted archive writes nothing, anywhere: not outside, not in releases/, no slot change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"keep\n")
    version = f"6.9.{['cve_2025_4517', 'link_then_child'].index(kind)}"
    releases = root / "demo" / "releases"
    before = sorted(os.listdir(releases)) if releases.exists() else []
    link = os.readlink(root / "demo" / "blue") if os.path.islink(root / "demo" / "blue") else None
    dest_len = len(str(releases)) + len(f"/.incoming-{version}-") + 8  # hx_release's staging directory
    digest, refused = evil_tar.build(str(artifacts["dir"] / f"demo-{version}.tar.gz"), kind, str(outside), dest_len)
    bad = salt_cli.run("hx_release.install", "demo", version, "blue", f"checksum=sha256={digest}", minion_tgt="hx-m1")
    assert bad.returncode != 0 and f"rejected, unsafe member {refused!r}" in bad.stdout, bad
    assert sorted(os.listdir(outside)) == ["target"] and (outside / "target").read_bytes() == b"keep\n"
    assert sorted(set(os.listdir(releases)) - {".downloads"}) == [n for n in before if n != ".downloads"]
    assert os.listdir(releases / ".downloads") == []
    assert (os.readlink(root / "demo" / "blue") if os.path.islink(root / "demo" / "blue") else None) == link


def test_install_from_salt_source(release_file_root, salt_cli, pillar, supervisor, root, ports):
    file_root = release_file_root
    dest = os.path.join(str(file_root), "hx", "releases", "demo")
    _, digest = build_release.build("1.5.0", dest)
    pillar.set("hx-m1", release_pillar(supervisor, root, ports, "salt://hx/releases/{app}/{app}-{version}.tar.gz"))
    try:
        ret = salt_cli.run("hx_release.install", "demo", "1.5.0", "blue", minion_tgt="hx-m1")
        assert ret.returncode == 0, ret
        assert ret.data["checksum"] == f"sha256={digest}" and ret.data["running_version"] == "1.5.0"
        assert running_version(ports["blue"]) == "1.5.0"
    finally:
        supervisor.ctl("stop", "demo-blue", "demo-green")
