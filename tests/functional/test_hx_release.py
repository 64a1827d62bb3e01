"""hx_release at loader level against real parts.

A real supervisord (child of the test) runs the blue and green slots of the
demo app *through the slot links* (``<root>/demo/<slot>/app.py --release-dir
<root>/demo/<slot>``), so a restart picks up whatever the link points at. A
real HTTP server on 127.0.0.1 serves the tarballs built by
lab/build_release.py (and a few malicious ones). hx_service restarts the
slots and waits for hx_health's http check against each slot's /health.

salt:// is covered here through a masterless file client (``file_client:
local`` with a temporary file root); through a real master see
tests/integration/test_release.py.
"""

import copy
import errno
import functools
import hashlib
import http.server
import importlib.util
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import threading
import time

import pytest
import requests

import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError
from tests.support import evil_tar
from tests.support.httpserver import free_port
from tests.support.supervisor import Supervisor
from tests.support.wait import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.dirname(os.path.dirname(sys.executable))
SLOTS = ("blue", "green")
VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0")


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_release", os.path.join(REPO, "lab", "build_release.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


build_release = _load_builder()


def health(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
    except (requests.RequestException, ValueError):
        return None


def sha256(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def evil_tarball(path, kind):
    """A gzip tarball with one harmless file and one member that escapes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        ok = tarfile.TarInfo("VERSION")
        ok.size = 6
        tar.addfile(ok, io.BytesIO(b"6.6.6\n"))
        if kind == "dotdot":
            bad = tarfile.TarInfo("../evil")
            bad.size = 5
            tar.addfile(bad, io.BytesIO(b"evil\n"))
        elif kind == "absolute":
            bad = tarfile.TarInfo(os.path.join(os.path.dirname(path), "abs-evil"))
            bad.size = 5
            tar.addfile(bad, io.BytesIO(b"evil\n"))
        elif kind == "symlink":
            bad = tarfile.TarInfo("link")
            bad.type = tarfile.SYMTYPE
            bad.linkname = "../../../../evil-target"
            tar.addfile(bad)
    with open(path, "wb") as fh:
        fh.write(raw.getvalue())
    return sha256(path)


class _FileHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # docs/architecture.md: keep-alive + Nagle stalls python servers

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.server.hits.append(self.path)
        super().do_GET()


class FileServer:
    def __init__(self, directory):
        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), functools.partial(_FileHandler, directory=str(directory)))
        self.httpd.daemon_threads = True
        self.httpd.hits = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    sums = {v: build_release.build(v, str(out))[1] for v in VERSIONS}
    sums["2.0.0-bad"] = build_release.build("2.0.0-bad", str(out), knobs={"health_fail": True})[1]
    # an artifact published without a .sha256 next to it
    sums["1.4.0"] = build_release.build("1.4.0", str(out))[1]
    os.unlink(out / "demo-1.4.0.tar.gz.sha256")
    for kind, version in (("dotdot", "6.6.6"), ("absolute", "6.6.7"), ("symlink", "6.6.8")):
        sums[version] = evil_tarball(str(out / f"demo-{version}.tar.gz"), kind)
    return {"dir": out, "sums": sums}


@pytest.fixture(scope="module")
def fileserver(artifacts):
    srv = FileServer(artifacts["dir"]).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("apps")


@pytest.fixture(scope="module")
def ports():
    return {slot: free_port() for slot in SLOTS}


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory, root, ports):
    programs = {}
    for slot in SLOTS:
        link = root / "demo" / slot
        programs[f"demo-{slot}"] = {
            "command": f"{sys.executable} {link}/app.py --release-dir {link} --bind 127.0.0.1 --port {ports[slot]}",
        }
    sup = Supervisor(tmp_path_factory.mktemp("sv"), programs).start()
    yield sup
    sup.stop()


def make_pillar(sup, root, ports, fileserver, **app_overrides):
    app = {
        "root": str(root),
        "source": fileserver.url + "/{app}-{version}.tar.gz",
        "keep": 5,
        "slots": {slot: {"port": ports[slot], "service": f"demo-{slot}"} for slot in SLOTS},
    }
    app.update(app_overrides)
    return {
        "hx": {
            "supervisord": {"conf": sup.conf, "bin_env": VENV},
            "services": {
                f"demo-{slot}": {"provider": "supervisord", "health": [f"demo-{slot}-http"],
                                 "start_timeout": 5, "stop_timeout": 5}
                for slot in SLOTS
            },
            "health": {"checks": [
                {"name": f"demo-{slot}-http", "kind": "http",
                 "url": f"http://127.0.0.1:{ports[slot]}/health", "timeout": 1}
                for slot in SLOTS
            ]},
            "apps": {"demo": app},
        }
    }


@pytest.fixture(scope="module")
def base_opts(tmp_path_factory):
    opts = salt.config.minion_config(None)
    base = tmp_path_factory.mktemp("minion")
    file_root = base / "file_root"
    (file_root / "hx" / "releases" / "demo").mkdir(parents=True)
    opts.update(
        id="hx-release-test",
        file_client="local",
        file_roots={"base": [str(file_root)]},
        cachedir=str(base / "cache"),
        sock_dir=str(base / "sock"),
        pki_dir=str(base / "pki"),
        extension_modules=str(base / "extmods"),
        module_dirs=[os.path.join(REPO, "_modules")],
        states_dirs=[os.path.join(REPO, "_states")],
        utils_dirs=[os.path.join(REPO, "_utils")],
    )
    opts["grains"] = salt.loader.grains(opts)
    opts["_file_root"] = str(file_root)
    return opts


class Minion:
    def __init__(self, opts, pillar, test=False):
        self.opts = copy.deepcopy(opts)
        self.opts["pillar"] = pillar
        self.opts["test"] = test
        self.utils = salt.loader.utils(self.opts)
        self.mods = salt.loader.minion_mods(self.opts, utils=self.utils, context={})
        self._states = None

    def __getattr__(self, fun):
        return lambda *a, **kw: self.mods[f"hx_release.{fun}"](*a, **kw)

    @property
    def states(self):
        if self._states is None:
            serializers = salt.loader.serializers(self.opts)
            self._states = salt.loader.states(self.opts, self.mods, self.utils, serializers)
        return self._states


@pytest.fixture
def minion(base_opts, supervisor, root, ports, fileserver):
    # Each test starts with both slots stopped and no releases installed.
    supervisor.ctl("stop", *(f"demo-{s}" for s in SLOTS))
    wait_for(lambda: "RUNNING" not in supervisor.ctl("status").stdout, 30, "slots to stop")
    shutil.rmtree(root / "demo", ignore_errors=True)

    def make(test=False, **app_overrides):
        return Minion(base_opts, make_pillar(supervisor, root, ports, fileserver, **app_overrides), test=test)

    return make


def tree(path):
    """Every path under ``path`` (links not followed), for "nothing changed" checks."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), path))
    return out


def test_module_and_state_load(minion):
    m = minion()
    assert "hx_release.install" in m.mods, m.mods.missing_fun_string("hx_release.install")
    assert "hx_release.deployed" in m.states


def test_install_blue_and_green_then_versions_from_running_processes(minion, root, ports, fileserver, artifacts):
    m = minion(checksums={"1.1.0": artifacts["sums"]["1.1.0"]})
    # checksum from the <source>.sha256 next to the artifact
    blue = m.install("demo", "1.0.0", "blue")
    assert blue["result"] is True and blue["installed"] is True and blue["restarted"] is True
    assert blue["previous"] is None and blue["running_version"] == "1.0.0"
    assert blue["checksum"] == f"sha256={artifacts['sums']['1.0.0']}"
    # checksum from pillar
    green = m.install(app="demo", version="1.1.0", slot="green")
    assert green["running_version"] == "1.1.0" and green["checksum"] == f"sha256={artifacts['sums']['1.1.0']}"

    assert os.readlink(root / "demo" / "blue") == "releases/1.0.0"
    assert os.readlink(root / "demo" / "green") == "releases/1.1.0"
    meta = json.loads((root / "demo" / "releases" / "1.0.0" / ".hx-release.json").read_text())
    assert meta["version"] == "1.0.0" and meta["source"] == f"{fileserver.url}/demo-1.0.0.tar.gz"
    assert meta["checksum"] == f"sha256={artifacts['sums']['1.0.0']}" and meta["installed_at"] <= time.time()
    assert sorted(os.listdir(root / "demo" / "releases" / "1.0.0")) == [".hx-release.json", "VERSION", "app.py"]

    v = m.versions("demo")
    assert v["slots"]["blue"]["link"] == "1.0.0" and v["slots"]["blue"]["running"] == "1.0.0"
    assert v["slots"]["green"]["link"] == "1.1.0" and v["slots"]["green"]["running"] == "1.1.0"
    assert v["slots"]["blue"]["state"] == "running" and v["slots"]["blue"]["health"] == "ok"
    assert v["slots"]["green"]["port"] == ports["green"]
    assert v["releases"] == ["1.0.0", "1.1.0"]
    assert health(ports["blue"])["version"] == "1.0.0"
    assert [r["slots"] for r in m.releases("demo")] == [["blue"], ["green"]]

    # Same version again: reused, not fetched, not restarted.
    pid = health(ports["blue"])["pid"]
    hits = len(fileserver.httpd.hits)
    again = m.install("demo", "1.0.0", "blue", checksum=artifacts["sums"]["1.0.0"])
    assert again["installed"] is False and again["link_changed"] is False and again["restarted"] is False
    assert len(fileserver.httpd.hits) == hits
    assert health(ports["blue"])["pid"] == pid

    # Move green to blue's release: activate, restart, running version follows.
    act = m.activate("demo", "1.0.0", "green")
    assert act["previous"] == "1.1.0" and act["running_version"] == "1.0.0"
    assert health(ports["green"])["version"] == "1.0.0"


def test_checksum_mismatch_changes_nothing(minion, root, ports, artifacts):
    m = minion()
    m.install("demo", "1.0.0", "blue")
    before_pid = health(ports["blue"])["pid"]
    before = tree(root / "demo")

    with pytest.raises(CommandExecutionError, match="checksum mismatch"):
        m.install("demo", "1.1.0", "blue", checksum="sha256=" + "0" * 64)
    # pillar checksum wrong as well
    bad = minion(checksums={"1.1.0": "f" * 64})
    with pytest.raises(CommandExecutionError, match="checksum mismatch"):
        bad.install("demo", "1.1.0", "blue")

    assert tree(root / "demo") - {".hx-release.lock"} == before - {".hx-release.lock"}
    assert os.readlink(root / "demo" / "blue") == "releases/1.0.0"
    now = health(ports["blue"])
    assert now["version"] == "1.0.0" and now["pid"] == before_pid

    # An installed release with another checksum is not silently replaced.
    with pytest.raises(CommandExecutionError, match="already installed with a different checksum"):
        m.install("demo", "1.0.0", "blue", checksum=f"sha256={'1' * 64}")


def test_http_source_without_any_checksum_is_refused(minion, root, fileserver):
    m = minion()
    hits = len(fileserver.httpd.hits)
    with pytest.raises(CommandExecutionError, match="needs a checksum.*answered HTTP 404"):
        m.install("demo", "1.4.0", "blue", restart=False)
    # only the sidecar was asked for, the artifact was never downloaded
    assert fileserver.httpd.hits[hits:] == ["/demo-1.4.0.tar.gz.sha256"]
    assert not os.path.exists(root / "demo" / "releases" / "1.4.0")
    off = minion(checksum_sidecar=False)
    with pytest.raises(CommandExecutionError, match="checksum_sidecar is off"):
        off.install("demo", "1.0.0", "blue", restart=False)


@pytest.mark.parametrize("version, match", [
    ("6.6.6", r"unsafe member '\.\./evil'"),
    ("6.6.7", "absolute"),
    ("6.6.8", r"unsafe member 'link': a symlink to '\.\./\.\./\.\./\.\./evil-target'"),
])
def test_malicious_tarball_rejected(minion, root, artifacts, version, match):
    m = minion()
    with pytest.raises(CommandExecutionError, match=match):
        m.install("demo", version, "blue", restart=False, checksum=artifacts["sums"][version])
    releases = root / "demo" / "releases"
    assert not os.path.lexists(releases / version)
    assert [n for n in os.listdir(releases) if not n.startswith(".downloads")] == []
    assert not os.path.lexists(root / "demo" / "evil") and not os.path.lexists(root / "demo" / "blue")
    assert not os.path.lexists(artifacts["dir"] / "abs-evil")


@pytest.fixture
def outside(tmp_path):
    """What a crafted archive aims at: must stay exactly as it is."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "target").write_bytes(b"keep\n")
    return path


@pytest.mark.parametrize("kind", evil_tar.KINDS)
def test_crafted_archive_refused_naming_the_member_and_nothing_written(minion, root, artifacts, outside, kind):
    version = f"6.7.{evil_tar.KINDS.index(kind)}"
    releases = root / "demo" / "releases"
    # the staging directory hx_release extracts into: releases/.incoming-<version>-XXXXXXXX
    dest_len = len(str(releases)) + len(f"/.incoming-{version}-") + 8
    digest, refused = evil_tar.build(str(artifacts["dir"] / f"demo-{version}.tar.gz"), kind, str(outside), dest_len)
    m = minion()
    with pytest.raises(CommandExecutionError) as err:
        m.install("demo", version, "blue", restart=False, checksum=digest)
    # long names are shortened in the message; their first characters still say which member it was
    assert f"rejected, unsafe member {repr(refused)[:60]}" in str(err.value), err.value
    assert "nothing changed" in str(err.value)
    assert sorted(os.listdir(outside)) == ["target"] and (outside / "target").read_bytes() == b"keep\n"
    assert sorted(os.listdir(releases)) == [".downloads"] and os.listdir(releases / ".downloads") == []
    assert sorted(os.listdir(root / "demo")) == [".hx-release.lock", "releases"]
    assert m.releases("demo") == []


def test_writer_never_follows_a_link_already_on_disk(minion, tmp_path, outside):
    """Behind plan_members: a link or file planted in the staging directory (a race) is never written through."""
    writer = minion().mods["hx_release.install"].func.__globals__
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "sub").symlink_to(outside)
    (staging / "f").symlink_to(outside / "target")
    (staging / "plain").write_bytes(b"")
    fd = os.open(staging, writer["_DIR_FLAGS"])
    try:
        with pytest.raises(OSError) as loop:
            writer["_open_dir"](fd, ["sub"])
        # Linux answers ENOTDIR for O_DIRECTORY|O_NOFOLLOW on a symlink, others ELOOP: refused either way
        assert loop.value.errno in (errno.ELOOP, errno.ENOTDIR)
        with pytest.raises(OSError) as notdir:
            writer["_open_dir"](fd, ["plain", "x"])
        assert notdir.value.errno == errno.ENOTDIR
        with pytest.raises(FileExistsError):
            writer["_write_new"](fd, "f", b"pwned\n", 0o644)
        with pytest.raises(OSError):
            writer["_open_dir"](fd, [".."])
    finally:
        os.close(fd)
    assert sorted(os.listdir(outside)) == ["target"] and (outside / "target").read_bytes() == b"keep\n"


def test_extracted_modes_are_sane(minion, root, artifacts):
    """setuid/setgid/sticky and group/world write never reach the disk; mtimes are kept."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, kind, mode in (("bin", tarfile.DIRTYPE, 0o1777), ("bin/tool", tarfile.REGTYPE, 0o6777),
                                 ("ro", tarfile.REGTYPE, 0o400), ("VERSION", tarfile.REGTYPE, 0o666)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, mode, 946684800
            data = b"" if kind == tarfile.DIRTYPE else b"x\n"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    path = artifacts["dir"] / "demo-6.8.0.tar.gz"
    path.write_bytes(raw.getvalue())
    m = minion()
    m.install("demo", "6.8.0", "blue", restart=False, checksum=sha256(str(path)))
    rel = root / "demo" / "releases" / "6.8.0"
    modes = {n: stat.S_IMODE(os.lstat(rel / n).st_mode) for n in ("bin", "bin/tool", "ro", "VERSION", ".")}
    assert modes == {"bin": 0o755, "bin/tool": 0o755, "ro": 0o600, "VERSION": 0o644, ".": 0o755}, modes
    assert os.stat(rel / "bin" / "tool").st_mtime == 946684800


def test_failed_restart_leaves_slot_on_new_release_and_activate_goes_back(minion, root, ports):
    m = minion()
    m.install("demo", "1.0.0", "green")
    with pytest.raises(CommandExecutionError) as err:
        m.install("demo", "2.0.0-bad", "green")
    msg = str(err.value)
    assert "slot green now points at 2.0.0-bad (was 1.0.0)" in msg
    assert "hx_release.activate demo 1.0.0 green" in msg
    assert os.readlink(root / "demo" / "green") == "releases/2.0.0-bad"
    assert health(ports["green"])["status"] == "fail"

    back = m.activate("demo", "1.0.0", "green")
    assert back["previous"] == "2.0.0-bad" and back["running_version"] == "1.0.0"
    assert health(ports["green"])["status"] == "ok"
    with pytest.raises(CommandExecutionError, match="not installed"):
        m.activate("demo", "9.9.9", "green")


def test_prune_keeps_n_and_never_a_linked_release(minion, root):
    m = minion(keep=2)
    m.install("demo", "1.0.0", "blue", restart=False)
    for version in ("1.1.0", "1.2.0", "1.3.0"):
        m.install("demo", version, "green", restart=False)
    # 1.0.0 is the oldest but blue points at it
    assert [r["version"] for r in m.releases("demo")] == ["1.0.0", "1.2.0", "1.3.0"]

    with pytest.raises(CommandExecutionError, match="in use by slot blue"):
        m.remove("demo", "1.0.0")
    res = m.prune("demo", keep=1)
    assert res["removed"] == ["1.2.0"] and res["kept"] == ["1.0.0", "1.3.0"]
    assert m.remove("demo", "1.2.0")["removed"] is False
    m.activate("demo", "1.3.0", "blue", restart=False)
    assert m.remove("demo", "1.0.0")["removed"] is True
    assert sorted(os.listdir(root / "demo" / "releases")) == [".downloads", "1.3.0"]
    with pytest.raises(SaltInvocationError, match="keep must be"):
        m.prune("demo", keep=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"version": "../1.0.0"}, "bad version"),
    ({"version": "1.0.0/../../x"}, "bad version"),
    ({"version": "1.0.0;reboot"}, "bad version"),
    ({"version": "1.0"}, "bad version"),
    ({"version": 1.1}, "bad version"),
    ({"slot": "red"}, "bad slot"),
    ({"app": "nope"}, "unknown app 'nope'"),
    ({"app": "../demo"}, "bad app name"),
    ({"source": "ftp://x/{app}.tgz"}, "must start with"),
    ({"checksum": "md5=abc"}, "unsupported algorithm"),
])
def test_bad_input_touches_nothing(minion, root, fileserver, kwargs, match):
    m = minion()
    args = dict({"app": "demo", "version": "1.0.0", "slot": "blue"}, **kwargs)
    hits = len(fileserver.httpd.hits)
    with pytest.raises(SaltInvocationError, match=match):
        m.install(**args)
    if "source" not in kwargs and "checksum" not in kwargs:
        with pytest.raises(SaltInvocationError, match=match):
            m.activate(args["app"], args["version"], args["slot"])
    assert not os.path.exists(root / "demo")
    assert len(fileserver.httpd.hits) == hits


def test_unknown_slot_service_is_a_configuration_error(minion, root):
    # The name is in pillar, not typed: CommandExecutionError naming the key, no docstring.
    m = minion(slots={"blue": {"port": 1, "service": "no-such-service"}})
    with pytest.raises(CommandExecutionError,
                       match="hx:apps:demo:slots:blue:service.*unknown service 'no-such-service'") as exc:
        m.install("demo", "1.0.0", "blue")
    assert not isinstance(exc.value, SaltInvocationError), exc.value
    assert not os.path.exists(root / "demo")


@pytest.mark.parametrize("override, match", [
    ({"keep": "lots"}, "hx:apps:demo:keep"),
    ({"source": "ftp://x/{app}.tgz"}, "hx:apps:demo:source"),
    ({"slots": {"red": {"port": 1}}}, "hx:apps:demo:slots"),
])
def test_malformed_app_pillar_is_a_configuration_error(minion, root, override, match):
    m = minion(**override)
    for call in (lambda: m.install("demo", "1.0.0", "blue"), lambda: m.plan("demo", "1.0.0", "blue")):
        with pytest.raises(CommandExecutionError, match=match) as exc:
            call()
        assert not isinstance(exc.value, SaltInvocationError), exc.value
    assert not os.path.exists(root / "demo")


def test_state_deployed_is_idempotent_and_honours_test(minion, root, ports):
    dry = minion(test=True)
    ret = dry.states["hx_release.deployed"]("demo-blue", app="demo", version="1.1.0", slot="blue")
    assert ret["result"] is None, ret
    assert ret["changes"]["plan"]["would"] == ["install", "link", "restart"]
    assert not os.path.exists(root / "demo" / "releases" / "1.1.0")
    assert health(ports["blue"]) is None

    m = minion()
    ret = m.states["hx_release.deployed"]("demo-blue", app="demo", version="1.1.0", slot="blue")
    assert ret["result"] is True, ret
    assert ret["changes"]["version"] == {"old": None, "new": "1.1.0"}
    assert ret["changes"]["restarted"] == "demo-blue"
    assert health(ports["blue"])["version"] == "1.1.0"

    again = m.states["hx_release.deployed"]("demo-blue", app="demo", version="1.1.0", slot="blue")
    assert again["result"] is True and again["changes"] == {}, again
    dry_again = dry.states["hx_release.deployed"]("demo-blue", app="demo", version="1.1.0", slot="blue")
    assert dry_again["result"] is True and dry_again["changes"] == {}

    # Process died behind our back: the state restarts it (link unchanged).
    m.mods["hx_service.stop"]("demo-blue")
    plan = dry.states["hx_release.deployed"]("demo-blue", app="demo", version="1.1.0", slot="blue")
    assert plan["result"] is None and plan["changes"]["plan"]["would"] == ["restart"]
    fixed = m.states["hx_release.deployed"]("demo-blue", app="demo", version="1.1.0", slot="blue")
    assert fixed["result"] is True and fixed["changes"] == {"restarted": "demo-blue"}, fixed

    bad = m.states["hx_release.deployed"]("x", app="demo", version="1..0", slot="blue")
    assert bad["result"] is False and "bad version" in bad["comment"]


def test_salt_source_through_local_file_client(minion, base_opts, root, artifacts):
    dest = os.path.join(base_opts["_file_root"], "hx", "releases", "demo")
    path, digest = build_release.build("3.0.0", dest)
    m = minion(source="salt://hx/releases/{app}/{app}-{version}.tar.gz")
    res = m.install("demo", "3.0.0", "blue", restart=False)
    assert res["installed"] is True and res["source"] == "salt://hx/releases/demo/demo-3.0.0.tar.gz"
    assert res["checksum"] == f"sha256={digest}"  # computed and recorded
    assert (root / "demo" / "blue" / "VERSION").read_text().strip() == "3.0.0"
    # salt:// with a pinned checksum that does not match
    build_release.build("3.0.2", dest)
    with pytest.raises(CommandExecutionError, match="checksum mismatch"):
        m.install("demo", "3.0.2", "green", checksum="0" * 64, restart=False)
    with pytest.raises(CommandExecutionError, match="already installed with a different checksum"):
        m.install("demo", "3.0.0", "green", checksum="0" * 64, restart=False)
    assert not os.path.lexists(root / "demo" / "green")
    with pytest.raises(CommandExecutionError, match="not found"):
        m.install("demo", "3.0.1", "green", restart=False)
