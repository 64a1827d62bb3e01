"""hx_cleanup.tidied loaded by Salt's loader against a real directory tree (no master).

Through a real minion and the SLS: tests/integration/test_cleanup.py.
"""

import os
import socket
import time

import pytest

from tests.support.loader import LoadedMinion, minion_opts

OLD = time.time() - 30 * 86400


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    return minion_opts(tmp_path_factory.mktemp("minion"))


def tidied(opts, disk, test=False):
    minion = LoadedMinion(opts, {"hx": {"cleanup": {"disk": disk}}}, test=test)
    return minion.states["hx_cleanup.tidied"]("hx cleanup disk")


def old(path):
    os.utime(path, (OLD, OLD), follow_symlinks=False)
    return path


@pytest.fixture
def tree(tmp_path):
    """junk/ with old files of every kind, a link out of it, and a victim directory outside it."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep")
    old(victim / "precious")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.log").write_text("x")
    (junk / "b.tmp").write_text("x")
    (junk / "fresh.log").write_text("x")
    os.mkfifo(junk / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(junk / "sock"))
    (junk / "dir").mkdir()
    (junk / "dir" / "c.log").write_text("x")
    (junk / "out").symlink_to(victim)  # a link to a directory: removed as a link, never entered
    for name in ("a.log", "b.tmp", "fifo", "sock", "dir/c.log", "out", "dir"):
        old(junk / name)
    yield junk, victim
    sock.close()


def names(path):
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs)


def test_test_mode_lists_and_removes_nothing(opts, tree):
    junk, _ = tree
    before = names(junk)
    ret = tidied(opts, {"dirs": [str(junk)], "age_days": 7}, test=True)
    assert ret["result"] is None, ret
    assert sorted(os.path.relpath(p, junk) for p in ret["changes"]["removed"]) == ["a.log", "b.tmp", "dir/c.log", "out"]
    assert names(junk) == before


def test_only_old_matching_files_and_links_go_never_through_a_link(opts, tree):
    junk, victim = tree
    ret = tidied(opts, {"dirs": [str(junk) + "/"], "age_days": 7, "matches": [r".*\.log", "out"]})
    assert ret["result"] is True, ret
    assert sorted(os.path.relpath(p, junk) for p in ret["changes"]["removed"]) == ["a.log", "dir/c.log", "out"]
    assert names(junk) == ["b.tmp", "dir", "fifo", "fresh.log", "sock"]
    assert names(victim) == ["precious"]


def test_nothing_to_do_and_absent_dirs(opts, tmp_path):
    assert tidied(opts, {})["comment"] == "hx:cleanup:disk:dirs is empty; nothing to remove"
    ret = tidied(opts, {"dirs": [str(tmp_path / "missing")]})
    assert ret["result"] is True and ret["changes"] == {} and "absent, nothing to remove" in ret["comment"], ret


@pytest.mark.parametrize("disk, match", [
    ({"dirs": ["/etc/."]}, "hx:cleanup:disk:dirs: '/etc/.' is not a cleanup directory"),
    ({"dirs": ["/var/lib"]}, "hx:cleanup:disk:dirs: '/var/lib' is not a cleanup directory"),
    ({"dirs": "/tmp"}, "hx:cleanup:disk:dirs: must be a list"),
    ({"dirs": ["/tmp"], "age_days": 0}, "hx:cleanup:disk:age_days"),
    ({"dirs": ["/tmp"], "matches": ["("]}, "hx:cleanup:disk:matches"),
])
def test_refused_settings_remove_nothing(opts, tree, disk, match):
    junk, _ = tree
    before = names(junk)
    disk = dict(disk)
    if isinstance(disk["dirs"], list):
        disk["dirs"] = [str(junk)] + disk["dirs"]
    ret = tidied(opts, disk)
    assert ret["result"] is False and ret["changes"] == {}, ret
    assert match in ret["comment"] and ret["comment"].endswith("nothing removed"), ret
    assert names(junk) == before


def test_a_symlinked_dir_resolving_outside_is_refused(opts, tree, tmp_path):
    junk, victim = tree
    # junk lives under /tmp (allowed); a link from /tmp into a directory outside the allowlist is refused
    outside = "/dev/shm" if os.path.isdir("/dev/shm") else os.path.expanduser("~")
    link = tmp_path / "to-outside"
    link.symlink_to(outside)
    ret = tidied(opts, {"dirs": [str(junk), str(link)]})
    assert ret["result"] is False, ret
    assert f"resolves to '{os.path.realpath(outside)}' (a symlink)" in ret["comment"], ret
    assert "a.log" in names(junk) and names(victim) == ["precious"]


def test_a_directory_swapped_for_a_symlink_mid_run_cannot_redirect_a_removal(opts, tmp_path, monkeypatch):
    """The classic temp-cleaner race, at its worst moment: after the entry was judged, before it is removed."""
    junk, victim = tmp_path / "junk", tmp_path / "victim"
    (junk / "x").mkdir(parents=True)
    victim.mkdir()
    for path in (junk / "x" / "bait", victim / "bait"):
        path.write_text("x")
        old(path)
    minion = LoadedMinion(opts, {"hx": {"cleanup": {"disk": {"dirs": [str(junk)], "age_days": 7}}}})
    state = minion.states["hx_cleanup.tidied"]
    paths = state.func.__globals__["hx_paths"]
    judge = paths.removable
    swapped = []

    def attacker(name, *args):
        if name == "bait" and not swapped:
            (junk / "x").rename(junk / "x.moved")
            (junk / "x").symlink_to(victim)
            swapped.append(True)
        return judge(name, *args)

    monkeypatch.setattr(paths, "removable", attacker)
    ret = state("hx cleanup disk")
    assert swapped and ret["result"] is True, ret
    assert (victim / "bait").exists(), "the removal followed the swapped-in symlink"
    assert not (junk / "x.moved" / "bait").exists()


def test_directories_handed_over_by_the_maintenance_runner(opts, tree, tmp_path):
    """hx_maint.run passes hx:maintenance:cleanup:tmp_dirs as arguments: the same allowlist and
    removal by descriptor, errors naming that key, and a link inside never followed."""
    junk, victim = tree
    state = LoadedMinion(opts, {}).states["hx_cleanup.tidied"]
    key = "hx:maintenance:cleanup:tmp_dirs"
    ret = state("hx maintenance cleanup", dirs=[str(junk)], age_days=0.5, key=key)
    assert ret["result"] is True, ret
    assert sorted(os.path.relpath(p, junk) for p in ret["changes"]["removed"]) == ["a.log", "b.tmp", "dir/c.log", "out"]
    assert names(victim) == ["precious"]
    for bad, match in (("/etc", "is not a cleanup directory"), (f"{junk}/../victim", "holds '..'")):
        ret = state("hx maintenance cleanup", dirs=[bad], age_days=1, key=key)
        assert ret["result"] is False and ret["changes"] == {} and f"{key}: {bad!r} {match}" in ret["comment"], ret
    ret = state("hx maintenance cleanup", dirs=[str(junk)], age_days=float("inf"), key=key)
    assert ret["result"] is False and f"{key}: age must be a number of days" in ret["comment"], ret
    assert names(victim) == ["precious"] and "fresh.log" in names(junk)
