"""hx_releases: version/slot/checksum validation, tar member safety, prune choice, hx:apps pillar."""

import re
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_releases as r
from tests.support import evil_tar

SHA256 = "a" * 64
SHA512 = "b" * 128


@pytest.mark.parametrize("version", [
    "0.0.0", "1.2.3", "10.20.30", "1.1.0-rc1", "1.1.0-rc.1", "2.0.0-bad", "1.0.0-2024.01.02-build-7",
    "1.0.0-" + "x" * 58,  # exactly 64 characters
])
def test_good_versions(version):
    assert r.validate_version(version) == version


@pytest.mark.parametrize("version", [
    "", "1", "1.2", "1.2.3.4", "v1.2.3", "1.2.3-", "1.2.3+build", "1.2.3 ", " 1.2.3", "1.2.3-a b",
    "../1.2.3", "1.2.3/..", "1.2.3-..", "1.2.3-a..b", "1.2.3/evil", "/1.2.3", "1.2.3;rm -rf /",
    "1.2.3$(id)", "1.2.3`id`", "1.2.3|x", "1.2.3&", "1.2.3>x", "1.2.3-a_b", "1.2.3\n", "1.2.3-\x00",
    "１.２.３", "1.0.0-" + "x" * 59,  # 65 characters
])
def test_bad_versions_name_the_version(version):
    with pytest.raises(ValueError, match="bad version"):
        r.validate_version(version)


@pytest.mark.parametrize("version", [None, 1.1, 1, ["1.0.0"], {"v": 1}])
def test_non_string_versions(version):
    with pytest.raises(ValueError, match=re.escape(repr(version))):
        r.validate_version(version)


def test_bad_version_message_names_it():
    with pytest.raises(ValueError, match=r"bad version '1\.0/\.\./x'"):
        r.validate_version("1.0/../x")


@given(st.text(max_size=80))
def test_accepted_versions_are_always_safe_path_components(text):
    try:
        r.validate_version(text)
    except ValueError:
        return
    assert "/" not in text and ".." not in text and text == text.strip()
    assert all(c.isascii() and (c.isalnum() or c in ".-") for c in text)
    assert len(text) <= r.MAX_VERSION_LEN


@pytest.mark.parametrize("slot, other", [("blue", "green"), ("green", "blue")])
def test_slots(slot, other):
    assert r.validate_slot(slot) == slot
    assert r.other_slot(slot) == other
    assert r.other_slot(r.other_slot(slot)) == slot


@pytest.mark.parametrize("slot", ["", "Blue", "red", "blue ", None, 1, "blue/green"])
def test_bad_slots(slot):
    with pytest.raises(ValueError, match="bad slot"):
        r.validate_slot(slot)
    with pytest.raises(ValueError, match="bad slot"):
        r.other_slot(slot)


@pytest.mark.parametrize("spec, expected", [
    (SHA256, ("sha256", SHA256)),
    (SHA256.upper(), ("sha256", SHA256)),
    (f"sha256={SHA256}", ("sha256", SHA256)),
    (f"SHA256={SHA256}", ("sha256", SHA256)),
    (f" sha512={SHA512} ", ("sha512", SHA512)),
])
def test_checksum_specs(spec, expected):
    assert r.parse_checksum(spec) == expected
    assert r.normalize_checksum(spec) == f"{expected[0]}={expected[1]}"


@pytest.mark.parametrize("spec, match", [
    ("", "expected sha256"),
    (None, "expected sha256"),
    (123, "expected sha256"),
    ("a" * 63, "needs 64 hex"),
    ("a" * 65, "needs 64 hex"),
    (SHA512, "needs 64 hex"),  # a bare hex is sha256
    ("g" * 64, "needs 64 hex"),
    (f"sha512={SHA256}", "needs 128 hex"),
    (f"md5={'a' * 32}", "unsupported algorithm 'md5'"),
    (f"sha1={'a' * 40}", "unsupported algorithm"),
    ("sha256=", "needs 64 hex"),
])
def test_bad_checksums(spec, match):
    with pytest.raises(ValueError, match=match):
        r.parse_checksum(spec)


@pytest.mark.parametrize("text", [
    f"{SHA256}  demo-1.0.0.tar.gz\n", f"{SHA256}\n", f"\n  {SHA256} *demo.tar.gz", f"sha256={SHA256}",
])
def test_sidecar(text):
    assert r.parse_sidecar(text) == ("sha256", SHA256)


@pytest.mark.parametrize("text", ["", "\n\n", "not-a-hash  file", "abc"])
def test_bad_sidecar(text):
    with pytest.raises(ValueError):
        r.parse_sidecar(text)


@pytest.mark.parametrize("name, kind, rel", [
    ("app.py", "file", "app.py"),
    ("./app.py", "file", "app.py"),
    ("static/css/a.css", "file", "static/css/a.css"),
    ("static/", "dir", "static"),
    ("./", "dir", ""),
    ("a b/c$d.txt", "file", "a b/c$d.txt"),
])
def test_safe_members(name, kind, rel):
    assert r.check_member(name, kind) == rel


@pytest.mark.parametrize("name, kind, link, match", [
    ("/etc/passwd", "file", None, r"unsafe member '/etc/passwd': absolute"),
    ("../evil", "file", None, r"unsafe member '\.\./evil': '\.\.'"),
    ("a/../../evil", "file", None, r"'\.\.'"),
    ("a/..", "dir", None, r"'\.\.'"),
    ("", "file", None, "absolute or malformed"),
    ("./", "file", None, "a file without a name"),
    ("a\\..\\b", "file", None, "malformed"),
    ("a\x00b", "file", None, "control character"),
    ("a\nb", "file", None, "control character"),
    ("app.py\n", "file", None, "control character"),
    (".hx-release.json", "file", None, "written by hx_release"),
    ("./.hx-release.json", "file", None, "written by hx_release"),
    # links are refused whatever their target: inside today, outside through a later link
    ("current", "symlink", "static/a.css", r"unsafe member 'current': a symlink to 'static/a\.css'"),
    ("static/x", "symlink", "../app.py", "a symlink"),
    ("up", "symlink", "../outside", "a symlink"),
    ("root", "symlink", "/etc", "a symlink to '/etc'"),
    ("static/y", "hardlink", "app.py", r"unsafe member 'static/y': a hardlink to 'app\.py'"),
    ("hl", "hardlink", "/etc/shadow", "a hardlink"),
    ("null", "chardev", None, r"unsafe member 'null': a character device; a release holds only regular files"),
    ("sda", "blockdev", None, "a block device"),
    ("pipe", "fifo", None, "a fifo"),
    ("odd", "other", None, "a special file"),
    ("odd", "socket", None, "unknown kind"),
])
def test_unsafe_members(name, kind, link, match):
    with pytest.raises(ValueError, match=match):
        r.check_member(name, kind, link)


def test_long_member_names_are_shortened_in_errors():
    with pytest.raises(ValueError) as err:
        r.check_member("l" * 4000, "symlink", "../" * 16)
    assert len(str(err.value)) < 400 and "unsafe member 'lll" in str(err.value)


def _info(name, kind=tarfile.REGTYPE, mode=0o644, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, linkname
    return info


@pytest.mark.parametrize("kind, expect", [
    (tarfile.REGTYPE, "file"), (tarfile.AREGTYPE, "file"), (tarfile.CONTTYPE, "file"),
    (tarfile.GNUTYPE_SPARSE, "file"), (tarfile.DIRTYPE, "dir"), (tarfile.SYMTYPE, "symlink"),
    (tarfile.LNKTYPE, "hardlink"), (tarfile.CHRTYPE, "chardev"), (tarfile.BLKTYPE, "blockdev"),
    (tarfile.FIFOTYPE, "fifo"), (b"Z", "other"),
])
def test_member_kind(kind, expect):
    assert r.member_kind(_info("x", kind)) == expect


@pytest.mark.parametrize("mode, kind, safe", [
    (0o644, "file", 0o644), (0o755, "file", 0o755), (0o777, "file", 0o755), (0o666, "file", 0o644),
    (0o4755, "file", 0o755), (0o2755, "file", 0o755), (0o6777, "file", 0o755), (0o400, "file", 0o600),
    (0o000, "file", 0o600), (0o1777, "dir", 0o755), (0o555, "dir", 0o755), (0o700, "dir", 0o700),
    (None, "file", 0o600),
])
def test_safe_mode(mode, kind, safe):
    assert r.safe_mode(mode, kind) == safe


def test_plan_members_keeps_files_and_dirs_with_safe_modes():
    members = [_info("./", tarfile.DIRTYPE, 0o755), _info("bin", tarfile.DIRTYPE, 0o1777),
               _info("bin/tool", mode=0o4755), _info("./VERSION", mode=0o666), _info("bin/", tarfile.DIRTYPE)]
    plan = r.plan_members(members)
    assert [(rel, kind, mode) for rel, kind, mode, _ in plan] == [
        ("bin", "dir", 0o755), ("bin/tool", "file", 0o755), ("VERSION", "file", 0o644), ("bin", "dir", 0o744)]
    assert plan[1][3] is members[2]


@pytest.mark.parametrize("members, match", [
    ([_info("app.py"), _info("./app.py")], r"unsafe member '\./app\.py': 'app\.py' appears twice"),
    ([_info("a"), _info("a/b")], r"unsafe member 'a/b': 'a' is a file in the archive"),
    ([_info("a"), _info("a", tarfile.DIRTYPE)], "appears twice"),
    ([_info("a", tarfile.DIRTYPE), _info("a")], r"unsafe member 'a': 'a' is a directory"),
    ([_info("a/b"), _info("a")], r"unsafe member 'a': 'a' is a directory"),
    ([_info("VERSION"), _info("a", tarfile.SYMTYPE, linkname="."), _info("a/x")], r"unsafe member 'a': a symlink"),
])
def test_plan_members_refuses_the_first_bad_member(members, match):
    with pytest.raises(ValueError, match=match):
        r.plan_members(members)


def test_plan_members_refuses_the_cve_2025_4517_chain(tmp_path):
    """The CVE's archive reads as inside when judged as text; its first link is refused."""
    path = tmp_path / "poc.tar.gz"
    evil_tar.build(str(path), "cve_2025_4517", "/tmp/outside")
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members if m.issym()][0] == "a"
    with pytest.raises(ValueError, match=r"unsafe member 'a': a symlink to 'ddd"):
        r.plan_members(members)


def test_prune_keeps_newest_and_linked():
    releases = {"1.0.0": 100, "1.1.0": 200, "1.2.0": 300, "1.3.0": 400, "1.4.0": 500}
    assert r.choose_prune(releases, 2, set()) == ["1.0.0", "1.1.0", "1.2.0"]
    assert r.choose_prune(releases, 2, {"1.0.0"}) == ["1.1.0", "1.2.0"]
    assert r.choose_prune(releases, 5, set()) == []
    assert r.choose_prune(releases, 10, set()) == []
    assert r.choose_prune(releases, 1, {"1.4.0", "1.0.0"}) == ["1.1.0", "1.2.0", "1.3.0"]
    assert r.choose_prune({}, 1, set()) == []


def test_prune_orders_by_install_time_not_version():
    # 1.0.1 is a hotfix installed after 2.0.0: install time decides.
    releases = {"2.0.0": 100, "1.0.1": 200, "1.9.0": 50}
    assert r.choose_prune(releases, 1, set()) == ["1.9.0", "2.0.0"]


def test_prune_unknown_install_time_counts_as_oldest():
    assert r.choose_prune({"1.0.0": None, "1.1.0": 10}, 1, set()) == ["1.0.0"]


@pytest.mark.parametrize("keep", [0, -1, 1.5, "2", None, True])
def test_prune_bad_keep(keep):
    with pytest.raises(ValueError, match="bad keep"):
        r.choose_prune({"1.0.0": 1}, keep, set())


@given(
    st.dictionaries(st.from_regex(r"\A[0-9]\.[0-9]\.[0-9]\Z"), st.floats(0, 1e9), max_size=12),
    st.integers(1, 15),
    st.data(),
)
def test_prune_properties(releases, keep, data):
    protected = set(data.draw(st.lists(st.sampled_from(sorted(releases)), max_size=2))) if releases else set()
    doomed = r.choose_prune(releases, keep, protected)
    left = set(releases) - set(doomed)
    assert not set(doomed) & protected
    assert len(left) >= min(keep, len(releases))
    assert len(left) <= keep + len(protected)
    # nothing deleted is newer than something kept (protected aside)
    kept_unprotected = [releases[v] for v in left - protected]
    if doomed and kept_unprotected:
        assert max(releases[v] for v in doomed) <= min(kept_unprotected)


def test_render_source():
    assert r.render_source("salt://hx/releases/{app}/{app}-{version}.tar.gz", "demo", "1.0.0") == \
        "salt://hx/releases/demo/demo-1.0.0.tar.gz"
    assert r.render_source("http://127.0.0.1:9000/{app}-{version}.tar.gz", "demo", "1.0.0") == \
        "http://127.0.0.1:9000/demo-1.0.0.tar.gz"
    with pytest.raises(ValueError, match="only {app} and {version}"):
        r.render_source("http://x/{name}.tgz", "demo", "1.0.0")
    with pytest.raises(ValueError, match="must start with"):
        r.render_source("/tmp/{app}.tgz", "demo", "1.0.0")
    with pytest.raises(ValueError, match="must start with"):
        r.render_source("ftp://x/{app}.tgz", "demo", "1.0.0")


def test_app_config_defaults():
    cfg = r.validate_app_config("demo", None)
    assert cfg == {
        "app": "demo", "root": "/srv/hx/apps", "source": None, "checksums": {}, "keep": 5,
        "health_path": "/health", "address": "127.0.0.1", "fetch_timeout": 60.0, "checksum_sidecar": True,
        "slots": {"blue": {"port": 8080, "service": "demo-blue"}, "green": {"port": 8081, "service": "demo-green"}},
    }


def test_app_config_full():
    cfg = r.validate_app_config("demo", {
        "root": "/opt/apps/", "source": "http://art:9000/{app}-{version}.tar.gz",
        "checksums": {"1.0.0": SHA256, "1.1.0": f"sha512={SHA512}"}, "keep": 3, "health_path": "/healthz",
        "address": "10.0.0.5", "fetch_timeout": 30, "checksum_sidecar": False,
        "slots": {"blue": {"port": 9080, "service": "web-b"}, "green": {"port": 9081, "service": None}},
    })
    assert cfg["root"] == "/opt/apps"
    assert cfg["checksums"] == {"1.0.0": f"sha256={SHA256}", "1.1.0": f"sha512={SHA512}"}
    assert cfg["slots"]["green"] == {"port": 9081, "service": None}
    assert cfg["keep"] == 3 and cfg["fetch_timeout"] == 30.0 and cfg["checksum_sidecar"] is False


@pytest.mark.parametrize("raw, match", [
    ([], r"hx:apps:demo: must be a mapping"),
    ({"rot": "/x"}, r"hx:apps:demo:rot: unknown key"),
    ({"root": "relative"}, r"hx:apps:demo:root: must be an absolute path"),
    ({"source": "file:///x"}, r"hx:apps:demo:source: .*must start with"),
    ({"source": "http://x/{nope}"}, r"hx:apps:demo:source:"),
    ({"checksums": {"1.0.0": "xyz"}}, r"hx:apps:demo:checksums:1.0.0: bad checksum"),
    ({"checksums": {"../x": SHA256}}, r"hx:apps:demo:checksums:../x: bad version"),
    ({"checksums": [SHA256]}, r"hx:apps:demo:checksums: must map"),
    ({"keep": 0}, r"hx:apps:demo:keep: must be an integer"),
    ({"keep": "5"}, r"hx:apps:demo:keep: must be an integer"),
    ({"keep": True}, r"hx:apps:demo:keep:"),
    ({"health_path": "health"}, r"hx:apps:demo:health_path:"),
    ({"address": "http://x"}, r"hx:apps:demo:address:"),
    ({"fetch_timeout": 0}, r"hx:apps:demo:fetch_timeout:"),
    ({"checksum_sidecar": "yes"}, r"hx:apps:demo:checksum_sidecar:"),
    ({"slots": {"red": {}}}, r"hx:apps:demo:slots:red: unknown slot"),
    ({"slots": {"blue": {"prot": 1}}}, r"hx:apps:demo:slots:blue:prot: unknown key"),
    ({"slots": {"blue": {"port": 70000}}}, r"hx:apps:demo:slots:blue:port:"),
    ({"slots": {"blue": {"service": ""}}}, r"hx:apps:demo:slots:blue:service:"),
    ({"slots": {"blue": {"port": 8081}}}, r"hx:apps:demo:slots: blue and green"),
])
def test_bad_app_config(raw, match):
    with pytest.raises(ValueError, match=match):
        r.validate_app_config("demo", raw)


@pytest.mark.parametrize("app", ["", "../x", "a/b", "a b", None, "-x", "x" * 65])
def test_bad_app_names(app):
    with pytest.raises(ValueError, match="bad app name"):
        r.validate_app(app)
