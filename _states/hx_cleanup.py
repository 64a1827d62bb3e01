"""
State ``hx_cleanup.tidied``: remove old files from the cleanup directories
of pillar ``hx:cleanup:disk`` (applied by ``salt://hx/cleanup/disk.sls``).

.. code-block:: yaml

    hx cleanup disk:
      hx_cleanup.tidied: []

The pillar is read here, never rendered into an SLS: no value of it reaches
a shell, a command line or the YAML of a state. Every directory is
normalised and checked against the allowlist (``_utils/hx_paths.py``), once
as written and once resolved by the filesystem, before anything is removed;
one refused directory refuses the run.

Removal is by descriptor (``os.fwalk``, ``unlink(dir_fd=...)``), not by path:
a local user who swaps a directory below ``/tmp`` for a symlink between the
walk and the removal cannot redirect it, which a path-based walk then remove
(Salt's ``file.tidied``) allows. Only regular files and symlinks go;
directories, sockets and fifos stay; the walk does not follow symlinks nor
enter another filesystem.
"""

import logging
import os
import stat
import time

try:
    import hx_paths

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "hx_cleanup"
SHOWN_FAILURES = 5


def __virtual__():
    if _IMPORT_ERROR:
        return (False, f"hx_cleanup state: hx-ops utils not importable ({_IMPORT_ERROR}); sync _utils")
    return __virtualname__


def _tidy(top, cfg, now, test):
    """(paths removed or due, failures) under the real directory ``top``."""
    removed, failed = [], []

    def onerror(exc):
        failed.append(f"{exc.filename}: {exc.strerror}")

    top_dev = os.lstat(top).st_dev
    # follow_symlinks=False: fwalk checks that each directory it opens is the one it listed.
    for root, dirs, files, root_fd in os.fwalk(top, onerror=onerror, follow_symlinks=False):
        keep_dirs = []
        for entry in files + dirs:
            path = os.path.join(root, entry)
            try:
                st = os.stat(entry, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                failed.append(f"{path}: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev == top_dev:
                    keep_dirs.append(entry)
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue
            if not hx_paths.removable(entry, st.st_mtime, now, cfg["age_days"], cfg["matches"]):
                continue
            if not test:
                try:
                    os.unlink(entry, dir_fd=root_fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    failed.append(f"{path}: {exc.strerror}")
                    continue
            removed.append(path)
        dirs[:] = [d for d in dirs if d in keep_dirs]
    return removed, failed


def tidied(name, dirs=None, age_days=None, key=None):
    """
    Remove files older than ``age_days`` (by mtime) whose name matches one of
    ``matches`` from every directory of pillar ``hx:cleanup:disk:dirs``.

    name
        State id (free text).
    dirs, age_days, key
        Instead of the pillar: these directories, files older than
        ``age_days`` (a number of days), every name; errors name ``key``.
        ``hx_maint.run`` cleans ``hx:maintenance:cleanup:tmp_dirs`` this way.

    Refused, with ``result: False`` and nothing removed: a directory outside
    the allowlist (/tmp, /var/tmp, /srv/hx/tmp or below them, a subdirectory
    of /var/log), written with ``..``, a control character or relative, or
    one that resolves outside it through a symlink; a bad ``age_days`` or
    ``matches``. The comment names the pillar key. A listed directory that
    does not exist is skipped. Under ``test=True`` the result is None when
    something would be removed and ``changes.removed`` lists it.

    CLI Example:

    .. code-block:: bash

        salt web1 state.single hx_cleanup.tidied 'hx cleanup disk' test=True
        salt web1 state.apply hx.cleanup.disk
    """
    ret = {"name": name, "result": False, "changes": {}, "comment": ""}
    try:
        if dirs is None:
            cfg = hx_paths.cleanup_settings(__salt__["pillar.get"](hx_paths.KEY, {}, unmask=True))
            key = hx_paths.DIRS_KEY
        else:
            key = key or "dirs"
            cfg = hx_paths.given_settings(dirs, age_days, key)
        targets = [(path, hx_paths.cleanup_dir(path, resolved=os.path.realpath(path), key=key))
                   for path in cfg["dirs"]]
    except ValueError as exc:
        ret["comment"] = f"Refused: {exc}; nothing removed"
        log.warning("hx_cleanup: refused: %s", exc)
        return ret
    if not targets:
        ret.update(result=True, comment=f"{hx_paths.DIRS_KEY} is empty; nothing to remove")
        return ret
    test = bool(__opts__.get("test"))
    now = time.time()
    removed, failed, notes = [], [], []
    for configured, real in targets:
        if not os.path.isdir(real):
            notes.append(f"{configured}: absent, nothing to remove")
            continue
        gone, bad = _tidy(real, cfg, now, test)
        removed += gone
        failed += bad
        note = f"{configured}: {len(gone)} file(s) {'would be removed' if test else 'removed'}"
        notes.append(note + (f", {len(bad)} failed" if bad else ""))
    if removed:
        ret["changes"] = {"removed": removed}
        if not test:
            log.info("hx_cleanup: removed %d file(s) older than %d days", len(removed), cfg["age_days"])
    ret["comment"] = "; ".join(notes)
    if failed:
        ret["comment"] += ". Failed: " + "; ".join(failed[:SHOWN_FAILURES]) + (
            f" and {len(failed) - SHOWN_FAILURES} more" if len(failed) > SHOWN_FAILURES else "")
        return ret
    ret["result"] = None if test and removed else True
    return ret
