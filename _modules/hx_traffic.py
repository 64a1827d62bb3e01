"""
Traffic switching for hx-ops: weights, drain and stats on the load balancer.

Driver ``haproxy`` (default) talks to HAProxy's runtime API over its admin
socket (standard library only: Salt 3008 has no ``haproxyconn`` any more).
Driver ``nginx`` rewrites an upstream file, checks it with ``nginx -t`` and
reloads gracefully. Pillar ``hx:traffic`` selects and configures them; see
``docs/reference/hx_traffic.md``.

Safety rules (docs/architecture.md, measured traps), all in the pure ``_utils/hx_haproxy``:
weights that go up are applied before weights that go down; a server leaves
traffic by drain -> no sessions -> maint, never ``shutdown sessions``; every
change is saved to the server-state file and written into haproxy.cfg (checked
with ``haproxy -c`` first) so a reload keeps it; reloads are graceful
(master-worker ``USR2`` / master CLI ``reload``), never stop + start.
"""

import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import tempfile
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None

try:
    import hx_errors
    import hx_haproxy
    import hx_nginx
    import hx_numbers
    import hx_rotation
    import hx_typed

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "hx_traffic"

DRIVERS = ("haproxy", "nginx")
LOCK_TIMEOUT = 60.0
RELOAD_TIMEOUT = 15.0


def __virtual__():
    if _IMPORT_ERROR:
        return (False, f"hx_traffic: hx-ops utils not importable ({_IMPORT_ERROR}); sync _utils")
    if fcntl is None:
        return (False, "hx_traffic: needs fcntl (POSIX)")
    return __virtualname__


# --------------------------------------------------------------------------
# configuration


def _pillar(key, default=None):
    return __salt__["pillar.get"](key, default, unmask=True)


def _driver(driver=None):
    # A typed driver= is the user's mistake; the pillar's is the configuration's.
    if driver:
        if driver not in DRIVERS:
            raise SaltInvocationError(f"driver: must be one of {', '.join(DRIVERS)}, got {driver!r}")
        return driver
    driver = _pillar("hx:traffic:driver", "haproxy") or "haproxy"
    if driver not in DRIVERS:
        raise hx_errors.ConfigError(f"hx:traffic:driver: must be one of {', '.join(DRIVERS)}, got {driver!r}")
    return driver


def _section(name):
    conf = _pillar(f"hx:traffic:{name}", {}) or {}
    if not isinstance(conf, dict):
        raise hx_errors.ConfigError(f"hx:traffic:{name}: must be a mapping, got {type(conf).__name__}")
    for key in ("socket", "config", "state_file", "pidfile", "master_socket", "binary", "upstream_file",
                "reload_cmd"):
        val = conf.get(key)
        if val is not None and (not isinstance(val, str) or not val):
            raise hx_errors.ConfigError(f"hx:traffic:{name}:{key}: must be a non-empty string, got {val!r}")
    timeout = conf.get("timeout", 5)
    if not hx_numbers.is_finite(timeout) or timeout <= 0:
        raise hx_errors.ConfigError(f"hx:traffic:{name}:timeout: must be a number > 0, got {hx_numbers.shown(timeout)}")
    return dict(conf, timeout=float(timeout), binary=conf.get("binary") or name)


# A program name or an absolute path to one: the haproxy formula renders it into file.managed's
# check_cmd, a command line Salt splits into words.
_BINARY_RE = re.compile(r"/?[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*")


def check_command():
    """
    The ``check_cmd`` the haproxy formula gives ``file.managed``: pillar
    ``hx:traffic:haproxy:binary`` (default ``haproxy``) with ``-c -q -f``;
    Salt appends the new file's path. A binary that is not a plain program
    name or absolute path (spaces, ``;``, ``$(...)``, ``..``) raises
    CommandExecutionError naming the key, so no pillar text reaches a command
    line.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.check_command
    """
    binary = _section("haproxy")["binary"]
    if not _BINARY_RE.fullmatch(binary) or ".." in binary.split("/"):
        raise hx_errors.ConfigError(
            f"hx:traffic:haproxy:binary: must be a program name or an absolute path without spaces, "
            f"quotes or '..', got {binary[:80]!r}")
    return f"{shlex.quote(binary)} -c -q -f"


def _hap():
    conf = _section("haproxy")
    if not conf.get("socket"):
        raise hx_errors.ConfigError("hx:traffic:haproxy:socket: required (unix path or tcp:host:port)")
    return conf


def _ngx():
    conf = _section("nginx")
    if not conf.get("upstream_file"):
        raise hx_errors.ConfigError("hx:traffic:nginx:upstream_file: required")
    names = conf.get("servers") or {}
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise hx_errors.ConfigError("hx:traffic:nginx:servers: must map server name -> 'host:port'")
    return conf


def _invalid(exc):
    return hx_errors.usage(exc)


def _name(kind, value):
    try:
        return hx_haproxy.validate_name(kind, value)
    except ValueError as exc:
        raise _invalid(exc) from None


@contextlib.contextmanager
def _lock():
    """One traffic change at a time on this load balancer (runner, hooks, operators)."""
    path = os.path.join(__opts__["cachedir"], "hx", "traffic.lock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CommandExecutionError(
                        f"another hx_traffic change held {path} for {LOCK_TIMEOUT:.0f}s; try again"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write(path, text, mode=None):
    """Write ``text`` to ``path`` through a temp file in the same directory + fsync + rename."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read(path, what):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {what} {path}: {exc}") from exc


def _run(argv, timeout=30):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, timeout=timeout,
                                   output_loglevel="quiet")


# --------------------------------------------------------------------------
# HAProxy runtime API


def _hap_command(cmd, conf=None, timeout=None):
    """Send one command, read the whole reply (HAProxy closes after it)."""
    conf = conf or _hap()
    target = conf["socket"]
    timeout = timeout or conf["timeout"]
    try:
        if target.startswith("tcp:"):
            host, _, port = target[4:].rpartition(":")
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(target)
    except (OSError, ValueError) as exc:
        raise CommandExecutionError(f"haproxy runtime API at {target} unreachable: {exc}") from exc
    try:
        sock.sendall(cmd.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except socket.timeout:
        raise CommandExecutionError(f"haproxy runtime API at {target}: no complete answer to {cmd!r} "
                                    f"within {timeout}s") from None
    except OSError as exc:
        raise CommandExecutionError(f"haproxy runtime API at {target}: {cmd!r} failed: {exc}") from exc
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")


def _hap_set(cmd, conf):
    """A command that answers nothing on success; HAProxy's text is the error."""
    err = hx_haproxy.reply_error(_hap_command(cmd, conf))
    if err:
        raise CommandExecutionError(f"haproxy refused {cmd!r}: {err}")


def _hap_state(conf, backend=None):
    reply = _hap_command("show servers state", conf)
    try:
        state = hx_haproxy.parse_servers_state(reply)
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc
    if backend is not None and backend not in state:
        raise SaltInvocationError(f"backend: {backend!r} not found on haproxy (known: {', '.join(state) or 'none'})")
    return state


def _hap_server(conf, backend, server):
    servers = _hap_state(conf, backend)[backend]
    if server not in servers:
        raise SaltInvocationError(f"server: {server!r} not in backend {backend!r} (known: {', '.join(servers)})")
    return servers[server]


def _hap_stat(conf):
    reply = _hap_command("show stat", conf)
    try:
        return hx_haproxy.parse_stat(reply)
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _hap_worker_pid(conf):
    pid = hx_haproxy.parse_info(_hap_command("show info", conf)).get("Pid")
    return int(pid) if pid and pid.isdigit() else None


def _hap_save_state(conf):
    path = conf.get("state_file")
    if not path:
        return None
    reply = _hap_command("show servers state", conf)
    try:
        hx_haproxy.parse_servers_state(reply)  # never persist an error text as state
    except ValueError as exc:
        raise CommandExecutionError(f"not saving server state: {exc}") from exc
    _atomic_write(path, reply.rstrip("\n") + "\n", mode=0o600)
    return path


def _hap_check_config(conf, path, what=None):
    res = _run([conf["binary"], "-c", "-f", path])
    if res["retcode"] != 0:
        msg = ((res.get("stderr") or "") + "\n" + (res.get("stdout") or "")).strip()
        # The [NOTICE] version banner says nothing; the ALERT lines name the problem.
        alerts = [line for line in msg.splitlines() if "[ALERT]" in line or "[WARNING]" in line]
        raise CommandExecutionError(f"haproxy -c rejected {what or path}: {' | '.join(alerts or [msg])[-2000:]}")


def _hap_persist_config(conf, backend, weights):
    """Write ``weights`` into haproxy.cfg: temp copy, ``haproxy -c`` on it, atomic replace."""
    path = conf.get("config")
    if not path:
        return None
    old = _read(path, "haproxy config")
    try:
        new = hx_haproxy.set_config_weights(old, backend, weights)
    except ValueError as exc:
        raise CommandExecutionError(f"{path}: {exc}") from exc
    if new == old:
        return path
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hx-haproxy.", suffix=".cfg", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new)
            fh.flush()
            os.fsync(fh.fileno())
        _hap_check_config(conf, tmp, f"the new {path} (checked as {tmp})")
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return path


def _hap_persist(conf, backend=None, weights=None):
    """After every change: state file, then config weights. Names what failed."""
    out = {"state_file": None, "config": None}
    try:
        out["state_file"] = _hap_save_state(conf)
        if weights:
            out["config"] = _hap_persist_config(conf, backend, weights)
    except CommandExecutionError as exc:
        raise CommandExecutionError(f"runtime change applied but not persisted: {exc}") from exc
    return out


def _hap_servers(conf, backend=None):
    state = _hap_state(conf, backend)
    stat = _hap_stat(conf)["servers"]
    out = {}
    for be, servers in state.items():
        if backend is not None and be != backend:
            continue
        out[be] = {}
        for srv, s in servers.items():
            row = stat.get(be, {}).get(srv, {})
            out[be][srv] = {
                "weight": s["weight"],
                "initial_weight": s["initial_weight"],
                "admin": s["admin"],
                "status": s["op_state"],
                "check": row.get("status"),
                "sessions": row.get("scur") or 0,
                "addr": row.get("addr") or f"{s['addr']}:{s['port']}",
            }
    return out


def _hap_apply(conf, backend, steps):
    done = []
    for step in steps:
        target = f"{backend}/{step['server']}"
        if step["action"] == "set_state":
            _hap_set(f"set server {target} state {step['to']}", conf)
        else:
            _hap_set(f"set weight {target} {step['to']}", conf)
        done.append(step)
        log.info("hx_traffic: %s step %s: %s %s %s -> %s", backend, step["step"], step["server"], step["action"],
                 step["from"], step["to"])
    return done


# --------------------------------------------------------------------------
# nginx driver


def _ngx_load(conf):
    text = _read(conf["upstream_file"], "nginx upstream file")
    try:
        return text, hx_nginx.parse(text, conf.get("servers"))
    except ValueError as exc:
        raise CommandExecutionError(f"{conf['upstream_file']}: {exc}") from exc


def _ngx_block(upstreams, backend):
    if backend not in upstreams:
        raise SaltInvocationError(f"backend: {backend!r} is not an upstream in the upstream file "
                                  f"(known: {', '.join(upstreams) or 'none'})")
    return upstreams[backend]["servers"]


def _ngx_master_pid(conf):
    pidfile = conf.get("pidfile")
    if not pidfile:
        return None
    try:
        return int(_read(pidfile, "nginx pidfile").strip())
    except ValueError as exc:
        raise CommandExecutionError(f"nginx pidfile {pidfile}: not a pid") from exc


def _ngx_workers(master):
    """{pid: shutting_down} of the master's children (Linux /proc); None when unknown."""
    if not master:
        return None
    try:
        with open(f"/proc/{master}/task/{master}/children", encoding="utf-8") as fh:
            pids = [int(p) for p in fh.read().split()]
    except OSError:
        return None
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        if "worker process" in cmd:
            out[pid] = "shutting down" in cmd
    return out


def _ngx_test(conf):
    argv = [conf["binary"], "-t", "-q"] + (["-c", conf["config"]] if conf.get("config") else [])
    res = _run(argv)
    if res["retcode"] != 0:
        msg = ((res.get("stderr") or "") + (res.get("stdout") or "")).strip()
        raise CommandExecutionError(f"nginx -t failed: {msg[-2000:]}")


def _ngx_reload(conf):
    """HUP the master (graceful), then wait until new workers serve."""
    master = _ngx_master_pid(conf)
    before = _ngx_workers(master) or {}
    began = time.monotonic()
    if master:
        try:
            os.kill(master, signal.SIGHUP)
        except OSError as exc:
            raise CommandExecutionError(f"nginx reload: cannot signal master {master}: {exc}") from exc
        how = f"SIGHUP to master {master}"
    else:
        argv = conf.get("reload_cmd", "").split() or (
            [conf["binary"], "-s", "reload"] + (["-c", conf["config"]] if conf.get("config") else []))
        res = _run(argv)
        if res["retcode"] != 0:
            raise CommandExecutionError(f"nginx reload failed: {(res.get('stderr') or '').strip()}")
        return {"method": " ".join(argv), "ms": int((time.monotonic() - began) * 1000), "verified": False}
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while time.monotonic() < deadline:
        now = _ngx_workers(master)
        if now is None:
            break
        fresh = [p for p, down in now.items() if not down and p not in before]
        # Done when new workers serve AND every old one is retiring (it shows
        # "is shutting down" as it closes its listening sockets).
        old_serving = [p for p, down in now.items() if not down and p in before]
        if fresh and not old_serving:
            return {"method": how, "ms": int((time.monotonic() - began) * 1000), "verified": True,
                    "new_workers": sorted(fresh)}
        time.sleep(0.02)
    raise CommandExecutionError(f"nginx reload: no new worker within {RELOAD_TIMEOUT:.0f}s after {how} "
                                "(check nginx's error log)")


def _ngx_write(conf, old_text, upstreams):
    """New upstream file -> nginx -t -> reload; the old file is restored if the test fails."""
    path = conf["upstream_file"]
    new_text = hx_nginx.render(upstreams)
    if new_text == old_text:
        return None
    mode = os.stat(path).st_mode & 0o7777
    _atomic_write(path, new_text, mode)
    try:
        _ngx_test(conf)
    except CommandExecutionError:
        _atomic_write(path, old_text, mode)
        raise
    if hx_nginx.effective(new_text) == hx_nginx.effective(old_text):
        return {"method": None, "reason": "only hx comments changed"}
    return _ngx_reload(conf)


def _ngx_servers(conf, backend=None):
    _, upstreams = _ngx_load(conf)
    if backend is not None:
        _ngx_block(upstreams, backend)
    return {
        be: {
            srv: {"weight": s["weight"], "admin": s["state"], "status": "unknown", "check": None, "sessions": None,
                  "addr": s["addr"]}
            for srv, s in block["servers"].items()
        }
        for be, block in upstreams.items()
        if backend is None or be == backend
    }


# --------------------------------------------------------------------------
# public API


def configured():
    """
    True when this minion has pillar ``hx:traffic`` (it drives a load balancer).

    ``hx_service``'s drain/ready hooks check it to skip traffic handling on
    minions without a traffic driver, the same as when this module is absent.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_traffic.configured
    """
    return isinstance(_pillar("hx:traffic", None), dict)


def _require_configured(action, backend, server):
    # drain/ready are hook entry points: a CommandExecutionError is what
    # hx_service turns into "do not stop this service", the safe outcome.
    if not configured():
        raise CommandExecutionError(
            f"cannot {action} {backend}/{server}: no hx:traffic pillar on this minion (set hx:traffic, e.g. "
            f"haproxy socket tcp:<lb>:<port>, where the service runs, or check hx_traffic.configured first)")


def servers(backend=None, driver=None):
    """
    Servers of one backend (or all): weight, admin state, health, sessions, address.

    Returns ``{backend: {server: {weight, initial_weight, admin: ready|drain|maint,
    status: UP|DOWN|STARTING|STOPPING, check, sessions, addr}}}``. With nginx,
    ``status`` is ``unknown`` and ``sessions`` None (nginx does not tell).

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.servers demo
    """
    if backend is not None:
        _name("backend", backend)
    if _driver(driver) == "nginx":
        return _ngx_servers(_ngx(), backend)
    return _hap_servers(_hap(), backend)


def stats(backend=None, driver=None):
    """
    Traffic counters per server and per backend from HAProxy's ``show stat``.

    Returns ``{backend: {servers: {server: {status, weight, scur, stot, req_tot,
    hrsp_2xx, hrsp_5xx, hrsp_other, rtime, check_status, ...}}, totals: {...},
    backend: {...}}}``: ``totals`` sums the servers' counters, ``backend`` is
    HAProxy's own backend row (it also counts requests no server took, e.g. 503s).
    nginx: ``{supported: False, reason}``.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.stats demo
    """
    if backend is not None:
        _name("backend", backend)
    if _driver(driver) == "nginx":
        return {"supported": False, "reason": "nginx open source exposes no per-upstream-server counters"}
    stat = _hap_stat(_hap())
    names = set(stat["servers"]) | set(stat["backends"])
    if backend is not None and backend not in names:
        raise SaltInvocationError(f"backend: {backend!r} not found on haproxy (known: {', '.join(sorted(names))})")
    out = {}
    for be in sorted(names):
        if backend is not None and be != backend:
            continue
        srvs = stat["servers"].get(be, {})
        out[be] = {"servers": srvs, "totals": hx_haproxy.stat_totals(srvs), "backend": stat["backends"].get(be)}
    return out


def set_weight(backend, server, weight, driver=None):
    """
    Set one server's weight (0..256) at runtime and persist it.

    Prefer ``weights`` to move traffic between servers: it orders the changes.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.set_weight demo app1_green 100
    """
    _name("backend", backend)
    _name("server", server)
    try:
        weight = hx_haproxy.validate_weight(weight)
    except ValueError as exc:
        raise _invalid(exc) from None
    if _driver(driver) == "nginx":
        res = weights(backend, {server: weight}, driver="nginx")
        return {"backend": backend, "server": server, "from": res["before"][server], "to": weight,
                "reload": res.get("reload")}
    conf = _hap()
    with _lock():
        before = _hap_server(conf, backend, server)["weight"]
        if before != weight:
            _hap_set(f"set weight {backend}/{server} {weight}", conf)
        persisted = _hap_persist(conf, backend, {server: weight})
    return {"backend": backend, "server": server, "from": before, "to": weight, "persisted": persisted}


def set_state(backend, server, state, driver=None):
    """
    Set one server's admin state: ``ready``, ``drain`` (no new traffic, sessions
    finish) or ``maint`` (no traffic at all). Use ``drain`` for a graceful exit.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.set_state demo app1_blue maint
    """
    _name("backend", backend)
    _name("server", server)
    try:
        hx_haproxy.validate_state(state)
    except ValueError as exc:
        raise _invalid(exc) from None
    if _driver(driver) == "nginx":
        conf = _ngx()
        with _lock():
            text, upstreams = _ngx_load(conf)
            before = _ngx_block(upstreams, backend)
            if server not in before:
                raise SaltInvocationError(f"server: {server!r} not in upstream {backend!r} "
                                          f"(known: {', '.join(before)})")
            was = before[server]["state"]
            reload_ = _ngx_write(conf, text, hx_nginx.set_state(upstreams, backend, server, state))
        return {"backend": backend, "server": server, "from": was, "to": state, "reload": reload_}
    conf = _hap()
    with _lock():
        was = _hap_server(conf, backend, server)["admin"]
        _hap_set(f"set server {backend}/{server} state {state}", conf)
        persisted = _hap_persist(conf)
    return {"backend": backend, "server": server, "from": was, "to": state, "persisted": persisted}


def ready(backend, server, driver=None):
    """
    Put a server back in rotation (admin state ``ready``; its weight is kept).

    Called by hx_service after a health-verified start.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.ready backend=demo server=app1_green
    """
    _require_configured("ready", backend, server)
    return set_state(backend, server, "ready", driver=driver)


def _budget_check(backend, server, driver):
    """Refuse to take ``server`` out when its app's blast-radius budget (``hx:apps:<app>:max_out``) is spent."""
    apps = _pillar("hx:apps", {}) or {}
    if not isinstance(apps, dict):
        return
    for app in sorted(apps):
        raw = apps[app]
        if not isinstance(raw, dict) or raw.get("backend", app) != backend:
            continue
        try:
            cfg = hx_rotation.app_budget(app, raw)
        except ValueError as exc:
            raise hx_errors.ConfigError(str(exc)) from None
        host = hx_rotation.host_of(cfg, server)
        if host is None:
            continue
        rows = servers(backend, driver=driver).get(backend) or {}
        if not hx_rotation.live(rows.get(server)):
            return  # an idle, drained or DOWN server: taking it out takes nothing away
        decision = hx_rotation.decide(host, cfg["max_out"], hx_rotation.hosts_out(cfg, rows), {}, time.time())
        if not decision["granted"]:
            raise CommandExecutionError(hx_rotation.refusal(app, host, decision)
                                        + f"; nothing was changed (budget=False drains {server} anyway)")


def drain(backend, server, timeout=30, interval=0.2, driver=None, budget=True):
    """
    Take a server out of rotation without cutting a request: ``drain`` (no new
    sessions), wait until it has no current sessions, then ``maint``.

    budget
        When ``server`` is a host of an app in this minion's ``hx:apps`` (by
        backend and server template), refuse while ``hx:apps:<app>:max_out``
        hosts of the app are out of rotation already, naming them (default
        True). ``False`` drains anyway: the master's automations pass it
        after asking the shared budget themselves.

    Raises CommandExecutionError when sessions remain after ``timeout`` s (the
    server stays in drain: it gets no new traffic, nothing was cut). With nginx
    the server is rendered ``down`` and nginx reloaded; the wait is for the old
    workers (which finish their in-flight requests) to exit.

    Returns ``{backend, server, from, state: maint, drained: True, sessions_left: 0, waited_ms, polls}``.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.drain backend=demo server=app1_blue timeout=60
        salt lb1 hx_traffic.drain backend=demo server=app1_blue budget=False
    """
    _require_configured("drain", backend, server)
    _name("backend", backend)
    _name("server", server)
    try:
        timeout, interval = float(timeout), float(interval)
    except (TypeError, ValueError):
        raise SaltInvocationError(f"timeout/interval: must be numbers, got {timeout!r}/{interval!r}") from None
    if timeout < 0 or not 0 < interval <= 10:
        raise SaltInvocationError("timeout: must be >= 0 and interval: in (0, 10]")
    try:
        budget = hx_typed.flag("budget", budget)
    except ValueError as exc:
        raise hx_errors.usage(exc) from None
    if budget:
        _budget_check(backend, server, driver)
    began = time.monotonic()
    deadline = began + timeout
    first = set_state(backend, server, "drain", driver=driver)
    polls = 0
    if _driver(driver) == "nginx":
        conf = _ngx()
        master = _ngx_master_pid(conf)
        left = None
        while True:
            workers = _ngx_workers(master)
            left = None if workers is None else sum(1 for down in workers.values() if down)
            polls += 1
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        if left:
            raise CommandExecutionError(f"{backend}/{server}: {left} old nginx worker(s) still finishing requests "
                                        f"after {timeout}s; server left in drain (down)")
        last = set_state(backend, server, "maint", driver="nginx")
        return {"backend": backend, "server": server, "from": first["from"], "state": last["to"],
                "drained": workers is not None, "sessions_left": left,
                "note": None if workers is not None else "old workers not observable; drained best effort",
                "waited_ms": int((time.monotonic() - began) * 1000), "polls": polls}
    conf = _hap()
    while True:
        row = _hap_stat(conf)["servers"].get(backend, {}).get(server, {})
        sessions = row.get("scur") or 0
        polls += 1
        if sessions == 0:
            break
        if time.monotonic() >= deadline:
            raise CommandExecutionError(f"{backend}/{server}: {sessions} session(s) still open after {timeout}s; "
                                        "server left in drain (no new traffic, nothing cut)")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    last = set_state(backend, server, "maint")
    return {"backend": backend, "server": server, "from": first["from"], "state": last["to"], "drained": True,
            "sessions_left": 0, "waited_ms": int((time.monotonic() - began) * 1000), "polls": polls}


def _validated(backend, weights_):
    if isinstance(weights_, str):
        import salt.utils.yaml  # pylint: disable=import-outside-toplevel

        try:
            weights_ = salt.utils.yaml.safe_load(weights_)
        except Exception:  # pylint: disable=broad-except
            raise SaltInvocationError(f"weights: not a mapping of server -> weight: {weights_!r}") from None
    try:
        return hx_haproxy.validate_weights(backend, weights_)
    except ValueError as exc:
        raise _invalid(exc) from None


def _plan(backend, desired, driver):
    """(before {srv: weight}, steps, servers view) for either driver; nothing changes."""
    if driver == "nginx":
        view = _ngx_servers(_ngx(), backend)[backend]
    else:
        view = _hap_servers(_hap(), backend)[backend]
    before = {srv: s["weight"] for srv, s in view.items()}
    admin = {srv: s["admin"] for srv, s in view.items()}
    try:
        steps = hx_haproxy.switch_plan(before, desired, admin)
    except ValueError as exc:
        raise SaltInvocationError(f"{exc} (backend {backend})") from None
    after = hx_haproxy.apply_plan(before, steps)
    ready_after = dict(admin)
    ready_after.update({s["server"]: s["to"] for s in steps if s["action"] == "set_state"})
    ops = None if driver == "nginx" else {srv: s["status"] for srv, s in view.items()}
    live = hx_haproxy.live_weight(after, ops, ready_after)
    return before, steps, after, live


def plan(backend, weights, driver=None):  # pylint: disable=redefined-outer-name
    """
    The ordered steps ``weights`` would apply (raise first, then lower); changes nothing.

    Returns ``{backend, steps: [{step, server, action: raise|lower|set_state, from, to}],
    before, after, live_weight_after}``.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.plan demo '{app1_green: 100, app1_blue: 0}'
    """
    desired = _validated(backend, weights)
    before, steps, after, live = _plan(backend, desired, _driver(driver))
    return {"backend": backend, "steps": steps, "before": before, "after": after, "live_weight_after": live}


def weights(backend, weights, verify=True, driver=None):  # pylint: disable=redefined-outer-name
    """
    Move traffic: set ``{server: weight}`` in ``backend`` in the safe order.

    Every weight that goes up (and the ``ready`` of a drained/maint server that
    will carry weight) is applied before any weight that goes down. A server
    going to 0 stays ``ready``: roundrobin sends it nothing new, its in-flight
    requests finish and its health checks go on. Refused (nothing changed) when
    no UP, ready server would carry weight afterwards. The result is read back
    and verified, saved to the state file and written into haproxy.cfg.

    Returns ``{backend, changes: [ordered steps applied], before, after, persisted}``.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.weights demo '{app1_green: 100, app1_blue: 0}'
    """
    desired = _validated(backend, weights)
    drv = _driver(driver)
    with _lock():
        before, steps, after, live = _plan(backend, desired, drv)
        if live <= 0 and steps:
            raise CommandExecutionError(
                f"{backend}: refusing {desired}: no UP, ready server would carry weight afterwards "
                f"(that is an outage); nothing changed")
        if drv == "nginx":
            return _ngx_weights(backend, desired, before, steps, after)
        conf = _hap()
        done = []
        try:
            done = _hap_apply(conf, backend, steps)
        except CommandExecutionError as exc:
            raise CommandExecutionError(f"{backend}: step {len(done) + 1} of {len(steps)} failed: {exc}; "
                                        f"applied so far: {done}") from exc
        readback = {srv: s["weight"] for srv, s in _hap_state(conf, backend)[backend].items()}
        if verify and any(readback[srv] != w for srv, w in after.items()):
            raise CommandExecutionError(f"{backend}: weights read back {readback} differ from {after}")
        persisted = _hap_persist(conf, backend, after) if steps else {"state_file": None, "config": None}
    return {"backend": backend, "changes": done, "before": before, "after": readback, "persisted": persisted}


def _ngx_weights(backend, desired, before, steps, after):
    conf = _ngx()
    text, upstreams = _ngx_load(conf)
    reload_ = None
    if steps:
        try:
            new = hx_nginx.set_weights(upstreams, backend, desired)
        except ValueError as exc:
            raise SaltInvocationError(str(exc)) from None
        # nginx swaps the whole upstream atomically on reload, so the order
        # only matters for the record; it is the same plan as HAProxy's.
        reload_ = _ngx_write(conf, text, new)
    readback = {srv: s["weight"] for srv, s in _ngx_load(conf)[1][backend]["servers"].items()}
    if any(readback[srv] != w for srv, w in after.items()):
        raise CommandExecutionError(f"{backend}: upstream file reads back {readback}, expected {after}")
    return {"backend": backend, "changes": steps, "before": before, "after": readback, "reload": reload_}


def save_state():
    """
    Save ``show servers state`` into ``hx:traffic:haproxy:state_file`` (atomic).

    HAProxy reloads it with ``load-server-state-from-file global``; hx_traffic
    calls this after every change and before every reload.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.save_state
    """
    conf = _hap()
    if not conf.get("state_file"):
        raise hx_errors.ConfigError("hx:traffic:haproxy:state_file: required to save state")
    with _lock():
        path = _hap_save_state(conf)
    return {"state_file": path, "servers": sum(len(s) for s in _hap_state(conf).values())}


def config_weights(driver=None):
    """
    ``{backend: {server: weight}}`` as written in haproxy.cfg (or the nginx
    upstream file): what the HAProxy formula uses so re-rendering keeps weights.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.config_weights
    """
    if _driver(driver) == "nginx":
        return {be: {srv: s["weight"] for srv, s in block["servers"].items()}
                for be, block in _ngx_load(_ngx())[1].items()}
    conf = _hap()
    if not conf.get("config"):
        raise hx_errors.ConfigError("hx:traffic:haproxy:config: required to read config weights")
    return hx_haproxy.config_weights(_read(conf["config"], "haproxy config"))


def reload(driver=None):
    """
    Graceful reload: check the config, save the server state, then reload in
    place (HAProxy master-worker: ``reload`` on the master CLI or ``SIGUSR2`` to
    the master pid; nginx: ``SIGHUP``). Never stop + start. Waits for the new
    worker and checks the runtime weights survived.

    Returns ``{method, old_worker, new_worker, ms, state_file, weights_kept, lost}``.

    CLI Example:

    .. code-block:: bash

        salt lb1 hx_traffic.reload
    """
    if _driver(driver) == "nginx":
        conf = _ngx()
        _ngx_test(conf)
        return _ngx_reload(conf)
    conf = _hap()
    with _lock():
        if conf.get("config"):
            _hap_check_config(conf, conf["config"])
        before = _hap_state(conf)
        state_file = _hap_save_state(conf)
        old = _hap_worker_pid(conf)
        began = time.monotonic()
        if conf.get("master_socket"):
            method = f"reload on master CLI {conf['master_socket']}"
            _hap_command("reload", dict(conf, socket=conf["master_socket"]))
        elif conf.get("pidfile"):
            try:
                master = int(_read(conf["pidfile"], "haproxy pidfile").split()[0])
            except (ValueError, IndexError):
                raise CommandExecutionError(f"haproxy pidfile {conf['pidfile']}: no pid in it") from None
            method = f"SIGUSR2 to master {master}"
            try:
                os.kill(master, signal.SIGUSR2)
            except OSError as exc:
                raise CommandExecutionError(f"haproxy reload: cannot signal master {master}: {exc}") from exc
        else:
            raise hx_errors.ConfigError("hx:traffic:haproxy: set master_socket or pidfile to reload "
                                        "(master-worker mode); hx never stops and starts haproxy")
        new = None
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            try:
                new = _hap_worker_pid(conf)
            except CommandExecutionError:
                new = None  # the socket is re-bound by the new worker
            if new and new != old:
                break
            time.sleep(0.05)
        else:
            raise CommandExecutionError(f"haproxy reload ({method}): no new worker within {RELOAD_TIMEOUT:.0f}s "
                                        "(config error? see haproxy's log)")
        after = _hap_state(conf)
    lost = {
        f"{be}/{srv}": {"weight": [s["weight"], after.get(be, {}).get(srv, {}).get("weight")],
                        "admin": [s["admin"], after.get(be, {}).get(srv, {}).get("admin")]}
        for be, srvs in before.items() for srv, s in srvs.items()
        if (s["weight"], s["admin"]) != (after.get(be, {}).get(srv, {}).get("weight"),
                                         after.get(be, {}).get(srv, {}).get("admin"))
    }
    return {"method": method, "old_worker": old, "new_worker": new, "ms": int((time.monotonic() - began) * 1000),
            "state_file": state_file, "weights_kept": not lost, "lost": lost}
