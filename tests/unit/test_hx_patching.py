"""Patching decisions: apt/yum output parsing, the upgrade plan, the reboot policy."""
import importlib.util
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_patching as hp

# Real `LC_ALL=C apt-cache policy` output from a Debian 12 machine.
DEBIAN_POLICY = """\
zstd:
  Installed: 1.5.4+dfsg2-5
  Candidate: 1.5.4+dfsg2-5+deb12u1
  Version table:
     1.5.4+dfsg2-5+deb12u1 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 1.5.4+dfsg2-5 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
python3-jwt:
  Installed: 2.6.0-1
  Candidate: 2.6.0-1+deb12u1
  Version table:
     2.6.0-1+deb12u1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
 *** 2.6.0-1 100
        100 /var/lib/dpkg/status
python3-xmltodict:
  Installed: 0.13.0-1
  Candidate: 0.13.0-1.1~deb12u1
  Version table:
     0.13.0-1.1~deb12u1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
 *** 0.13.0-1 100
        100 /var/lib/dpkg/status
"""

OLD_DEBIAN_AND_FLAT = """\
openssl:
  Installed: 1.1.1n-0+deb10u5
  Candidate: 1.1.1n-0+deb10u6
  Version table:
     1.1.1n-0+deb10u6 500
        500 http://security.debian.org buster/updates/main amd64 Packages
 *** 1.1.1n-0+deb10u5 100
        100 /var/lib/dpkg/status
flatpkg:
  Installed: (none)
  Candidate: 2.0
  Version table:
     2.0 500
        500 file:/srv/repo ./ Packages
ubuntu-pkg:
  Installed: 1.0
  Candidate: 1.1
  Version table:
     1.1 500
        500 http://security.ubuntu.com/ubuntu jammy-security/main amd64 Packages
 *** 1.0 100
        100 /var/lib/dpkg/status
"""


def test_parse_apt_policy_real_debian_output():
    policy = hp.parse_apt_policy(DEBIAN_POLICY)
    assert set(policy) == {"zstd", "python3-jwt", "python3-xmltodict"}
    zstd = policy["zstd"]
    assert zstd["installed"] == "1.5.4+dfsg2-5"
    assert zstd["candidate"] == "1.5.4+dfsg2-5+deb12u1"
    assert zstd["versions"]["1.5.4+dfsg2-5+deb12u1"] == [
        {"priority": 500, "uri": "http://deb.debian.org/debian-security", "dist": "bookworm-security/main"}]
    assert zstd["versions"]["1.5.4+dfsg2-5"][1] == {"priority": 100, "uri": "/var/lib/dpkg/status", "dist": None}


def test_security_is_the_candidates_origin():
    policy = hp.parse_apt_policy(DEBIAN_POLICY)
    upgrades = {"zstd": "1.5.4+dfsg2-5+deb12u1", "python3-jwt": "2.6.0-1+deb12u1",
                "python3-xmltodict": "0.13.0-1.1~deb12u1"}
    # jwt's candidate is in both the point release and security: it is a security update
    assert hp.apt_security(policy, upgrades) == {"zstd", "python3-jwt"}


def test_security_old_debian_ubuntu_and_flat_repos():
    policy = hp.parse_apt_policy(OLD_DEBIAN_AND_FLAT)
    assert policy["flatpkg"]["installed"] is None
    assert policy["flatpkg"]["versions"]["2.0"] == [{"priority": 500, "uri": "file:/srv/repo", "dist": "./"}]
    upgrades = {"openssl": "1.1.1n-0+deb10u6", "flatpkg": "2.0", "ubuntu-pkg": "1.1", "unknown": "9"}
    assert hp.apt_security(policy, upgrades) == {"openssl", "ubuntu-pkg"}


@pytest.mark.parametrize(
    "source, expected",
    [
        ({"uri": "http://deb.debian.org/debian-security", "dist": "bookworm-security/main"}, True),
        ({"uri": "http://deb.debian.org/debian", "dist": "bookworm-updates/main"}, False),
        ({"uri": "http://deb.debian.org/debian", "dist": "bookworm/main"}, False),
        ({"uri": "http://security.debian.org", "dist": "buster/updates/main"}, True),
        ({"uri": "file:/tmp/r", "dist": "hxtest-security/main"}, True),
        ({"uri": "http://mirror/security-tools", "dist": "stable/main"}, False),
        ({"uri": "/var/lib/dpkg/status", "dist": None}, False),
    ],
)
def test_is_security_source(source, expected):
    assert hp.is_security_source(source) is expected


@pytest.mark.parametrize(
    "nevra, name",
    [
        ("openssl-libs-1:3.0.7-6.el9_2.x86_64", "openssl-libs"),
        ("curl-8.0.1-1.fc38.x86_64", "curl"),
        ("python3-urllib3-1.26.5-3.el9.noarch", "python3-urllib3"),
        ("kernel-5.14.0-284.11.1.el9_2", "kernel"),
    ],
)
def test_rpm_name(nevra, name):
    assert hp.rpm_name(nevra) == name


def test_parse_updateinfo_security_sample():
    # Sample lines in the documented dnf/yum format (not verified on a RHEL host here).
    text = """Loaded plugins: fastestmirror
RHSA-2023:1234 Important/Sec. openssl-libs-1:3.0.7-6.el9_2.x86_64
FEDORA-2023-abc123 Moderate/Sec.  curl-8.0.1-1.fc38.x86_64
RHBA-2023:9999 bugfix         tzdata-2023c-1.el9.noarch
updateinfo list done
"""
    assert hp.parse_updateinfo_security(text) == {"openssl-libs", "curl"}


@pytest.mark.parametrize(
    "retcode, required",
    [(1, True), (0, False), (2, None), (127, None)],
)
def test_needs_restarting(retcode, required):
    out = "Core libraries or services have been updated since boot-up:\n  * kernel\n  * glibc\n\nReboot is required\n"
    result = hp.parse_needs_restarting(retcode, out)
    assert result["required"] is required
    if required:
        assert result["packages"] == ["kernel", "glibc"]


# ----------------------------------------------------------------- plan

UPGRADES = {"openssl": "3.0.11-1", "nginx": "1.22.2", "linux-image-amd64": "6.1.1", "zstd": "1.5.5"}
INSTALLED = {"openssl": "3.0.9-1", "nginx": "1.22.1", "linux-image-amd64": "6.1.0", "zstd": "1.5.4"}


def test_plan_all():
    out = hp.plan(UPGRADES, INSTALLED, security={"openssl"})
    assert all(e["action"] == "upgrade" for e in out.values())
    assert out["openssl"] == {"current": "3.0.9-1", "candidate": "3.0.11-1", "security": True,
                              "action": "upgrade", "why": None}
    assert out["nginx"]["security"] is False


@pytest.mark.parametrize(
    "kwargs, upgraded",
    [
        ({"security_only": True}, {"openssl"}),
        ({"names": ["nginx", "zst*"]}, {"nginx", "zstd"}),
        ({"exclude": ["linux-image-*"]}, {"openssl", "nginx", "zstd"}),
        ({"hold": ["nginx"]}, {"openssl", "linux-image-amd64", "zstd"}),
        ({"hold": ["nginx"], "exclude": ["zstd"], "names": ["nginx", "zstd", "openssl"]}, {"openssl"}),
    ],
)
def test_plan_filters(kwargs, upgraded):
    out = hp.plan(UPGRADES, INSTALLED, security={"openssl"}, **kwargs)
    assert {n for n, e in out.items() if e["action"] == "upgrade"} == upgraded
    if "names" in kwargs:
        assert set(out) <= set(kwargs["names"]) | {"zstd"}
    for name, entry in out.items():
        assert (entry["why"] is None) == (entry["action"] == "upgrade")


def test_select_by_name_or_glob():
    assert hp.select(UPGRADES, None) == UPGRADES
    assert hp.select(UPGRADES, ["linux-*", "zstd"]) == {"linux-image-amd64": "6.1.1", "zstd": "1.5.5"}
    assert hp.select({"libc6:i386": "2"}, ["libc6"]) == {"libc6:i386": "2"}


def test_plan_reasons_for_skips():
    out = hp.plan(UPGRADES, INSTALLED, security={"openssl"}, security_only=True, hold=["nginx"],
                  exclude=["zstd"])
    assert out["nginx"]["why"] == "held (hx:patching:hold)"
    assert out["zstd"]["why"].startswith("excluded")
    assert out["linux-image-amd64"]["why"] == "not a security update"


def test_security_only_needs_security_data():
    with pytest.raises(ValueError, match="security_only"):
        hp.plan(UPGRADES, INSTALLED, security=None, security_only=True)
    assert hp.plan(UPGRADES, INSTALLED, security=None)["nginx"]["security"] is None


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9.+-]{0,8}", fullmatch=True), st.just("2.0"), max_size=8),
       st.lists(st.from_regex(r"[a-z*][a-z0-9*]{0,3}", fullmatch=True), max_size=3))
def test_plan_never_upgrades_an_excluded_or_held_package(upgrades, patterns):
    out = hp.plan(upgrades, {}, security=set(), exclude=patterns, hold=patterns[:1])
    assert set(out) == set(upgrades)
    for name, entry in out.items():
        if any(__import__("fnmatch").fnmatchcase(name, p) for p in patterns):
            assert entry["action"] == "skip"


def test_name_list():
    assert hp.name_list("a, b,,c", "x") == ["a", "b", "c"]
    assert hp.name_list(None, "x") == []
    with pytest.raises(ValueError, match="hx:patching:exclude"):
        hp.name_list([1], "hx:patching:exclude")


# --------------------------------------------------------------- reboot


def test_reboot_policy_defaults_and_errors():
    assert hp.reboot_policy() == {"auto_reboot": False, "delay_minutes": 5}
    assert hp.reboot_policy(True, 10) == {"auto_reboot": True, "delay_minutes": 10}
    with pytest.raises(ValueError, match="hx:patching:auto_reboot"):
        hp.reboot_policy("yes")
    with pytest.raises(ValueError, match="hx:patching:reboot_delay_minutes"):
        hp.reboot_policy(True, -1)
    with pytest.raises(ValueError, match="hx:patching:reboot_delay_minutes"):
        hp.reboot_policy(True, "5")


@pytest.mark.parametrize(
    "required, auto, action, call",
    [
        (True, False, "report", None),                   # acceptance case 10: reported only
        (True, True, "reboot", {"fun": "system.reboot", "kwargs": {"at_time": 5}}),  # reboot in 5 min
        (False, True, "none", None),
        (False, False, "none", None),
        (None, True, "report", None),                    # unknown never reboots
    ],
)
def test_reboot_plan(required, auto, action, call):
    plan = hp.reboot_plan(required, hp.reboot_policy(auto))
    assert plan["action"] == action
    assert plan["call"] == call


# ------------------------------------- hx_patch.maybe_reboot, one effect recorded

MODULE = os.path.join(os.path.dirname(__file__), "..", "..", "_modules", "hx_patch.py")


@pytest.fixture
def hx_patch(tmp_path):
    """The real module with Salt's dunders; system.reboot is a recorder (never reboot in tests)."""
    spec = importlib.util.spec_from_file_location("hx_patch_under_test", MODULE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pillar = {}
    calls = []
    flag = tmp_path / "reboot-required"
    module.__grains__ = {"os_family": "Debian"}
    module.__opts__ = {"test": False}
    module.__context__ = {}
    module.__salt__ = {
        "pillar.get": lambda key, default=None, unmask=False: pillar.get(key.split(":")[-1], default),
        "config.get": lambda key, default=None: str(flag) if key == "hx_patch.reboot_required_file" else default,
        "system.reboot": lambda **kwargs: calls.append(kwargs) or "Shutdown scheduled",
    }
    module.pillar, module.calls, module.flag = pillar, calls, flag
    return module


def test_maybe_reboot_reports_only_by_default(hx_patch):
    hx_patch.flag.write_text("")
    (hx_patch.flag.parent / "reboot-required.pkgs").write_text("linux-image-amd64\nlibc6\n")
    ret = hx_patch.maybe_reboot()
    assert (ret["required"], ret["action"], ret["done"]) == (True, "report", False)
    assert ret["packages"] == ["libc6", "linux-image-amd64"]
    assert hx_patch.calls == []


def test_maybe_reboot_auto_reboots_in_5_minutes_through_the_planned_call(hx_patch):
    hx_patch.flag.write_text("")
    hx_patch.pillar["auto_reboot"] = True
    dry = hx_patch.maybe_reboot(dry_run=True)
    assert dry["action"] == "reboot" and dry["done"] is False
    assert dry["call"] == {"fun": "system.reboot", "kwargs": {"at_time": 5}}
    assert hx_patch.calls == []
    ret = hx_patch.maybe_reboot()
    assert ret["done"] is True and ret["output"] == "Shutdown scheduled"
    assert hx_patch.calls == [dry["call"]["kwargs"]]


def test_maybe_reboot_honours_delay_and_absent_flag(hx_patch):
    hx_patch.pillar.update(auto_reboot=True, reboot_delay_minutes=15)
    assert hx_patch.maybe_reboot()["action"] == "none"
    hx_patch.flag.write_text("")
    assert hx_patch.maybe_reboot(dry_run=True)["call"]["kwargs"] == {"at_time": 15}
    hx_patch.__opts__["test"] = True
    assert hx_patch.maybe_reboot()["done"] is False
    assert hx_patch.calls == []
