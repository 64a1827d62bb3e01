"""
Releases of an app in blue/green slots: install a version into its own
directory, point a slot at it, restart the slot's service, prune old ones.

Layout under pillar ``hx:apps:<app>:root`` (default ``/srv/hx/apps``)::

    <root>/<app>/releases/<version>/          extracted tarball + .hx-release.json
    <root>/<app>/blue  -> releases/1.0.0      slot links, swapped atomically
    <root>/<app>/green -> releases/1.1.0

The slot's service (an ``hx_service`` service) runs from its link, so a
restart picks up whatever the link points at. Pure logic (names, checksums,
tar member safety, prune choice, pillar) is ``_utils/hx_releases.py``.

Checksums: an http(s) source must be verified. The expected checksum comes
from, in order, the ``checksum`` argument, pillar ``hx:apps:<app>:checksums``,
or ``<source>.sha256`` next to the artifact (unless ``checksum_sidecar:
false``); none of them -> CommandExecutionError before downloading. A
``salt://`` source comes over the authenticated master channel, so its
checksum is optional (verified when given, recorded always).

Failed restart after a switch: the slot is LEFT pointing at the new release
and CommandExecutionError says so, naming the previous version and the
``hx_release.activate`` call that points it back. The caller (the deploy
runner) owns the rollback decision; old releases are not pruned then.
"""

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zlib

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None

try:
    import requests

    HAS_REQUESTS = True
except ImportError:  # pragma: no cover
    HAS_REQUESTS = False

try:
    import hx_errors
    import hx_releases

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "hx_release"

META = ".hx-release.json"  # = hx_releases.META_NAME, which no archive member may be
CONNECT_TIMEOUT = 5.0
SIDECAR_TIMEOUT = 10.0
HEALTH_TIMEOUT = 2.0
CHUNK = 1 << 16


def __virtual__():
    if _IMPORT_ERROR:
        return (False, f"hx_release: hx-ops utils not importable ({_IMPORT_ERROR}); sync _utils")
    if not HAS_REQUESTS:
        return (False, "hx_release: the requests python library is not installed")
    if fcntl is None:
        return (False, "hx_release: needs fcntl (POSIX)")
    return __virtualname__


# --------------------------------------------------------------------------
# configuration and argument checks (all before anything is touched)


def _config(app):
    try:
        hx_releases.validate_app(app)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from exc
    # Salt 3008 masks pillar leaves for module callers unless unmask=True.
    apps = __salt__["pillar.get"]("hx:apps", {}, unmask=True)
    if not isinstance(apps, dict):
        raise hx_errors.ConfigError(f"malformed pillar: hx:apps must be a mapping, got {type(apps).__name__}")
    if app not in apps:
        raise SaltInvocationError(
            f"unknown app '{app}': not in pillar hx:apps (known: {', '.join(sorted(apps)) or 'none'})"
        )
    try:
        return hx_releases.validate_app_config(app, apps[app])
    except ValueError as exc:
        raise hx_errors.ConfigError(f"malformed pillar: {exc}") from exc


def _arg(func, value, what):
    try:
        return func(value)
    except ValueError as exc:
        raise SaltInvocationError(f"{what}: {exc}") from exc


def _source(cfg, version, source):
    """The rendered source: a typed ``source=`` is the user's, the pillar's is configuration."""
    if source:
        return _arg(lambda s: hx_releases.render_source(s, cfg["app"], version), source, "source")
    try:
        return hx_releases.render_source(cfg["source"], cfg["app"], version)
    except ValueError as exc:
        raise hx_errors.ConfigError(f"hx:apps:{cfg['app']}:source: {exc}") from exc


def _bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _paths(cfg):
    app_dir = os.path.join(cfg["root"], cfg["app"])
    return app_dir, os.path.join(app_dir, "releases")


def _service_for(cfg, slot, restart):
    """The slot's hx_service name, checked with hx_service before any change."""
    service = cfg["slots"][slot]["service"]
    if not restart or not service:
        return None
    if "hx_service.restart" not in __salt__:
        raise CommandExecutionError(
            f"{cfg['app']}: slot {slot} has service {service} but hx_service is not loaded (sync _modules)"
        )
    # The service name is the pillar's: hx_service's "unknown service" usage error is configuration here.
    try:
        __salt__["hx_service.status"](service)
    except SaltInvocationError as exc:
        raise hx_errors.ConfigError(f"hx:apps:{cfg['app']}:slots:{slot}:service: {exc}") from exc
    return service


def _check_slot_path(cfg, slot):
    link = os.path.join(_paths(cfg)[0], slot)
    if os.path.lexists(link) and not os.path.islink(link):
        raise CommandExecutionError(f"{link} exists and is not a symlink; move it away before using slot {slot}")
    return link


# --------------------------------------------------------------------------
# facts


def _read_meta(rel_dir):
    try:
        with open(os.path.join(rel_dir, META), encoding="utf-8") as fh:
            meta = json.load(fh)
        return meta if isinstance(meta, dict) else None
    except (OSError, ValueError):
        return None


def _installed(cfg):
    """{version: meta} of every release directory (meta None when unrecorded)."""
    releases_dir = _paths(cfg)[1]
    try:
        names = os.listdir(releases_dir)
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        path = os.path.join(releases_dir, name)
        try:
            hx_releases.validate_version(name)
        except ValueError:
            continue  # .incoming-*/.trash-* work dirs and strays
        if os.path.isdir(path) and not os.path.islink(path):
            out[name] = _read_meta(path)
    return out


def _slot_version(cfg, slot):
    """Version a slot link points at (None: no link; '?<target>' if foreign)."""
    app_dir, releases_dir = _paths(cfg)
    link = os.path.join(app_dir, slot)
    try:
        target = os.readlink(link)
    except (FileNotFoundError, OSError):
        return None
    full = os.path.normpath(os.path.join(app_dir, target))
    if os.path.dirname(full) == os.path.normpath(releases_dir):
        return os.path.basename(full)
    return f"?{target}"


def _linked(cfg):
    return {slot: _slot_version(cfg, slot) for slot in hx_releases.SLOTS}


def _running_version(cfg, slot):
    """(version reported by the slot's process, health word or error)."""
    port = cfg["slots"][slot]["port"]
    url = f"http://{cfg['address']}:{port}{cfg['health_path']}"
    try:
        resp = requests.get(url, timeout=HEALTH_TIMEOUT)
    except requests.exceptions.RequestException as exc:
        return None, f"unreachable: {type(exc).__name__}"
    try:
        body = resp.json()
    except ValueError:
        body = {}
    version = body.get("version") if isinstance(body, dict) else None
    return (version if isinstance(version, str) else None), ("ok" if resp.status_code == 200 else f"http {resp.status_code}")


def _service_status(service):
    """``(hx_service.status row, error)`` of a slot's service."""
    if not service:
        return {}, None
    if "hx_service.status" not in __salt__:
        return {"state": "unknown"}, "hx_service not loaded"
    try:
        return __salt__["hx_service.status"](service)[service], None
    except (CommandExecutionError, SaltInvocationError, KeyError) as exc:
        return {"state": "unknown"}, str(exc)


def _service_state(service):
    row, error = _service_status(service)
    return row.get("state"), error


# --------------------------------------------------------------------------
# fetching and verifying


def _digests(path):
    hashes = {algo: hashlib.new(algo) for algo in hx_releases.ALGOS}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            for h in hashes.values():
                h.update(block)
    return {algo: h.hexdigest() for algo, h in hashes.items()}


def _http_get_text(url, timeout):
    try:
        resp = requests.get(url, timeout=(CONNECT_TIMEOUT, timeout))
    except requests.exceptions.RequestException as exc:
        raise CommandExecutionError(f"cannot fetch {url}: {exc}") from exc
    return resp.status_code, resp.text


def _expected_checksum(cfg, version, source, checksum):
    """(spec, origin) or (None, None); http(s) without any -> CommandExecutionError."""
    if checksum is not None:
        return _arg(hx_releases.normalize_checksum, checksum, "checksum"), "argument"
    if version in cfg["checksums"]:
        return cfg["checksums"][version], "pillar"
    if source.startswith("salt://"):
        return None, None
    if cfg["checksum_sidecar"]:
        url = source + ".sha256"
        code, text = _http_get_text(url, SIDECAR_TIMEOUT)
        if code == 200:
            try:
                return hx_releases.format_checksum(*hx_releases.parse_sidecar(text)), url
            except ValueError as exc:
                raise CommandExecutionError(f"{url}: {exc}") from exc
        where = f"; {url} answered HTTP {code}"
    else:
        where = " (checksum_sidecar is off)"
    raise CommandExecutionError(
        f"{cfg['app']} {version}: an http(s) source needs a checksum: pass checksum=, set "
        f"hx:apps:{cfg['app']}:checksums:{version}, or publish {source}.sha256{where}"
    )


def _download(cfg, source, dest_dir):
    """Fetch ``source`` to a local file; explicit timeouts for http(s)."""
    if source.startswith("salt://"):
        path = __salt__["cp.cache_file"](source)
        if not path:
            raise CommandExecutionError(f"{source} not found on the master's file server")
        return path
    os.makedirs(dest_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download.", dir=dest_dir)
    deadline = time.monotonic() + cfg["fetch_timeout"]
    try:
        # Salt's own http fetch (cp.cache_file) waits up to 3600 s; a slow
        # artifact server must not hold a deployment that long.
        with os.fdopen(fd, "wb") as out, requests.get(
            source, stream=True, timeout=(CONNECT_TIMEOUT, cfg["fetch_timeout"])
        ) as resp:
            if resp.status_code != 200:
                raise CommandExecutionError(f"cannot fetch {source}: HTTP {resp.status_code}")
            for block in resp.iter_content(CHUNK):
                out.write(block)
                if time.monotonic() > deadline:
                    raise CommandExecutionError(
                        f"cannot fetch {source}: not complete within fetch_timeout={cfg['fetch_timeout']:g}s"
                    )
        return tmp
    except requests.exceptions.RequestException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CommandExecutionError(f"cannot fetch {source}: {exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _verify(path, digests, expected, source):
    if expected is None:
        return
    algo, want = hx_releases.parse_checksum(expected)
    if digests[algo] != want:
        raise CommandExecutionError(
            f"checksum mismatch for {source}: expected {algo}={want}, got {algo}={digests[algo]}; nothing changed"
        )


def _extract(archive, target_dir, meta):
    """
    Validate every member, write them under a fresh staging directory, then
    rename it into place: a release directory is complete or absent.

    tarfile's extraction (and its filters) is not used: on Python before
    3.11.13 its "data" filter lets a chain of long symlinks write outside the
    target (CVE-2025-4517; docs/architecture.md, measured traps). Only
    regular files and directories are accepted (hx_releases.plan_members),
    and each is created here relative to an open directory descriptor with
    O_NOFOLLOW (and O_EXCL for files), so nothing is ever written through a
    link, whatever the archive or a concurrent process put on disk.
    """
    source = meta["source"]
    try:
        tar = tarfile.open(archive, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CommandExecutionError(f"{source}: not a readable tar.gz ({exc})") from exc
    with tar:
        try:
            plan = hx_releases.plan_members(tar.getmembers())
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise CommandExecutionError(f"{source}: not a readable tar.gz ({exc})") from exc
        except ValueError as exc:
            raise CommandExecutionError(f"{source}: rejected, {exc}; nothing changed") from exc
        parent = os.path.dirname(target_dir)
        os.makedirs(parent, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".incoming-{os.path.basename(target_dir)}-", dir=parent)
        try:
            root_fd = os.open(work, _DIR_FLAGS)
            try:
                for rel, kind, mode, member in plan:
                    try:
                        _write_member(tar, root_fd, rel, kind, mode, member)
                    except _READ_WRITE_ERRORS as exc:
                        raise CommandExecutionError(
                            f"{source}: rejected, member {rel!r} cannot be written safely ({exc}); nothing changed"
                        ) from exc
                _write_new(root_fd, META, json.dumps(meta, indent=1, sort_keys=True).encode(), 0o644)
            finally:
                os.close(root_fd)
            os.chmod(work, 0o755)
            if os.path.lexists(target_dir):
                # Renaming onto an empty directory would succeed silently: never replace anything here.
                raise CommandExecutionError(f"{target_dir} appeared while {source} was extracted; nothing changed")
            os.rename(work, target_dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise


# A truncated or corrupt stream fails while a member is read (zlib, EOF); an
# absurd mtime fails in utime (OverflowError/ValueError).
_READ_WRITE_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, OverflowError, ValueError)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_dir(root_fd, parts):
    """A descriptor of ``root/<parts>``, creating missing directories; each step is a real directory."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:  # plan_members never gives these; never trust a caller
                raise OSError(f"bad path component {part!r}")
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            # O_NOFOLLOW: a symlink in this place fails (ELOOP) instead of being followed.
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(f"{part!r} is not a directory")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _write_new(dir_fd, name, data, mode, mtime=None):
    fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=dir_fd)
    with os.fdopen(fd, "wb") as out:
        if isinstance(data, bytes):
            out.write(data)
        else:
            shutil.copyfileobj(data, out, CHUNK)
        out.flush()
        os.fchmod(out.fileno(), mode)
        if mtime is not None:
            os.utime(out.fileno(), (mtime, mtime))


def _write_member(tar, root_fd, rel, kind, mode, member):
    parts = rel.split("/")
    fd = _open_dir(root_fd, parts if kind == "dir" else parts[:-1])
    try:
        if kind == "dir":
            os.fchmod(fd, mode)
            return
        src = tar.extractfile(member)
        if src is None:  # pragma: no cover - plan_members lets only regular files through
            raise OSError("not a regular file")
        with src:
            _write_new(fd, parts[-1], src, mode, mtime=member.mtime)
    finally:
        os.close(fd)


def _point(cfg, slot, version):
    """Atomically (temp symlink + os.replace) point ``slot`` at ``version``."""
    app_dir = _paths(cfg)[0]
    link = os.path.join(app_dir, slot)
    tmp = os.path.join(app_dir, f".{slot}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.symlink(os.path.join("releases", version), tmp)
    try:
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CommandExecutionError(f"cannot point {link} at {version}: {exc}") from exc


@contextlib.contextmanager
def _lock(cfg):
    app_dir = _paths(cfg)[0]
    os.makedirs(app_dir, exist_ok=True)
    with open(os.path.join(app_dir, ".hx-release.lock"), "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # one install/activate/prune of an app at a time
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _delete(cfg, version):
    releases_dir = _paths(cfg)[1]
    path = os.path.join(releases_dir, version)
    # Rename first: a half-deleted tree must never look like a release.
    trash = tempfile.mkdtemp(prefix=f".trash-{version}-", dir=releases_dir)
    os.rename(path, os.path.join(trash, version))
    shutil.rmtree(trash, ignore_errors=True)


def _prune(cfg, keep):
    installed = _installed(cfg)
    releases_dir = _paths(cfg)[1]
    stamps = {}
    for version, meta in installed.items():
        stamp = meta.get("installed_at") if meta else None
        if not isinstance(stamp, (int, float)):
            stamp = os.stat(os.path.join(releases_dir, version)).st_mtime
        stamps[version] = stamp
    protected = {v for v in _linked(cfg).values() if v}
    doomed = hx_releases.choose_prune(stamps, keep, protected)
    for version in doomed:
        _delete(cfg, version)
    return doomed


def _needs_restart(cfg, slot, service, version, link_changed):
    """A restart is due when the link moved or the process is not serving ``version`` healthily."""
    if not service:
        return False
    if link_changed:
        return True
    state, _ = _service_state(service)
    running, health = _running_version(cfg, slot)
    return state != "running" or health != "ok" or (running is not None and running != version)


def _restart(cfg, slot, service, version, previous, link_changed):
    """Restart the slot's service if due; on failure the slot stays on ``version``."""
    if not _needs_restart(cfg, slot, service, version, link_changed):
        running = _running_version(cfg, slot)[0] if service else None
        return {"restarted": False, "running_version": running}
    try:
        __salt__["hx_service.restart"](service)
    except (CommandExecutionError, SaltInvocationError) as exc:
        raise CommandExecutionError(_failed(cfg, slot, version, previous, f"restart of {service} failed: {exc}")) from exc
    running, health = _running_version(cfg, slot)
    if running is not None and running != version:
        raise CommandExecutionError(
            _failed(cfg, slot, version, previous, f"{service} restarted but reports version {running} ({health})")
        )
    return {"restarted": True, "running_version": running}


def _failed(cfg, slot, version, previous, why):
    back = (f"salt-call hx_release.activate {cfg['app']} {previous} {slot}" if previous and not previous.startswith("?")
            else "no previous release to go back to")
    return (f"{cfg['app']}: slot {slot} now points at {version} (was {previous or 'nothing'}) but {why}; "
            f"the slot was left on {version}. To go back: {back}")


# --------------------------------------------------------------------------
# public API


def plan(app, version, slot, source=None, checksum=None):
    """
    What ``install`` (and the ``hx_release.deployed`` state) would do for a
    slot, changing nothing: whether the release is installed, where the slot
    points, what its process reports, and ``would``: a list of install |
    link | restart (empty: up to date).

    A slot is up to date when its link points at ``version`` and its service
    (if any) is running, healthy and reports ``version`` (or no version at all).

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.plan demo 1.1.0 green
    """
    cfg = _config(app)
    version = _arg(hx_releases.validate_version, version, "version")
    slot = _arg(hx_releases.validate_slot, slot, "slot")
    expected = _arg(hx_releases.normalize_checksum, checksum, "checksum") if checksum is not None else cfg["checksums"].get(version)
    source = _source(cfg, version, source) if source or cfg["source"] else None
    installed = _installed(cfg)
    meta = installed.get(version)
    service = cfg["slots"][slot]["service"]
    state, error = _service_state(service)
    running, health = _running_version(cfg, slot)
    link = _slot_version(cfg, slot)
    checksum_match = None
    if meta and expected:
        algo, want = hx_releases.parse_checksum(expected)
        checksum_match = (meta.get("digests") or {}).get(algo) == want
    would = []
    if meta is None or checksum_match is False:
        would.append("install")
    if link != version:
        would.append("link")
    if service and (would or state != "running" or health != "ok" or running not in (version, None)):
        would.append("restart")
    out = {"app": app, "slot": slot, "version": version, "source": source, "installed": meta is not None,
           "checksum_match": checksum_match, "link": link, "service": service, "state": state,
           "running_version": running, "health": health, "would": would}
    if error:
        out["error"] = error
    return out


def install(app, version, slot, source=None, checksum=None, restart=True):
    """
    Install ``version`` of ``app`` and point ``slot`` at it: fetch, verify the
    checksum, extract safely into ``<root>/<app>/releases/<version>/``, write
    ``.hx-release.json``, swap the slot link atomically, restart the slot's
    service (``hx_service.restart`` waits for health) and prune old releases.

    app
        An app declared in pillar ``hx:apps``.
    version
        ``MAJOR.MINOR.PATCH[-suffix]``.
    slot
        ``blue`` or ``green``.
    source
        Artifact URL (``salt://``, ``http://``, ``https://``); default: pillar
        ``hx:apps:<app>:source`` with ``{app}``/``{version}`` filled in.
    checksum
        ``sha256=<hex>``, ``sha512=<hex>`` or a bare sha256 hex. Required for
        http(s) unless pillar ``checksums`` or ``<source>.sha256`` has it.
    restart
        Restart the slot's service after the switch (default True).

    An already-installed version with the same checksum is reused (nothing
    fetched when the checksum is known up front). A checksum mismatch, or a
    tarball holding anything but regular files and directories (links,
    devices, fifos) or an absolute/``..`` name, raises CommandExecutionError
    naming the member and changes nothing. A failed restart raises
    CommandExecutionError after the switch: the slot stays on the new release
    (see the message for the ``activate`` call that points it back).

    Returns ``{app, slot, version, previous, release_dir, source, checksum,
    installed (False when reused), link_changed, restarted, service,
    running_version, pruned, result: True}``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.install demo 1.1.0 green
        salt app1 hx_release.install app=demo version=1.1.0 slot=green checksum=sha256=9f86d0...
    """
    cfg = _config(app)
    version = _arg(hx_releases.validate_version, version, "version")
    slot = _arg(hx_releases.validate_slot, slot, "slot")
    restart = _bool(restart)
    if source is None and not cfg["source"]:
        raise SaltInvocationError(f"no source: pass source= or set pillar hx:apps:{app}:source")
    source = _source(cfg, version, source)
    _check_slot_path(cfg, slot)
    service = _service_for(cfg, slot, restart)
    expected, origin = _expected_checksum(cfg, version, source, checksum)
    app_dir, releases_dir = _paths(cfg)
    rel_dir = os.path.join(releases_dir, version)

    with _lock(cfg):
        meta = _read_meta(rel_dir) if os.path.isdir(rel_dir) else None
        reuse = False
        if meta and expected:
            algo, want = hx_releases.parse_checksum(expected)
            if (meta.get("digests") or {}).get(algo) != want:
                raise CommandExecutionError(
                    f"{app} {version} is already installed with a different checksum "
                    f"({meta.get('checksum')}, expected {expected} from {origin}); nothing changed. "
                    f"Remove it first: hx_release.remove {app} {version}"
                )
            reuse = True
        if not reuse:
            archive = _download(cfg, source, os.path.join(releases_dir, ".downloads"))
            try:
                digests = _digests(archive)
                _verify(archive, digests, expected, source)
                if meta:
                    # Known release, checksum only learnt now (salt:// without a pinned checksum).
                    if (meta.get("digests") or {}).get("sha256") != digests["sha256"]:
                        raise CommandExecutionError(
                            f"{app} {version} is already installed from different content "
                            f"({meta.get('checksum')}, {source} has sha256={digests['sha256']}); nothing changed. "
                            f"Remove it first: hx_release.remove {app} {version}"
                        )
                    reuse = True
                else:
                    if os.path.lexists(rel_dir):
                        # An unrecorded directory (interrupted by hand, or copied in): replace it.
                        if rel_dir in (os.path.join(releases_dir, v) for v in _linked(cfg).values() if v):
                            raise CommandExecutionError(
                                f"{rel_dir} has no {META} but a slot points at it; fix it by hand"
                            )
                        _delete(cfg, version)
                    new_meta = {
                        "app": app,
                        "version": version,
                        "source": source,
                        "checksum": expected or hx_releases.format_checksum("sha256", digests["sha256"]),
                        "checksum_origin": origin or "computed",
                        "digests": digests,
                        "installed_at": time.time(),
                        "installed_by": __opts__.get("id"),
                    }
                    _extract(archive, rel_dir, new_meta)
                    meta = new_meta
            finally:
                if not source.startswith("salt://"):
                    with contextlib.suppress(OSError):
                        os.unlink(archive)

        previous = _slot_version(cfg, slot)
        link_changed = previous != version
        if link_changed:
            _point(cfg, slot, version)
            log.info("hx_release: %s slot %s -> %s (was %s)", app, slot, version, previous)
        out = {"app": app, "slot": slot, "version": version, "previous": previous, "release_dir": rel_dir,
               "source": meta.get("source", source), "checksum": meta.get("checksum"), "installed": not reuse,
               "link_changed": link_changed, "service": service}
        out.update(_restart(cfg, slot, service, version, previous, link_changed))
        out["pruned"] = _prune(cfg, cfg["keep"])
        out["result"] = True
        return out


def activate(app, version, slot, restart=True):
    """
    Point ``slot`` at an already-installed release and restart the slot's
    service (e.g. to go back after a failed deploy).

    Returns ``{app, slot, version, previous, link_changed, restarted,
    service, running_version, result: True}``. A release that is not
    installed raises CommandExecutionError listing the installed ones; a
    failed restart raises CommandExecutionError with the slot left on
    ``version``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.activate demo 1.0.0 green
    """
    cfg = _config(app)
    version = _arg(hx_releases.validate_version, version, "version")
    slot = _arg(hx_releases.validate_slot, slot, "slot")
    restart = _bool(restart)
    _check_slot_path(cfg, slot)
    service = _service_for(cfg, slot, restart)
    with _lock(cfg):
        installed = _installed(cfg)
        if installed.get(version) is None:
            raise CommandExecutionError(
                f"{app} {version} is not installed (installed: {', '.join(sorted(installed)) or 'none'}); "
                f"use hx_release.install"
            )
        previous = _slot_version(cfg, slot)
        link_changed = previous != version
        if link_changed:
            _point(cfg, slot, version)
            log.info("hx_release: %s slot %s -> %s (was %s)", app, slot, version, previous)
        out = {"app": app, "slot": slot, "version": version, "previous": previous,
               "link_changed": link_changed, "service": service}
        out.update(_restart(cfg, slot, service, version, previous, link_changed))
        out["result"] = True
        return out


def releases(app):
    """
    Installed releases of ``app``, oldest first: ``[{version, installed_at,
    checksum, source, slots: [slots pointing at it]}]``. A directory without
    ``.hx-release.json`` is listed with ``recorded: False``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.releases demo
    """
    cfg = _config(app)
    linked = _linked(cfg)
    rows = []
    for version, meta in _installed(cfg).items():
        meta = meta or {}
        rows.append({
            "version": version,
            "installed_at": meta.get("installed_at"),
            "checksum": meta.get("checksum"),
            "source": meta.get("source"),
            "recorded": bool(meta),
            "slots": [s for s, v in linked.items() if v == version],
        })
    rows.sort(key=lambda r: (r["installed_at"] or 0, r["version"]))
    return rows


def versions(app):
    """
    Per slot: the version its link points at, the version its running
    process reports (GET ``http://<address>:<port><health_path>``, JSON
    field ``version``, 2 s timeout), its health and service state; plus the
    installed releases.

    Returns ``{app, slots: {blue: {link, running, health, service, state,
    port}, green: {...}}, releases: [versions, oldest first]}``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.versions demo
    """
    cfg = _config(app)
    slots = {}
    for slot in hx_releases.SLOTS:
        service = cfg["slots"][slot]["service"]
        row, error = _service_status(service)
        running, health = _running_version(cfg, slot)
        slots[slot] = {"link": _slot_version(cfg, slot), "running": running, "health": health,
                       "service": service, "state": row.get("state"), "intent": row.get("intent"),
                       "port": cfg["slots"][slot]["port"]}
        if error:
            slots[slot]["error"] = error
    return {"app": app, "slots": slots, "releases": [r["version"] for r in releases(app)]}


def prune(app, keep=None):
    """
    Delete all but the ``keep`` most recently installed releases (default
    pillar ``keep``, 5), never one a slot points at.

    Returns ``{app, keep, removed: [...], kept: [...]}``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.prune demo keep=2
    """
    cfg = _config(app)
    if keep is None:
        keep = cfg["keep"]
    else:
        try:
            keep = int(keep)
        except (TypeError, ValueError) as exc:
            raise SaltInvocationError(f"keep must be an integer >= 1, got {keep!r}") from exc
        if keep < 1:
            raise SaltInvocationError(f"keep must be an integer >= 1, got {keep!r}")
    with _lock(cfg):
        removed = _prune(cfg, keep)
        kept = sorted(_installed(cfg))
    return {"app": app, "keep": keep, "removed": removed, "kept": kept}


def remove(app, version):
    """
    Delete one installed release. Refuses (CommandExecutionError) a release
    a slot points at. A version that is not installed is not an error:
    ``removed: False``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_release.remove demo 1.0.0
    """
    cfg = _config(app)
    version = _arg(hx_releases.validate_version, version, "version")
    with _lock(cfg):
        linked = [s for s, v in _linked(cfg).items() if v == version]
        if linked:
            raise CommandExecutionError(
                f"{app} {version} is in use by slot {', '.join(linked)}; activate another version there first"
            )
        if version not in _installed(cfg):
            return {"app": app, "version": version, "removed": False, "comment": "not installed"}
        _delete(cfg, version)
    return {"app": app, "version": version, "removed": True}
