"""hx_patch against the real package manager, through a real master and minion.

A local apt repository (tests/support/aptrepo.py) serves two real packages:
``hx-ops-testpkg`` 1.0/1.1 from suite ``hxtest`` and ``hx-ops-testpkg-sec``
1.0 (``hxtest``) / 1.1 (``hxtest-security``). Only that source is refreshed
(refresh=False everywhere else) and every apply is limited with ``pkgs`` so
nothing else on the machine moves; the test proves that too. Needs root and
dpkg/apt: skipped locally without them, a failure under CI=true.
"""
import os
import subprocess

import pytest

from tests.support import deps
from tests.support.aptrepo import AptRepo

PKG, SEC = "hx-ops-testpkg", "hx-ops-testpkg-sec"
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
        repo.publish()
        repo.update()
        repo.install(PKG, "1.0")
        repo.install(SEC, "1.0")
        yield repo
    finally:
        repo.cleanup()


def call(salt_cli, fun, *args):
    ret = salt_cli.run(fun, *args, minion_tgt="hx-m1")
    assert ret.returncode == 0, ret
    return ret.data


def test_pending_apply_security_hold_exclude_against_apt(salt_cli, pillar, repo):
    before = installed_versions()

    pending = call(salt_cli, "hx_patch.pending", "refresh=False", f"pkgs={OURS}")
    assert set(pending["packages"]) == {PKG, SEC}
    assert pending["packages"][PKG] == {"current": "1.0", "candidate": "1.1", "security": False,
                                        "action": "upgrade", "why": None}
    assert pending["packages"][SEC]["security"] is True

    security = call(salt_cli, "hx_patch.pending", "security_only=True", "refresh=False", f"pkgs={OURS}")
    assert set(security["packages"]) == {SEC}

    planned = call(salt_cli, "hx_patch.apply", "security_only=True", "refresh=False", f"pkgs={OURS}", "test=True")
    assert planned["changes"] == {SEC: {"old": "1.0", "new": "1.1"}}
    assert repo.version(SEC) == "1.0"

    applied = call(salt_cli, "hx_patch.apply", "security_only=True", "refresh=False", f"pkgs={OURS}")
    assert applied["result"] is True
    assert applied["changes"] == {SEC: {"old": "1.0", "new": "1.1"}}
    assert (repo.version(SEC), repo.version(PKG)) == ("1.1", "1.0")

    # pillar exclude: skipped, named why
    pillar.set("hx-m1", {"hx": {"patching": {"exclude": [PKG]}}})
    excluded = call(salt_cli, "hx_patch.apply", "refresh=False", f"pkgs={OURS}")
    assert excluded["changes"] == {} and excluded["skipped"][PKG].startswith("excluded")
    assert repo.version(PKG) == "1.0"

    # pillar hold: pkg.hold pins it system-wide, apt then keeps it back
    pillar.set("hx-m1", {"hx": {"patching": {"hold": [PKG]}}})
    held = call(salt_cli, "hx_patch.apply", "refresh=False", f"pkgs={OURS}")
    assert held["held"] == [PKG] and held["changes"] == {}
    assert PKG in subprocess.run(["apt-mark", "showhold"], capture_output=True, text=True).stdout.split()
    assert PKG not in call(salt_cli, "hx_patch.pending", "refresh=False", f"pkgs={OURS}")["packages"]
    assert repo.version(PKG) == "1.0"

    call(salt_cli, "pkg.unhold", PKG)
    pillar.set("hx-m1", {})
    applied = call(salt_cli, "hx_patch.apply", "refresh=False", f"pkgs={PKG}")
    assert applied["changes"] == {PKG: {"old": "1.0", "new": "1.1"}}
    assert applied["failed"] == {} and applied["reboot_required"] in (True, False)
    assert repo.version(PKG) == "1.1"

    after = call(salt_cli, "hx_patch.pending", "refresh=False", f"pkgs={OURS}")
    assert after["packages"] == {} and after["count"] == 0

    # nothing but the test packages moved
    now = installed_versions()
    changed = {n for n in set(before) | set(now) if before.get(n) != now.get(n)}
    assert changed == {PKG, SEC}


def test_reboot_required_and_policy_from_the_minion(salt_cli, pillar, repo):
    required = call(salt_cli, "hx_patch.reboot_required")
    assert required["required"] is os.path.exists("/var/run/reboot-required")
    pillar.set("hx-m1", {"hx": {"patching": {"auto_reboot": True, "reboot_delay_minutes": 7}}})
    assert call(salt_cli, "hx_patch.reboot_policy") == {"auto_reboot": True, "delay_minutes": 7}
    plan = call(salt_cli, "hx_patch.maybe_reboot", "dry_run=True")
    assert plan["done"] is False and plan["dry_run"] is True
    if plan["required"]:
        assert plan["call"] == {"fun": "system.reboot", "kwargs": {"at_time": 7}}
    else:
        assert plan["action"] == "none"
    pillar.set("hx-m1", {"hx": {"patching": {"auto_reboot": "yes"}}})
    ret = salt_cli.run("hx_patch.reboot_policy", minion_tgt="hx-m1")
    assert ret.returncode != 0 and "hx:patching:auto_reboot" in str(ret.data) + ret.stdout
