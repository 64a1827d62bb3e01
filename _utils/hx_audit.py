"""Master-side audit log (JSON lines) and the master-local lock hx-ops runners share.

Audit line: ``{"t", "who", "what", "target", "result", "jid", ...details}``
appended to master opts ``hx_audit_log`` (default ``<cachedir>/hx/audit.log``)
under an ``flock``, one ``write`` per line, so lines from concurrent reactor
threads and ``salt-run`` processes never interleave.

:func:`lock` is an exclusive ``flock`` on ``<cachedir>/hx/locks/<name>.lock``.
``flock`` locks belong to an open file description, so two threads of the
reactor's pool that each open the file exclude each other exactly like two
processes do. With ``cache: redis`` several masters share the records, so
:func:`lock` is a mutex in that redis instead (``_utils/hx_redis.py``).
"""
import contextlib
import copy
import fcntl
import hashlib
import json
import logging
import os
import re
import time

import hx_redis
import hx_secrets

log = logging.getLogger(__name__)


def log_path(opts):
    return opts.get("hx_audit_log") or os.path.join(opts["cachedir"], "hx", "audit.log")


def write(opts, who, what, target, result, jid=None, **details):
    """Append one audit line; a failure is logged, never raised (auditing must not stop a fix).

    Every value is scrubbed of the configured notification secrets
    (:func:`secrets`) first, whoever wrote the detail.
    """
    entry = {"ts": round(time.time(), 3), "who": who, "what": what, "target": target, "result": result, "jid": jid}
    entry.update(details)
    entry = secrets(opts).scrub_obj(json.loads(json.dumps(entry, default=str)))
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    path = log_path(opts)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        log.error("hx_audit: cannot write %s: %s", path, exc)
    return entry


def read(opts, what=None, target=None):
    """Parsed audit lines (oldest first), optionally filtered; torn lines are skipped."""
    out = []
    try:
        with open(log_path(opts), encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if what is not None and entry.get("what") != what:
                    continue
                if target is not None and entry.get("target") != target:
                    continue
                out.append(entry)
    except FileNotFoundError:
        pass
    return out


def _lock_file(opts, name):
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    base = os.path.join(opts["cachedir"], "hx", "locks")
    os.makedirs(base, exist_ok=True)
    return os.path.join(base, safe + ".lock")


@contextlib.contextmanager
def lock(opts, name, timeout=60.0):
    """Exclusive lock ``name``; TimeoutError after ``timeout`` s.

    Master-local (an ``flock``) with the default cache; with ``cache: redis``
    a mutex in that redis, which every master sharing it honours (hx_redis).
    """
    if hx_redis.shared(opts):
        with hx_redis.mutex(opts, name, timeout):
            yield
        return
    fd = os.open(_lock_file(opts, name), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"hx lock {name!r} still held after {timeout:g} s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the description releases the flock


def config_path(opts):
    """The hx-ops master-side config file, re-read on every call.

    Master opts ``hx_config_file``; default ``hx_ops.yaml`` next to the
    master's config file (``/etc/salt/hx_ops.yaml``). It holds the settings
    that must not live in pillar (webhook URLs, routing keys) and those an
    operator changes without restarting the master.
    """
    if opts.get("hx_config_file"):
        return opts["hx_config_file"]
    return os.path.join(os.path.dirname(opts.get("conf_file") or "/etc/salt/master"), "hx_ops.yaml")


_PARSED = {}  # path -> (stat stamp, data): a file is parsed again only when it changed
SETTLED_NS = 2_000_000_000


def _read_config(path):
    import yaml  # pylint: disable=import-outside-toplevel

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ValueError(f"{path}: cannot read hx-ops config: {exc}") from None
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    # mtime moves with the kernel's coarse clock: two same-size writes within
    # one tick look alike, so a file changed in the last seconds is parsed anew
    settled = time.time_ns() - st.st_mtime_ns > SETTLED_NS
    hit = _PARSED.get(path)
    if hit is None or hit[0] != stamp or not settled:
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except FileNotFoundError:
            return {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: cannot read hx-ops config: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: must be a mapping with hx_remediation / hx_incident")
        hit = (stamp, data)
        if settled:
            _PARSED[path] = hit
    # callers merge into what they get: never hand out the cached object
    return copy.deepcopy(hit[1])


_SECRETS = {}  # channels as JSON -> hx_secrets.Secrets: built again only when the channels change


def secrets(opts):
    """:class:`hx_secrets.Secrets` of the notification channels configured for this master.

    Read from every ``hx_incident`` layer (master opts, hx_ops.yaml) without
    validating them: a configuration refused for some other reason still
    holds real secrets. A file that cannot be read leaves the opts layer.
    """
    try:
        layers = config_layers(opts, "hx_incident")
    except ValueError:
        layers = [opts.get("hx_incident")]
    channels = [layer.get("channels") if isinstance(layer, dict) else None for layer in layers]
    key = json.dumps(channels, sort_keys=True, default=str)
    found = _SECRETS.get(key)
    if found is None:
        found = hx_secrets.collect_layers(layers)
        if len(_SECRETS) > 16:
            _SECRETS.clear()
        _SECRETS[key] = found
    return found


def config_layers(opts, section):
    """``[master opts[section], file[section]]`` for hx-ops settings ``section``.

    The file is read on every call and parsed again whenever it changed (an
    edit counts from the next event on, without a master restart). A
    malformed file raises ValueError naming it.
    """
    return [opts.get(section), _read_config(config_path(opts)).get(section)]
