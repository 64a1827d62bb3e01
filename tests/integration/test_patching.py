"""hx_patch against the real package manager, through a real master and minion.

A local apt repository (tests/support/aptrepo.py) serves two real packages:
``hx-ops-testpkg`` 1.0/1.1 from suite ``hxtest`` and ``hx-ops-testpkg-sec``
1.0 (``hxtest``) / 1.1 (``hxtest-security``), and ``hx-ops-bystander`` 1.0/1.1,
which no apply names. The minion's ``pkg`` module and hx_patch see only that
repository (its ``APT_CONFIG``, through Salt's ``system-environment`` pillar)
and the machine's real dpkg database: packages install for real. Every apply
is limited with ``pkgs`` and the bystander proves it: it has an upgrade all
along and never moves. Needs root and dpkg/apt: skipped locally without them,
a failure under CI=true.
"""
import os
import subprocess

import pytest

from tests.support import deps
from tests.support.aptrepo import AptRepo, pkg_environment

PKG, SEC, BYSTANDER = "hx-ops-testpkg", "hx-ops-testpkg-sec", "hx-ops-bystander"
OURS = "hx-ops-testpkg*"


def _require_root_apt():
    deps.require_binary("dpkg-deb", "dpkg")
    deps.require_binary("apt-get", "apt")
    deps.require_root("patching tests install packages")


def installed_versions():
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version} ${db:Status-Abbrev}\n"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: line.split()[1] for line in out.splitlines() if line.split()[2:3] == ["ii"]}


@pytest.fixture(scope="module")
def repo():
    _require_root_apt()
    repo = AptRepo()
    try:
        repo.build(PKG, "1.0")
        repo.build(PKG, "1.1")
        repo.build(SEC, "1.0")
        repo.build(SEC, "1.1", suite="hxtest-security")
        repo.build(BYSTANDER, "1.0")
        repo.build(BYSTANDER, "1.1")
        repo.publish()
        repo.update()
        for name in (PKG, SEC, BYSTANDER):
            repo.install(name, "1.0")
        yield repo
    finally:
        repo.cleanup()


def with_repo(repo, **hx):
    """hx-m1's pillar: ``hx`` keys, and the repository's apt configuration for Salt's pkg module
    (which hx_patch's own apt calls share)."""
    data = pkg_environment(repo.apt_config)
    return dict(data, hx=hx) if hx else data


def call(cli, fun, *args):
    ret = cli.run(fun, *args, minion_tgt="hx-m1")
    assert ret.returncode == 0, ret
    return ret.data


def test_pending_apply_security_hold_exclude_against_apt(local_cli, pillar, repo):
    before = installed_versions()
    pillar.set("hx-m1", with_repo(repo))
    everything = call(local_cli, "hx_patch.pending", "refresh=False")
    assert set(everything["packages"]) == {PKG, SEC, BYSTANDER}, "the minion does not see the test repository"

    pending = call(local_cli, "hx_patch.pending", "refresh=False", f"pkgs={OURS}")
    assert set(pending["packages"]) == {PKG, SEC}
    assert pending["packages"][PKG] == {"current": "1.0", "candidate": "1.1", "security": False,
                                        "action": "upgrade", "why": None}
    assert pending["packages"][SEC]["security"] is True

    security = call(local_cli, "hx_patch.pending", "security_only=True", "refresh=False", f"pkgs={OURS}")
    assert set(security["packages"]) == {SEC}

    planned = call(local_cli, "hx_patch.apply", "security_only=True", "refresh=False", f"pkgs={OURS}", "test=True")
    assert planned["changes"] == {SEC: {"old": "1.0", "new": "1.1"}}
    assert repo.version(SEC) == "1.0"

    applied = call(local_cli, "hx_patch.apply", "security_only=True", "refresh=False", f"pkgs={OURS}")
    assert applied["result"] is True
    assert applied["changes"] == {SEC: {"old": "1.0", "new": "1.1"}}
    assert (repo.version(SEC), repo.version(PKG)) == ("1.1", "1.0")

    # pillar exclude: skipped, named why
    pillar.set("hx-m1", with_repo(repo, patching={"exclude": [PKG]}))
    excluded = call(local_cli, "hx_patch.apply", "refresh=False", f"pkgs={OURS}")
    assert excluded["changes"] == {} and excluded["skipped"][PKG].startswith("excluded")
    assert repo.version(PKG) == "1.0"

    # pillar hold: pkg.hold pins it system-wide, apt then keeps it back
    pillar.set("hx-m1", with_repo(repo, patching={"hold": [PKG]}))
    held = call(local_cli, "hx_patch.apply", "refresh=False", f"pkgs={OURS}")
    assert held["held"] == [PKG] and held["changes"] == {}
    assert PKG in subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True).stdout.split()
    assert PKG not in call(local_cli, "hx_patch.pending", "refresh=False", f"pkgs={OURS}")["packages"]
    assert repo.version(PKG) == "1.0"

    call(local_cli, "pkg.unhold", PKG)
    pillar.set("hx-m1", with_repo(repo))
    applied = call(local_cli, "hx_patch.apply", "refresh=False", f"pkgs={PKG}")
    assert applied["changes"] == {PKG: {"old": "1.0", "new": "1.1"}}
    assert applied["failed"] == {} and applied["reboot_required"] in (True, False)
    assert repo.version(PKG) == "1.1"

    after = call(local_cli, "hx_patch.pending", "refresh=False", f"pkgs={OURS}")
    assert after["packages"] == {} and after["count"] == 0

    # nothing but the packages named moved: the bystander's upgrade is still pending
    now = installed_versions()
    changed = {n for n in set(before) | set(now) if before.get(n) != now.get(n)}
    assert changed == {PKG, SEC}
    assert repo.version(BYSTANDER) == "1.0"
    assert set(call(local_cli, "hx_patch.pending", "refresh=False")["packages"]) == {BYSTANDER}


def test_reboot_required_and_policy_from_the_minion(local_cli, pillar, repo):
    required = call(local_cli, "hx_patch.reboot_required")
    assert required["required"] is os.path.exists("/var/run/reboot-required")
    pillar.set("hx-m1", {"hx": {"patching": {"auto_reboot": True, "reboot_delay_minutes": 7}}})
    assert call(local_cli, "hx_patch.reboot_policy") == {"auto_reboot": True, "delay_minutes": 7}
    plan = call(local_cli, "hx_patch.maybe_reboot", "dry_run=True")
    assert plan["done"] is False and plan["dry_run"] is True
    if plan["required"]:
        assert plan["call"] == {"fun": "system.reboot", "kwargs": {"at_time": 7}}
    else:
        assert plan["action"] == "none"
    pillar.set("hx-m1", {"hx": {"patching": {"auto_reboot": "yes"}}})
    ret = local_cli.run("hx_patch.reboot_policy", minion_tgt="hx-m1")
    assert ret.returncode != 0 and "hx:patching:auto_reboot" in str(ret.data) + ret.stdout
