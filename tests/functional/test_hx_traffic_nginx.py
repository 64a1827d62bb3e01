"""hx_traffic's nginx driver against a REAL nginx (daemon off, master + worker,
child of the test) in front of REAL demo apps, through Salt's loader."""

import copy
import os
import time
import urllib.request

import pytest

import salt.config
import salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.deps import require_binary
from tests.support.haproxy import DemoApps
from tests.support.nginx import Nginx
from tests.support.wait import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loadgen import LoadGen  # noqa: E402  pylint: disable=wrong-import-position

BLUE, GREEN = "1.0", "2.0"
SERVERS = {"app1_blue": BLUE, "app1_green": GREEN}
BLUE_LIVE = {"app1_blue": 100, "app1_green": 0}
GREEN_LIVE = {"app1_blue": 0, "app1_green": 100}


@pytest.fixture(scope="module")
def nginx_bin():
    return require_binary("nginx", "nginx-light")


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    apps = DemoApps(tmp_path_factory.mktemp("apps"), SERVERS).start()
    yield apps
    apps.stop()


@pytest.fixture
def ngx(nginx_bin, apps, tmp_path):
    upstreams = {"demo": {name: (*apps.addr(name), BLUE_LIVE[name]) for name in SERVERS}}
    proxy = Nginx(tmp_path, upstreams, binary=nginx_bin).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def base_opts(tmp_path_factory):
    opts = salt.config.minion_config(None)
    root = tmp_path_factory.mktemp("minion")
    opts.update(
        id="lb1",
        file_client="local",
        cachedir=str(root / "cache"),
        sock_dir=str(root / "sock"),
        pki_dir=str(root / "pki"),
        extension_modules=str(root / "extmods"),
        module_dirs=[os.path.join(REPO, "_modules")],
        states_dirs=[os.path.join(REPO, "_states")],
        utils_dirs=[os.path.join(REPO, "_utils")],
    )
    opts["grains"] = salt.loader.grains(opts)
    return opts


@pytest.fixture
def minion(base_opts, ngx):
    def make(pillar=None, test=False):
        opts = copy.deepcopy(base_opts)
        opts["pillar"] = pillar or ngx.pillar()
        opts["test"] = test
        utils = salt.loader.utils(opts)
        return salt.loader.minion_mods(opts, utils=utils, context={})
    return make


def get(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.headers["X-App-Version"]


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def test_servers_and_stats(minion, ngx, apps):
    mods = minion()
    view = mods["hx_traffic.servers"]("demo")["demo"]
    assert view["app1_blue"] == {"weight": 100, "admin": "ready", "status": "unknown", "check": None,
                                 "sessions": None, "addr": f"127.0.0.1:{apps.port('app1_blue')}"}
    assert view["app1_green"]["weight"] == 0
    assert mods["hx_traffic.stats"]()["supported"] is False
    assert get(ngx.url) == (200, BLUE)


def test_blue_to_green_under_load_drops_nothing(minion, ngx):
    mods = minion()
    # Keep-alive clients and a new connection per request, side by side.
    lg = LoadGen(ngx.url, rate=200, threads=4, timeout=5).start()
    fresh = LoadGen(ngx.url, rate=100, threads=2, timeout=5, keepalive=False).start()
    try:
        wait_for(lambda: lg.snapshot()["versions"].get(BLUE, 0) >= 50, 10, "blue traffic")
        res = mods["hx_traffic.weights"]("demo", GREEN_LIVE)
        assert [(s["action"], s["server"]) for s in res["changes"]] == [("raise", "app1_green"),
                                                                       ("lower", "app1_blue")]
        assert res["after"] == GREEN_LIVE and res["reload"]["verified"] is True
        switched_at = lg.elapsed()
        wait_for(lambda: lg.elapsed() >= switched_at + 1.5, 5, "load after the switch")
    finally:
        result = lg.stop()
        result_fresh = fresh.stop()
    print("keep-alive:", {k: result[k] for k in ("total", "failed", "errors", "versions")})
    print("new conn each:", {k: result_fresh[k] for k in ("total", "failed", "errors", "versions")})
    assert result_fresh["failed"] == 0, result_fresh["samples"]
    # A reload retires the old worker, which closes idle keep-alive client
    # connections; a request racing that close counts as closed_idle. Nothing
    # else (refused, 5xx, timeout) may happen.
    others = {k: v for k, v in result["errors"].items() if k != "closed_idle"}
    assert not any(others.values()), result["samples"]
    assert set(lg.versions_since(int(switched_at) + 1)) == {GREEN}
    text = read(ngx.upstream_file)
    assert "down; # hx:app1_blue w=0" in text and "weight=100; # hx:app1_green w=100" in text
    assert mods["hx_traffic.config_weights"]() == {"demo": GREEN_LIVE}


def test_broken_upstream_is_rejected_and_previous_file_restored(minion, ngx):
    # An operator's typo reached the upstream file on disk (not loaded yet).
    good = read(ngx.upstream_file)
    typo = good.replace("weight=100;", "weight=100 max_fails=lots;")
    with open(ngx.upstream_file, "w", encoding="utf-8") as fh:
        fh.write(typo)
    mods = minion()
    with pytest.raises(CommandExecutionError, match=r"nginx -t failed: .*invalid parameter \"max_fails=lots\""):
        mods["hx_traffic.weights"]("demo", GREEN_LIVE)
    assert read(ngx.upstream_file) == typo, "the previous upstream file was not restored byte for byte"
    assert not [f for f in os.listdir(ngx.root) if f.startswith(".upstreams.conf.")], "temp file left behind"
    assert get(ngx.url) == (200, BLUE)  # the running nginx never loaded it
    with open(ngx.upstream_file, "w", encoding="utf-8") as fh:
        fh.write(good)
    assert mods["hx_traffic.weights"]("demo", GREEN_LIVE)["after"] == GREEN_LIVE
    assert get(ngx.url) == (200, GREEN)


def test_drain_renders_down_waits_for_old_workers_then_maint(minion, ngx, apps):
    mods = minion()
    apps.control("app1_blue", slow_ms=800)
    import threading  # pylint: disable=import-outside-toplevel

    results = []
    t = threading.Thread(target=lambda: results.append(get(ngx.url)))
    t.start()
    time.sleep(0.2)  # the request is in flight at the old worker
    # app1_green must carry traffic, else draining the only live server is an outage
    mods["hx_traffic.weights"]("demo", {"app1_green": 100})
    res = mods["hx_traffic.drain"](backend="demo", server="app1_blue", timeout=10)
    t.join(10)
    assert results == [(200, BLUE)], results  # the in-flight request finished
    assert res["state"] == "maint" and res["drained"] is True and res["sessions_left"] == 0
    view = mods["hx_traffic.servers"]("demo")["demo"]["app1_blue"]
    assert view["admin"] == "maint" and view["weight"] == 100
    assert "down; # hx:app1_blue w=100 state=maint" in read(ngx.upstream_file)
    assert {get(ngx.url)[1] for _ in range(4)} == {GREEN}
    back = mods["hx_traffic.ready"](backend="demo", server="app1_blue")
    assert back["from"] == "maint" and back["to"] == "ready"
    assert {get(ngx.url)[1] for _ in range(6)} == {BLUE, GREEN}


def test_bad_input_and_state_test_mode(minion, ngx):
    mods = minion()
    before = read(ngx.upstream_file)
    with pytest.raises(SaltInvocationError, match="backend: 'nope' is not an upstream"):
        mods["hx_traffic.weights"]("nope", {"app1_green": 1})
    with pytest.raises(SaltInvocationError, match="server: not in backend: app9"):
        mods["hx_traffic.weights"]("demo", {"app9": 1})
    with pytest.raises(SaltInvocationError, match="weights:app1_green"):
        mods["hx_traffic.weights"]("demo", {"app1_green": 1000})
    assert read(ngx.upstream_file) == before

    mods_test = minion(test=True)
    opts = mods_test.opts
    states = salt.loader.states(opts, mods_test, salt.loader.utils(opts), salt.loader.serializers(opts))
    ret = states["hx_traffic.weights"](name="demo", servers=GREEN_LIVE)
    assert ret["result"] is None and [s["action"] for s in ret["changes"]["plan"]] == ["raise", "lower"]
    assert read(ngx.upstream_file) == before
