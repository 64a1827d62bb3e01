"""salt://hx/cleanup/disk through a real master and minion (hx-m1).

The state reads pillar ``hx:cleanup:disk`` itself: a hostile value is
refused by name before anything is removed and never reaches a shell (the
SLS used to put each directory into an ``onlyif: test -d "..."``, where a
``$(...)`` ran). The session's master and minions are reused; each test
costs a pillar refresh and one or two ``state.apply``.
"""

import os
import shutil
import tempfile
import time

import pytest

STATE_KEY = "hx_cleanup_|-hx cleanup disk_|-hx cleanup disk_|-tidied"
OLD = time.time() - 10 * 86400


def junk_dir(path):
    """A directory holding one file older than 7 days, one new file and an old file one level down."""
    path.mkdir()
    (path / "old.log").write_text("x" * 100)
    (path / "new.log").write_text("y")
    (path / "sub").mkdir()
    (path / "sub" / "old.tmp").write_text("z")
    for name in ("old.log", "sub/old.tmp"):
        os.utime(path / name, (OLD, OLD))
    return path


def listing(path):
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs)


@pytest.fixture
def outside():
    """An old file in a directory outside the allowlist (tmpfs, so the test host's disks are untouched)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else os.path.expanduser("~")
    path = tempfile.mkdtemp(prefix="hx-cleanup-outside-", dir=base)
    with open(os.path.join(path, "precious"), "w", encoding="utf-8") as fh:
        fh.write("keep")
    os.utime(os.path.join(path, "precious"), (OLD, OLD))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def apply(salt_cli, *args):
    ret = salt_cli.run("state.apply", "hx.cleanup.disk", *args, minion_tgt="hx-m1")
    return ret, (ret.data or {}).get(STATE_KEY) if isinstance(ret.data, dict) else None


def test_hostile_pillar_runs_nothing_and_removes_nothing(salt_cli, pillar, tmp_path, outside):
    good = junk_dir(tmp_path / "junk")
    canary = tmp_path / "pwned"
    (tmp_path / "escape").symlink_to(outside)
    before = listing(good)
    for dirs, match in (
        ([str(good), f"$(touch {canary})"], "must be an absolute directory path"),
        ([str(good), "/etc/../etc"], "holds '..'"),
        ([str(good), str(tmp_path / "escape")], f"resolves to '{outside}' (a symlink)"),
    ):
        pillar.set("hx-m1", {"hx": {"cleanup": {"disk": {"dirs": dirs, "age_days": 7}}}})
        ret, state = apply(salt_cli)
        assert ret.returncode != 0 and state["result"] is False, ret
        assert state["comment"].startswith("Refused: hx:cleanup:disk:dirs: "), state
        assert match in state["comment"] and state["comment"].endswith("nothing removed"), state
        assert state["changes"] == {}, state
        assert listing(good) == before, "a refused run removed files from an allowed directory"
    assert not canary.exists(), "a pillar value reached a shell"
    assert os.listdir(outside) == ["precious"]


def test_good_dir_removes_old_files_and_keeps_the_rest(salt_cli, pillar, tmp_path, outside):
    junk = junk_dir(tmp_path / "junk")
    (junk / "to-outside").symlink_to(outside)  # a link inside is removed as a link, never followed
    os.utime(junk / "to-outside", (OLD, OLD), follow_symlinks=False)
    canary = tmp_path / "pwned"
    # an allowed name full of shell syntax that does not exist: skipped, and no shell ever sees it
    quoted = f'/tmp/x"; touch {canary}; echo "'
    pillar.set("hx-m1", {"hx": {"cleanup": {"disk": {"dirs": [str(junk) + "/.", quoted], "age_days": 7}}}})

    ret, dry = apply(salt_cli, "test=True")
    assert dry["result"] is None, ret
    due = sorted(os.path.relpath(p, junk) for p in dry["changes"]["removed"])
    assert due == ["old.log", "sub/old.tmp", "to-outside"], dry
    assert listing(junk) == ["new.log", "old.log", "sub", "sub/old.tmp", "to-outside"]

    ret, state = apply(salt_cli)
    assert ret.returncode == 0 and state["result"] is True, ret
    assert sorted(os.path.relpath(p, junk) for p in state["changes"]["removed"]) == due
    assert listing(junk) == ["new.log", "sub"]
    assert f"{quoted}: absent, nothing to remove" in state["comment"], state
    assert not canary.exists() and os.listdir(outside) == ["precious"]
