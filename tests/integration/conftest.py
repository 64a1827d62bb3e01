"""A real salt-master and two minions (pytest-salt-factories) serving this checkout.

The master is configured from the same ``conf/master.d/hx.conf`` an operator
installs, so the integration tests prove that file too. Pillar comes from a
per-session directory the tests write through the ``pillar`` fixture, ahead of
the repository's ``pillar/`` tree.
"""
import os
import pathlib
import shutil
import tempfile
import threading

import pytest
import yaml

from tests.support.deps import require_binary
from tests.support.inproc import LocalCli, RunnerCli
from tests.support.masterconf import install_conf
from tests.support.redis import RedisServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MINION_IDS = ("hx-m1", "hx-m2")
MASTER_ID = "hx-master"


class PillarTree:
    """Per-minion pillar written as SLS files, then refreshed on the minions.

    The master's own id has a pillar too: runners such as hx_deploy compile
    it to read app definitions.
    """

    def __init__(self, root, local_cli):
        self.root = root
        self.local_cli = local_cli
        self.data = {}
        self._write_top()

    def _write_top(self):
        ids = MINION_IDS + (MASTER_ID,)
        top = {"base": {mid: [mid.replace("-", "_")] for mid in ids}}
        for mid in ids:
            path = os.path.join(self.root, mid.replace("-", "_") + ".sls")
            with open(path, "w", encoding="utf-8") as fh:
                yaml.safe_dump(self.data.get(mid, {}), fh)
        with open(os.path.join(self.root, "top.sls"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(top, fh)

    def set(self, mid, data):
        self.data[mid] = data
        self._write_top()
        if mid != MASTER_ID:
            ret = self.local_cli.run("saltutil.refresh_pillar", "wait=True", minion_tgt=mid)
            assert ret.returncode == 0 and ret.data is True, ret

    def set_many(self, pillars):
        """Several pillars at once: the minions whose pillar changed refresh in one job, side by side."""
        changed = [mid for mid, data in pillars.items() if mid != MASTER_ID and self.data.get(mid) != data]
        self.data.update(pillars)
        self._write_top()
        if changed:
            for mid, ret in self.local_cli.run_many("saltutil.refresh_pillar", "wait=True", minions=changed).items():
                assert ret.returncode == 0 and ret.data is True, (mid, ret)

    def clear(self):
        """Every pillar back to empty; a minion whose pillar is already empty is not refreshed."""
        for mid in [m for m, data in self.data.items() if data]:
            self.set(mid, {})


@pytest.fixture(scope="session")
def salt_factories_default_root_dir():
    """Daemon directories of this worker only, short enough for unix sockets, removed afterwards.

    salt-factories' default root is the shared /tmp, where it picks
    ``<id>_<n>`` by looking for a free name: three workers starting the same
    master id at once picked the same directory (a failed start, CI run 5)
    and every run left its directories behind.
    """
    root = tempfile.mkdtemp(prefix="hxsf-")
    yield pathlib.Path(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pillar_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pillar"))


@pytest.fixture(scope="session")
def release_file_root(tmp_path_factory):
    """A second file root, as an operator would add for release artifacts."""
    return tmp_path_factory.mktemp("release_files")


@pytest.fixture(scope="session")
def master(salt_factories, pillar_root, release_file_root):
    conf = install_conf()
    conf["file_roots"] = {"base": conf["file_roots"]["base"] + [str(release_file_root)]}
    conf["pillar_roots"] = {"base": [pillar_root, os.path.join(REPO, "pillar")]}
    conf["log_level_logfile"] = "info"
    factory = salt_factories.salt_master_daemon(MASTER_ID, overrides=conf)
    with factory.started():
        yield factory


@pytest.fixture(scope="session")
def salt_cli(master):
    return master.salt_cli(timeout=120)


@pytest.fixture(scope="session")
def salt_run_cli(master):
    return master.salt_run_cli(timeout=180)


@pytest.fixture(scope="session")
def local_cli(master):
    """``salt`` in this process (tests/support/inproc.py): for reads and set-ups a test repeats."""
    return LocalCli(master.config_file)


@pytest.fixture(scope="session")
def runner_cli(master):
    """``salt-run`` in this process (tests/support/inproc.py): for reads a test repeats."""
    return RunnerCli(master.config_file)


def stop_side_by_side(factories):
    """Terminate daemons at once: each stop waits seconds for its own daemon's shutdown."""
    threads = [threading.Thread(target=factory.terminate) for factory in factories]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _minion(master, mid):
    return master.salt_minion_daemon(mid, overrides={"log_level_logfile": "info"})


@pytest.fixture(scope="session")
def minions(master, salt_cli, salt_run_cli):
    factories = {mid: _minion(master, mid) for mid in MINION_IDS}
    for factory in factories.values():
        factory.start()
    try:
        # The master first, then the minions: the order docs/install.md gives.
        ret = salt_run_cli.run("saltutil.sync_all")
        assert ret.returncode == 0, ret
        ret = salt_cli.run("saltutil.sync_all", minion_tgt="hx-m*")
        assert ret.returncode == 0, ret
        yield factories
    finally:
        stop_side_by_side(factories.values())


@pytest.fixture(scope="session")
def pillar_tree(pillar_root, local_cli, minions):
    return PillarTree(pillar_root, local_cli)


@pytest.fixture
def pillar(pillar_tree):
    yield pillar_tree
    pillar_tree.clear()


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server per test worker; each test flushes what it wrote."""
    require_binary("redis-server", "redis-server")
    server = RedisServer().start()
    yield server
    server.stop()
