"""A fresh installation, in the order an operator builds it: each test has its own new master and minion.

The minion's pillar names the ``hx_health`` beacon before the minion first
starts, with the lab's default watch set (an ``on_demand`` check of a service
that should be up), and hx-ops is synced only afterwards.

* In the order docs/install.md gives (master, then minions) a kill -9 is
  remediated with no beacon refresh or restart.
* In the other order the reactor's first reaction comes before the master has
  ``hx_remediate``; Salt keeps that runner client for
  ``reactor_refresh_interval`` and every reaction in that time is lost. The
  beacon repeats the failure while it holds, and a repeat after the client
  was renewed remediates it.
"""
import os
import sys
import time

import pytest
import yaml

from tests.support import httpserver
from tests.support.inproc import LocalCli, RunnerCli
from tests.support.masterconf import install_conf
from tests.support.probes import beacon_running, healthy
from tests.support.supervisor import Supervisor, demo_command
from tests.support.wait import wait_for

VENV = os.path.dirname(os.path.dirname(sys.executable))
MINION = "hx-fresh-m1"


class Site:
    """A new master (install snippet) and one minion whose pillar is written before it starts."""

    def __init__(self, salt_factories, root, name, master_overrides, beacon):
        self.port = httpserver.free_port()
        self.sup = Supervisor(root / "supervisor", {"demo": {"command": demo_command(self.port)}})
        (root / "supervisor").mkdir()
        pillar_root = root / "pillar"
        pillar_root.mkdir()
        (pillar_root / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["site"]}}))
        (pillar_root / "site.sls").write_text(yaml.safe_dump({
            "beacons": {"hx_health": beacon},
            "hx": {
                "supervisord": {"conf": self.sup.conf, "bin_env": VENV},
                "services": {"demo": {"provider": "supervisord", "health": ["demo_http"], "start_timeout": 10}},
                "health": {"checks": [{"name": "demo_http", "kind": "http", "timeout": 1, "on_demand": True,
                                       "url": f"http://127.0.0.1:{self.port}/health"}]},
            },
        }))
        conf = install_conf()
        conf.update(pillar_roots={"base": [str(pillar_root)]}, log_level_logfile="info", **master_overrides)
        self.master = salt_factories.salt_master_daemon(name, overrides=conf)
        self.minion = None

    def start(self):
        self.sup.start()
        assert self.sup.ctl("start", "demo").returncode == 0
        self.master.start()
        self.salt = self.master.salt_cli(timeout=120)
        self.salt_run = self.master.salt_run_cli(timeout=180)
        # Polls go in-process (tests/support/inproc.py); the documented sync steps stay command lines.
        self.local = LocalCli(self.master.config_file)
        self.runner = RunnerCli(self.master.config_file)
        self.minion = self.master.salt_minion_daemon(MINION, overrides={"log_level_logfile": "info"})
        self.minion.start()
        return self

    def stop(self):
        if self.minion is not None:
            self.minion.terminate()
        self.master.terminate()
        self.sup.stop()

    def sync(self, *where):
        for side in where:
            ret = self.salt_run.run("saltutil.sync_all") if side == "master" else \
                self.salt.run("saltutil.sync_all", minion_tgt=MINION)
            assert ret.returncode == 0, ret

    def incidents(self, since):
        ret = self.runner.run("hx_incident.list", f"since={since}")
        assert ret.returncode == 0, ret
        return ret.data["incidents"]

    def timeline(self, inc_id):
        ret = self.runner.run("hx_incident.show", inc_id)
        assert ret.returncode == 0, ret
        return ret.data["incident"]["timeline"]

    def kill_and_wait_recovered(self, timeout):
        old = self.sup.pid("demo")
        assert old, "demo must be running before the kill"
        killed = time.monotonic()
        os.kill(old, 9)
        wait_for(lambda: self.sup.pid("demo") not in (None, old) and healthy(self.port), timeout, "demo to come back")
        return time.monotonic() - killed


@pytest.fixture
def site(salt_factories, tmp_path, request):
    made = []

    def make(master_overrides=None, beacon=None):
        name = f"hx-fresh-{request.node.name[5:25].replace('_', '-')}"
        made.append(Site(salt_factories, tmp_path, name, master_overrides or {},
                         beacon or [{"for_cycles": 2}, {"horizon": 0}]).start())
        return made[-1]

    yield make
    for one in made:
        one.stop()


def test_documented_order_remediates_a_pillar_beacon_without_a_refresh(site):
    s = site()
    listed = s.salt.run("beacons.list", "return_yaml=False", minion_tgt=MINION)
    assert "hx_health" in (listed.data or {}), listed
    synced_at = time.time()
    s.sync("master", "minion")  # docs/install.md step 4; no refresh_beacons, no restart
    wait_for(lambda: beacon_running(s.local, MINION, synced_at + 1), 30, "the pillar beacon to run after the sync")

    took = s.kill_and_wait_recovered(60)
    print(f"\nfresh install, kill -9 -> healthy: {took:.2f} s")
    inc = wait_for(lambda: [i for i in s.incidents(synced_at) if i["status"] == "resolved"], 60,
                   "the incident to be resolved")[0]
    assert inc["type"] == "service_down"
    assert not [e for e in s.timeline(inc["id"]) if "repeat #" in e.get("text", "")], \
        "the first report must have been acted on"


def test_a_reaction_lost_on_the_master_is_retried_by_the_beacon_repeat(site, event_listener):
    s = site(master_overrides={"reactor_refresh_interval": 10},
             beacon=[{"for_cycles": 2}, {"horizon": 0}, {"repeat_every": 3}, {"repeat_max": 3}])
    synced_at = time.time()
    s.sync("minion")  # the master's runners are not there yet
    wait_for(lambda: beacon_running(s.local, MINION, synced_at + 1), 30, "the pillar beacon to run after the sync")

    killed_at = time.time()
    old = s.sup.pid("demo")
    os.kill(old, 9)

    def repeated(n):
        tag = f"salt/beacon/{MINION}/hx_health/demo_http"
        return [e for e in event_listener.get_events([(s.master.id, tag)], after_time=killed_at)
                if e.data.get("repeat", 0) >= n]

    # The first report reached the reactor while the master had no hx_remediate:
    # Salt drops that call without a trace (RunnerClient.low fails in its own
    # finally, no salt/run/*/ret event) and keeps that runner client for
    # reactor_refresh_interval. Two repeats later it has long been built.
    wait_for(lambda: repeated(2), 30, "the beacon to repeat the failure twice")
    assert s.sup.pid("demo") is None, "nothing could have acted yet"

    s.sync("master")
    wait_for(lambda: s.sup.pid("demo") not in (None, old) and healthy(s.port), 60, "demo recovered by a repeat")
    inc = wait_for(lambda: [i for i in s.incidents(killed_at) if i["status"] == "resolved"], 60,
                   "the incident to be resolved")[0]
    detection = [e for e in s.timeline(inc["id"]) if e["kind"] == "detection"]
    assert detection and "repeat #" in detection[0]["text"], detection
