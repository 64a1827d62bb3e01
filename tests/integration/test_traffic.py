"""hx_traffic through a real master and minion, for both drivers: a blue ->
green switch under steady load with zero failed requests, read back through
the same module, and the state's plan under test=True."""
import time

import pytest

from loadgen import LoadGen
from tests.support.deps import require_binary
from tests.support.haproxy import HAProxy, DemoApps
from tests.support.nginx import Nginx


@pytest.fixture
def apps(tmp_path):
    running = DemoApps(tmp_path / "apps", {"app1_blue": "1.0.0", "app1_green": "2.0.0"})
    (tmp_path / "apps").mkdir()
    yield running.start()
    running.stop()


def _servers(apps):
    return {"app1_blue": (*apps.addr("app1_blue"), 100), "app1_green": (*apps.addr("app1_green"), 0)}


@pytest.fixture(params=["haproxy", "nginx"])
def balancer(request, tmp_path, apps):
    root = tmp_path / request.param
    root.mkdir()
    if request.param == "haproxy":
        require_binary("haproxy", "haproxy")
        lb = HAProxy(root, backends={"demo": _servers(apps)}, extra_defaults=["option idle-close-on-response"])
    else:
        require_binary("nginx", "nginx-light")
        lb = Nginx(root, upstreams={"demo": _servers(apps)})
    yield lb.start()
    lb.stop()


def _probe(url, count=300):
    """Which versions answer ``count`` requests sent as fast as they come back."""
    probe = LoadGen(url, rate=0, threads=2, count=count, timeout=5).start()
    deadline = time.monotonic() + 30
    while probe.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    return probe.stop()


def test_switch_under_load_through_the_minion(salt_cli, pillar, balancer):
    pillar.set("hx-m1", balancer.pillar())
    assert _probe(balancer.url)["versions"] == {"1.0.0": 300}

    plan = salt_cli.run("state.single", "hx_traffic.weights", "name=demo",
                        'servers={"app1_blue": 0, "app1_green": 100}', "test=True", minion_tgt="hx-m1")
    state = next(iter(plan.data.values()))
    assert state["result"] is None, state
    assert _probe(balancer.url)["versions"] == {"1.0.0": 300}, "test=True moved traffic"

    # nginx applies weights by a graceful reload, which closes idle keep-alive
    # client connections (a request racing that close is lost; browsers retry
    # it). HAProxy's weights change at runtime: keep-alive clients there.
    keepalive = isinstance(balancer, HAProxy)
    load = LoadGen(balancer.url, rate=150, threads=4, timeout=5, keepalive=keepalive).start()
    try:
        ret = salt_cli.run("hx_traffic.weights", "demo", '{"app1_blue": 0, "app1_green": 100}', minion_tgt="hx-m1")
    finally:
        result = load.stop()
    assert ret.returncode == 0, ret
    assert result["failed"] == 0, (result["errors"], result["samples"])
    assert _probe(balancer.url)["versions"] == {"2.0.0": 300}
    seen = salt_cli.run("hx_traffic.servers", "demo", minion_tgt="hx-m1").data["demo"]
    assert seen["app1_blue"]["weight"] == 0 and seen["app1_green"]["weight"] == 100, seen
