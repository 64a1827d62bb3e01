"""
Service lifecycle for hx-ops: dependency order, graceful drain/stop/kill,
health-verified start and automatic recovery with a restart budget.

Services are declared in pillar ``hx:services`` (see
``docs/reference/hx_service.md``) and driven through Salt's own modules:
``supervisord.*`` where supervisord runs them (the lab, containers) and
``service.*`` (systemd) on real hosts. Health comes from ``hx_health.check``.

The decisions (order, budget, flapping, pillar validation) are the pure
functions in ``_utils/hx_deps.py``, ``_utils/hx_budget.py`` and
``_utils/hx_services.py``; this module gathers facts and acts.

Graceful stop with supervisord: ``supervisorctl stop <program>`` puts the
program in STOPPING and sends its stopsignal (TERM); supervisord itself only
sends KILL after the program's ``stopwaitsecs``. hx runs that stop under
``cmd.run_all(timeout=stop_timeout)``: if the program has not exited when
``stop_timeout`` runs out, hx sends ``supervisorctl signal KILL <program>``
itself (the program is still STOPPING, so supervisord records STOPPED and
does not autorestart it) and reports ``stopped: killed, killed_by: hx``. For
hx's timeout to be authoritative the program's ``stopwaitsecs`` must be >=
``stop_timeout``; when it is shorter supervisord kills first, which hx detects
(the stop took at least ``stopwaitsecs``) and reports as
``killed_by: supervisord`` with a warning.
"""

import contextlib
import json
import logging
import os
import re
import tempfile
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None

try:
    import hx_budget
    import hx_deps
    import hx_errors
    import hx_intent
    import hx_services
    import hx_supervisor

    _IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - reported by __virtual__
    _IMPORT_ERROR = str(_exc)

log = logging.getLogger(__name__)

__virtualname__ = "hx_service"

POLL_INTERVAL = 0.25
# After KILL, supervisord needs a moment to reap and record the exit.
KILL_SETTLE_TIMEOUT = 10.0
PASSING = ("ok", "warning")

_SV_STATES = {
    "RUNNING": "running",
    "STARTING": "starting",
    "BACKOFF": "starting",
    "STOPPING": "stopping",
    # STOPPED is what a stop asked for; EXITED is a process that ended on its
    # own (a crash, kill -9): that is a failure to recover, never a service
    # someone meant to stop (the health beacon watches the one, not the other).
    "STOPPED": "stopped",
    "EXITED": "failed",
    "FATAL": "failed",
    "UNKNOWN": "unknown",
}
_UPTIME_RE = re.compile(r"pid (\d+), uptime (?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})")


def __virtual__():
    if _IMPORT_ERROR:
        return (False, f"hx_service: hx-ops utils not importable ({_IMPORT_ERROR}); sync _utils")
    if fcntl is None:
        return (False, "hx_service: needs fcntl (POSIX)")
    return __virtualname__


# --------------------------------------------------------------------------
# configuration


def _config():
    """Validated pillar: services, supervisord access, recovery defaults."""
    def get(key, default):
        # Salt 3008 masks pillar leaves for module callers unless unmask=True.
        return __salt__["pillar.get"](key, default, unmask=True)

    try:
        return {
            "services": hx_services.validate_services(get("hx:services", None)),
            "supervisord": hx_services.validate_supervisord(get("hx:supervisord", None)),
            "recovery": hx_services.validate_recovery(get("hx:recovery", None)),
        }
    except ValueError as exc:
        raise hx_errors.ConfigError(f"malformed pillar: {exc}") from exc


def _graph(cfg):
    return {name: svc["requires"] for name, svc in cfg["services"].items()}


def _names(name, cfg, allow_all=False):
    """Requested service names, every one declared, or SaltInvocationError."""
    if name is None or name == "":
        if allow_all:
            return list(cfg["services"])
        raise SaltInvocationError("a service name (or comma list of names) is required")
    try:
        names = hx_services.parse_names(name)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from exc
    if not names:
        raise SaltInvocationError("a service name (or comma list of names) is required")
    for item in names:
        if item not in cfg["services"]:
            known = ", ".join(cfg["services"]) or "none"
            raise SaltInvocationError(
                f"unknown service '{item}': not declared in pillar hx:services (declared: {known})"
            )
    return names


def _start_order(cfg, names):
    # The names were checked by _names: what fails here is the requires graph of the pillar.
    try:
        return hx_deps.start_order(_graph(cfg), names)
    except ValueError as exc:
        raise hx_errors.ConfigError(f"hx:services: {exc}") from exc


def _stop_order(cfg, names):
    try:
        return hx_deps.stop_order(_graph(cfg), names)
    except ValueError as exc:
        raise hx_errors.ConfigError(f"hx:services: {exc}") from exc


def _health_call(fun, svc):
    """``hx_health.<fun>`` on the checks ``svc`` declares.

    The names come from pillar hx:services:<svc>:health, not from the user:
    hx_health's "unknown check" usage error is a configuration error here.
    """
    try:
        return __salt__[fun](names=svc["health"])
    except SaltInvocationError as exc:
        raise hx_errors.ConfigError(f"hx:services:{svc['name']}:health: {exc}") from exc


def _check_health_names(cfg, names):
    """Unknown hx_health check names are pillar errors: raise before touching anything."""
    for item in names:
        svc = cfg["services"][item]
        if not svc["health"]:
            continue
        if "hx_health.checks" not in __salt__:
            raise CommandExecutionError(f"{item}: declares health checks {svc['health']} but hx_health is not loaded")
        _health_call("hx_health.checks", svc)


def _budget_cfg(cfg, svc):
    return {
        "budget": svc["budget"] or cfg["recovery"]["budget"],
        "flap": svc["flap"] or cfg["recovery"]["flap"],
    }


# --------------------------------------------------------------------------
# backends


class _Supervisord:
    provider = "supervisord"

    def __init__(self, svc, sup):
        self.svc = svc
        self.name = svc["name"]
        self.program = svc["program"]
        self.conf = svc["supervisor_conf"] or sup["conf"]
        self.bin_env = svc["bin_env"] or sup["bin_env"]
        # supervisord.* acts on EVERY program when the name is empty.
        if not self.program:
            raise hx_errors.ConfigError(f"hx:services:{self.name}:program: empty supervisord program name")

    def _kw(self):
        return {"conf_file": self.conf, "bin_env": self.bin_env}

    def _where(self):
        return f"supervisord ({self.conf or 'default config'})"

    def _check(self, out, action, ok=()):
        """supervisord.* return text; turn its ERROR lines into exceptions."""
        text = (out or "").strip()
        if "ERROR" not in text and "refused connection" not in text and "no such file" not in text:
            return text
        for marker in ok:
            if marker in text:
                return text
        if "no such process" in text:
            raise CommandExecutionError(
                f"{self.name}: program '{self.program}' is not known to {self._where()}: {text}"
            )
        if "refused connection" in text or "no such file" in text or "Connection refused" in text:
            raise CommandExecutionError(f"{self.name}: cannot reach {self._where()}: {text}")
        raise CommandExecutionError(f"{self.name}: supervisorctl {action} {self.program} failed: {text}")

    def _ctl_bin(self):
        bin_env = self.bin_env
        if bin_env:
            if os.path.isdir(bin_env):
                path = os.path.join(bin_env, "bin", "supervisorctl")
                if not os.path.isfile(path):
                    raise CommandExecutionError(f"{self.name}: no supervisorctl in {bin_env}/bin")
                return path
            return bin_env
        found = __salt__["cmd.which_bin"](["supervisorctl"])
        if not found:
            raise CommandExecutionError(f"{self.name}: supervisorctl not found; set hx:supervisord:bin_env")
        return found

    def _ctl(self, *args, timeout=None):
        cmd = [self._ctl_bin()]
        if self.conf:
            cmd += ["-c", self.conf]
        return __salt__["cmd.run_all"](
            cmd + list(args), timeout=timeout, python_shell=False, ignore_retcode=True
        )

    def _rpc_state(self):
        """The state straight from supervisord's socket, or None when only supervisorctl can ask."""
        path = hx_supervisor.socket_path(self.conf)
        if not path:
            return None
        try:
            info = hx_supervisor.process_info(path, self.program)
        except hx_supervisor.UnknownProgram:
            raise CommandExecutionError(
                f"{self.name}: program '{self.program}' is not known to {self._where()}"
            ) from None
        except OSError as exc:
            raise CommandExecutionError(f"{self.name}: cannot reach {self._where()}: {exc}") from None
        except Exception as exc:  # pylint: disable=broad-except
            log.debug("hx_service: XML-RPC status of %s failed (%s); asking supervisorctl", self.program, exc)
            return None
        raw = info.get("statename")
        running = raw == "RUNNING"
        return {
            "state": _SV_STATES.get(raw, "unknown"),
            "raw": raw,
            "pid": info.get("pid") if running else None,
            "uptime_s": max(0, int(info.get("now", 0)) - int(info.get("start", 0))) if running else None,
            "detail": info.get("description") or "",
        }

    def state(self):
        found = self._rpc_state()
        if found is not None:
            return found
        # Not supervisord.status_raw: supervisorctl exits 3 for every state but
        # RUNNING and Salt then logs an ERROR per poll while a service starts.
        ret = self._ctl("status", self.program)
        raw = ret["stdout"] or ret["stderr"]
        if ret["retcode"] not in (0, 3) and "ERROR" not in raw:
            raw = f"ERROR: {raw}"
        for line in (raw or "").splitlines():
            line = line.strip()
            # A non-RUNNING program makes supervisorctl exit non-zero, and
            # supervisord.* then prefixes the normal status line with "ERROR: ".
            if line.startswith("ERROR: ") and line[7:].split(None, 1)[:1] == [self.program]:
                line = line[7:]
            parts = line.split(None, 2)
            if len(parts) >= 2 and parts[0] == self.program and parts[1] in _SV_STATES:
                reason = parts[2] if len(parts) > 2 else ""
                out = {"state": _SV_STATES[parts[1]], "raw": parts[1], "pid": None, "uptime_s": None, "detail": reason}
                match = _UPTIME_RE.search(reason)
                if match and parts[1] == "RUNNING":
                    days, hh, mm, ss = (int(x or 0) for x in match.groups()[1:])
                    out["pid"] = int(match.group(1))
                    out["uptime_s"] = days * 86400 + hh * 3600 + mm * 60 + ss
                return out
        self._check(raw if "ERROR" in (raw or "") else f"ERROR: unexpected status output: {raw!r}", "status")
        raise CommandExecutionError(f"{self.name}: unexpected supervisorctl status output: {raw!r}")

    def _tail(self):
        try:
            out = __salt__["supervisord.custom"](f"tail {self.program} stderr", **self._kw())
        except Exception:  # pylint: disable=broad-except
            return ""
        return (out or "").strip()[-400:]

    def start(self):
        out = __salt__["supervisord.start"](self.program, **self._kw())
        try:
            text = self._check(out, "start", ok=("already started",))
        except CommandExecutionError as exc:
            tail = self._tail()
            raise CommandExecutionError(f"{exc}" + (f"; stderr tail: {tail}" if tail else "")) from exc
        return "already_running" if "already started" in text else "started"

    def _stopwaitsecs(self):
        try:
            opts = __salt__["supervisord.options"](self.program, conf_file=self.conf)
            return float(opts.get("stopwaitsecs", 10))
        except (CommandExecutionError, TypeError, ValueError):
            return None  # program defined in an [include]d file: unknown

    def stop(self, timeout):
        before = self.state()
        if before["state"] in ("stopped", "failed"):
            return {"stopped": "already_stopped", "pid": None}
        stopwait = self._stopwaitsecs()
        started = time.monotonic()
        ret = self._ctl("stop", self.program, timeout=timeout)
        elapsed = time.monotonic() - started
        out = {"pid": before["pid"], "stopwaitsecs": stopwait}
        timed_out = "Timed out" in (ret.get("stdout") or "") and elapsed >= timeout * 0.9
        if timed_out:
            # The program ignored its stop signal for stop_timeout: it is still
            # STOPPING, so a KILL now is recorded as a stop, not a crash.
            sig = __salt__["supervisord.custom"](f"signal KILL {self.program}", **self._kw())
            if "ERROR" in (sig or "") and "not running" not in sig:
                raise CommandExecutionError(f"{self.name}: sending KILL after {timeout}s failed: {sig.strip()}")
            deadline = time.monotonic() + KILL_SETTLE_TIMEOUT
            while True:
                st = self.state()
                if st["state"] in ("stopped", "failed"):
                    break
                if time.monotonic() >= deadline:
                    raise CommandExecutionError(
                        f"{self.name}: still {st['raw']} {KILL_SETTLE_TIMEOUT}s after SIGKILL"
                    )
                time.sleep(POLL_INTERVAL)
            out.update(stopped="killed", killed_by="hx", stop_ms=int((time.monotonic() - started) * 1000))
            return out
        self._check(ret.get("stdout") or ret.get("stderr"), "stop", ok=("not running",))
        out["stop_ms"] = int(elapsed * 1000)
        if stopwait is not None and stopwait < timeout and elapsed >= stopwait:
            out.update(
                stopped="killed",
                killed_by="supervisord",
                warning=(
                    f"stopwaitsecs={stopwait:g} is shorter than stop_timeout={timeout:g}: "
                    "supervisord killed the program first; raise stopwaitsecs"
                ),
            )
        else:
            out["stopped"] = "graceful"
        return out

    def reload(self):
        sig = self.svc["reload_signal"] or "HUP"
        out = __salt__["supervisord.custom"](f"signal {sig} {self.program}", **self._kw())
        self._check(out, f"signal {sig}")
        return f"signal {sig}"


class _Systemd:
    provider = "systemd"

    def __init__(self, svc):
        self.svc = svc
        self.name = svc["name"]
        self.unit = svc["unit"]

    def state(self):
        active = __salt__["service.status"](self.unit)
        out = {"state": "running" if active else "stopped", "raw": "active" if active else "inactive",
               "pid": None, "uptime_s": None, "detail": ""}
        try:
            show = __salt__["service.show"](self.unit)
        except CommandExecutionError:
            return out
        out["raw"] = show.get("ActiveState", out["raw"])
        if out["raw"] == "failed":
            out["state"] = "failed"
        elif out["raw"] in ("activating", "reloading"):
            out["state"] = "starting"
        elif out["raw"] == "deactivating":
            out["state"] = "stopping"
        pid = show.get("MainPID")
        if pid and pid.isdigit() and int(pid) > 0:
            out["pid"] = int(pid)
        entered = show.get("ActiveEnterTimestampMonotonic")
        if active and entered and entered.isdigit() and int(entered) > 0:
            now_us = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
            out["uptime_s"] = max(0, int((now_us - int(entered)) / 1e6))
        return out

    def start(self):
        if __salt__["service.status"](self.unit):
            return "already_running"
        __salt__["service.start"](self.unit)  # raises CommandExecutionError with systemctl's stderr
        return "started"

    def stop(self, timeout):
        before = self.state()
        if before["state"] in ("stopped", "failed"):
            return {"stopped": "already_stopped", "pid": None}
        started = time.monotonic()
        # no_block: hx, not TimeoutStopSec, decides when to give up waiting.
        if not __salt__["service.stop"](self.unit, no_block=True):
            raise CommandExecutionError(f"{self.name}: systemctl stop {self.unit} failed")
        out = {"pid": before["pid"]}
        deadline = started + timeout
        while __salt__["service.status"](self.unit):
            if time.monotonic() >= deadline:
                ret = __salt__["cmd.run_all"](
                    ["systemctl", "kill", "--signal=SIGKILL", self.unit], python_shell=False, ignore_retcode=True
                )
                if ret["retcode"] != 0:
                    raise CommandExecutionError(f"{self.name}: systemctl kill {self.unit}: {ret['stderr']}")
                kdeadline = time.monotonic() + KILL_SETTLE_TIMEOUT
                while __salt__["service.status"](self.unit):
                    if time.monotonic() >= kdeadline:
                        raise CommandExecutionError(f"{self.name}: {self.unit} still active after SIGKILL")
                    time.sleep(POLL_INTERVAL)
                out.update(stopped="killed", killed_by="hx", stop_ms=int((time.monotonic() - started) * 1000))
                return out
            time.sleep(POLL_INTERVAL)
        out["stop_ms"] = int((time.monotonic() - started) * 1000)
        result = (__salt__["service.show"](self.unit) or {}).get("Result", "")
        if result == "timeout":
            out.update(stopped="killed", killed_by="systemd",
                       warning="TimeoutStopSec is shorter than stop_timeout: systemd killed the unit first")
        else:
            out["stopped"] = "graceful"
        return out

    def reload(self):
        __salt__["service.reload"](self.unit)
        return "systemctl reload"


def _backend(cfg, name):
    svc = cfg["services"][name]
    provider = svc["provider"]
    if provider is None:
        if svc["supervisor_conf"] or cfg["supervisord"]["conf"]:
            provider = "supervisord"
        elif "service.systemctl_reload" in __salt__:
            provider = "systemd"
        else:
            raise CommandExecutionError(
                f"{name}: cannot detect a provider (no supervisord conf in pillar, systemd not booted); "
                f"set hx:services:{name}:provider"
            )
    if provider == "supervisord":
        return _Supervisord(svc, cfg["supervisord"])
    if "service.systemctl_reload" not in __salt__:
        raise CommandExecutionError(f"{name}: provider systemd, but Salt's systemd service module is not loaded here")
    return _Systemd(svc)


# --------------------------------------------------------------------------
# health, traffic


def _health(svc, proc):
    """Health of one service: its process state first, then its hx_health checks."""
    if proc["state"] != "running":
        return {"status": "critical", "source": "process", "message": f"process is {proc['raw']}", "checks": {}}
    if not svc["health"]:
        return {"status": "ok", "source": "process", "message": "running (no health checks declared)", "checks": {}}
    if "hx_health.check" not in __salt__:
        raise CommandExecutionError(
            f"{svc['name']}: declares health checks {svc['health']} but hx_health is not loaded"
        )
    res = _health_call("hx_health.check", svc)
    checks = res.get("checks", {}) if isinstance(res, dict) else {}
    bad = [f"{n}: {c.get('message', c.get('status'))}" for n, c in checks.items() if c.get("status") not in PASSING]
    return {
        "status": res.get("status", "unknown") if isinstance(res, dict) else "unknown",
        "source": "hx_health",
        "message": "; ".join(bad) or "checks passing",
        "checks": checks,
    }


def _passing(health):
    return health["status"] in PASSING


def _wait_healthy(svc, backend, timeout):
    """Poll until healthy, or the process gave up (FATAL/EXITED), or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        proc = backend.state()
        health = _health(svc, proc)
        if _passing(health):
            return True, health, proc
        if proc["state"] in ("failed", "stopped") or time.monotonic() >= deadline:
            return False, health, proc
        time.sleep(POLL_INTERVAL)


def _traffic_hook(svc, action, budget=True):
    """Drain/ready through hx_traffic when the service carries LB traffic."""
    traffic = svc["traffic"]
    if not traffic:
        return False, "not configured"
    func = f"hx_traffic.{action}"
    if func not in __salt__ or not __salt__["hx_traffic.configured"]():
        return False, "skipped (no traffic driver)"
    kwargs = {} if budget or action != "drain" else {"budget": False}
    try:
        __salt__[func](backend=traffic["backend"], server=traffic["server"], **kwargs)
    except SaltInvocationError as exc:
        # backend/server come from pillar hx:services:<svc>:traffic, not from the user.
        raise hx_errors.ConfigError(f"hx:services:{svc['name']}:traffic: {exc}") from exc
    except CommandExecutionError as exc:
        # A bad hx:traffic pillar stays a configuration error under the added context.
        cls = hx_errors.ConfigError if isinstance(exc, hx_errors.ConfigError) else CommandExecutionError
        raise cls(f"{svc['name']}: {action} of {traffic['backend']}/{traffic['server']} failed: {exc}") from exc
    return True, f"{action} {traffic['backend']}/{traffic['server']}"


# --------------------------------------------------------------------------
# single-service actions


def _start_one(cfg, name, backend, timeout=None):
    svc = cfg["services"][name]
    timeout = float(timeout) if timeout else svc["start_timeout"]
    began = time.monotonic()
    action = backend.start()
    healthy, health, proc = _wait_healthy(svc, backend, timeout)
    out = {
        "action": action,
        "healthy": healthy,
        "health": health,
        "pid": proc["pid"],
        "ms": int((time.monotonic() - began) * 1000),
    }
    if healthy:
        out["ready"], out["traffic"] = _traffic_hook(svc, "ready")
    return out


def _stop_one(cfg, name, backend, budget=True):
    svc = cfg["services"][name]
    proc = backend.state()
    if proc["state"] in ("stopped", "failed"):
        return {"drained": False, "drain": "not needed (not running)", "stopped": "already_stopped"}
    drained, how = _traffic_hook(svc, "drain", budget)
    out = {"drained": drained, "drain": how}
    out.update(backend.stop(svc["stop_timeout"]))
    return out


# --------------------------------------------------------------------------
# public API


def status(name=None):
    """
    Process state of managed services (all of them when no name is given).

    name
        A service, a comma list, or a list; default: every service in
        ``hx:services``.

    Returns ``{service: {provider, state, raw_state, pid, uptime_s, intent}}``
    where ``state`` is running | starting | stopping | stopped | failed |
    unknown and ``intent`` is ``{want: up | down, owner, reason, since,
    expires}``: what the service should be doing and who said so.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.status
        salt app1 hx_service.status demo-blue,demo-green
    """
    cfg = _config()
    out = {}
    intents = _load_intents()
    now = time.time()
    for item in _names(name, cfg, allow_all=True):
        backend = _backend(cfg, item)
        proc = backend.state()
        out[item] = {
            "provider": backend.provider,
            "state": proc["state"],
            "raw_state": proc["raw"],
            "pid": proc["pid"],
            "uptime_s": proc["uptime_s"],
            "intent": hx_intent.view(intents.get(item), now),
        }
    return out


def start(name, timeout=None, owner=None, reason=None, **kwargs):
    """
    Start services and what they require, in dependency order, waiting for
    each to be healthy before starting the next. Each is recorded as
    intended up first (lifting a ``stop``'s intent).

    name
        A service, a comma list, or a list.
    timeout
        Seconds to wait for each service's health (default: its pillar
        ``start_timeout``, 30).
    owner, reason
        Who starts it and why, for the intent record (default: the
        calling user).

    Unknown services raise SaltInvocationError, cycles and malformed pillar
    CommandExecutionError naming the pillar key, before anything is started. A service that does not become healthy
    raises CommandExecutionError naming it, what was started before it and
    what was not started.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.start demo-blue
        salt app1 hx_service.start demo-blue,demo-green timeout=20
    """
    cfg = _config()
    order = _start_order(cfg, _names(name, cfg))
    backends = {n: _backend(cfg, n) for n in order}
    _check_health_names(cfg, order)
    _record_intent(order, hx_intent.UP, _owner(owner, kwargs), reason, None)
    done = {}
    for item in order:
        res = _start_one(cfg, item, backends[item], timeout)
        done[item] = res
        if not res["healthy"]:
            rest = order[order.index(item) + 1:]
            raise CommandExecutionError(
                f"{item} did not become healthy ({res['health']['message']}) after {res['ms']} ms; "
                f"started before it: {[n for n in done if n != item] or 'none'}; "
                f"not started: {rest or 'none'}"
            )
    return {"result": True, "order": order, "services": done}


def stop(name, owner=None, reason=None, ttl=None, **kwargs):
    """
    Gracefully stop services, dependents before what they require: drain
    (when ``traffic`` is set), stop, and kill after ``stop_timeout``.

    Only the named services are stopped; their requirements keep running.
    Each is first recorded as intended down: remediation leaves a service
    stopped on purpose alone (and says so) until ``hx_service.start``, or
    until ``ttl`` runs out.

    owner, reason
        Who stops it and why (default: the calling user, "stopped by hand").
        Deployments and maintenance runs pass their id.
    ttl
        Seconds the intent holds (default: until started again). Give one
        when the stopper may die before it starts the service again.

    Returns ``{"order": [...], "services": {name: {"drained": bool, "drain":
    how, "stopped": "graceful" | "killed" | "already_stopped", "killed_by":
    "hx" | "supervisord" | "systemd" (when killed), "stop_ms": int}}}``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.stop demo-blue
    """
    cfg = _config()
    order = _stop_order(cfg, _names(name, cfg))
    backends = {n: _backend(cfg, n) for n in order}
    intent = _record_intent(order, hx_intent.DOWN, _owner(owner, kwargs), reason, ttl)
    return {"result": True, "order": order, "intent": intent,
            "services": {n: _stop_one(cfg, n, backends[n]) for n in order}}


def restart(name, timeout=None, owner=None, reason=None, **kwargs):
    """
    Graceful stop of the named services (reverse order), then start them
    (and anything they require that is down) in dependency order, verifying
    health.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.restart demo-blue
    """
    cfg = _config()
    names = _names(name, cfg)
    stop_order = _stop_order(cfg, names)
    start_order = _start_order(cfg, names)
    backends = {n: _backend(cfg, n) for n in start_order}
    _check_health_names(cfg, start_order)
    stopped = {n: _stop_one(cfg, n, backends[n]) for n in stop_order}
    started = start(names, timeout=timeout, owner=_owner(owner, kwargs), reason=reason or "restarted")
    return {"result": True, "stopped": stopped, "started": started["services"], "order": start_order}


def reload(name):  # pylint: disable=redefined-builtin
    """
    Ask running services to reload their configuration: ``supervisorctl
    signal <reload_signal> <program>`` (default HUP) or ``systemctl reload``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.reload demo-blue
    """
    cfg = _config()
    names = _names(name, cfg)
    backends = {n: _backend(cfg, n) for n in names}
    out = {}
    for item in names:
        proc = backends[item].state()
        if proc["state"] != "running":
            raise CommandExecutionError(f"{item}: cannot reload, process is {proc['raw']}")
        out[item] = {"reloaded": True, "how": backends[item].reload()}
    return {"result": True, "services": out}


def plan(name=None, action="start"):
    """
    What ``start`` (or the ``hx_service.running`` state) would do, changing
    nothing: the dependency order and, per service, its state, health and
    ``would``: start | recover | none | quarantined.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.plan demo-blue
    """
    if action != "start":
        raise SaltInvocationError(f"plan: unsupported action {action!r} (supported: start)")
    cfg = _config()
    order = _start_order(cfg, _names(name, cfg, allow_all=True))
    backends = {n: _backend(cfg, n) for n in order}
    now = time.time()
    out = {}
    for item in order:
        proc = backends[item].state()
        health = _health(cfg["services"][item], proc)
        state = _load_service(item, now)
        if _passing(health):
            would = "none"
        elif state.get("quarantine"):
            would = "quarantined"
        elif proc["state"] in ("stopped", "failed"):
            would = "start"
        else:
            would = "recover"
        out[item] = {"state": proc["state"], "health": health["status"], "would": would}
    return {"order": order, "services": out}


def discover():
    """
    Managed services with provider, state, pid, uptime, health, dependency
    chain (transitive requirements in start order), dependents, quarantine
    and intent (``hx_service.status``'s). A service that cannot be queried is listed with ``error``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.discover
    """
    cfg = _config()
    graph = _graph(cfg)
    store = _load_store()
    intents = _load_intents()
    now = time.time()
    out = {}
    for item, svc in cfg["services"].items():
        entry = {
            "intent": hx_intent.view(intents.get(item), now),
            "requires": svc["requires"],
            "chain": hx_deps.requires_chain(graph, item),
            "dependents": hx_deps.dependents(graph, item),
            "traffic": svc["traffic"],
            "health_checks": svc["health"],
            "quarantine": (store.get(item) or {}).get("quarantine"),
        }
        try:
            backend = _backend(cfg, item)
            entry["provider"] = backend.provider
            proc = backend.state()
            entry.update(state=proc["state"], raw_state=proc["raw"], pid=proc["pid"], uptime_s=proc["uptime_s"])
            entry["health"] = _health(svc, proc)
        except (CommandExecutionError, SaltInvocationError) as exc:
            entry.setdefault("provider", svc["provider"])
            entry.update(state="unknown", error=str(exc))
            entry["health"] = {"status": "unknown", "message": str(exc), "checks": {}}
        out[item] = entry
    return out


# --------------------------------------------------------------------------
# recovery store


def _store_path():
    return os.path.join(__opts__["cachedir"], "hx", "recovery.json")


@contextlib.contextmanager
def _flock(suffix):
    path = _store_path() + suffix
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_services(path, what, why):
    """The ``services`` mapping of a JSON store; a store that cannot be read is an error, never reset."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        # Never reset silently: see ``why``.
        raise CommandExecutionError(f"{what} {path} is unreadable ({exc}); fix or remove it ({why})") from exc
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        raise CommandExecutionError(f"{what} {path} has no 'services' mapping; fix or remove it")
    return services


def _load_store():
    return _read_services(_store_path(), "recovery store", "a reset would lift quarantines behind the operator's back")


def _write_json(path, data):
    """Replace ``path`` atomically (temp file + fsync + os.replace): a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _save_service(name, state):
    """Read-modify-write one service's entry, atomically."""
    path = _store_path()
    with _flock(".lock"):
        services = _load_store()
        services[name] = hx_budget.to_dict(state)
        _write_json(path, {"version": 1, "services": services})


# --------------------------------------------------------------------------
# intent store: what each service should be doing, and who said so


def _intent_path():
    return os.path.join(__opts__["cachedir"], "hx", "intent.json")


def _load_intents():
    return _read_services(_intent_path(), "intent store", "a reset would restart services stopped on purpose")


def _intent_of(name):
    return _load_intents().get(name)


def _record_intent(names, want, owner, reason, ttl):
    """Write ``want`` for every service in ``names`` before acting, so an event racing the act sees it."""
    try:
        rec = hx_intent.entry(want, owner, reason, time.time(), ttl)
    except ValueError as exc:
        raise SaltInvocationError(str(exc)) from exc
    path = _intent_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with _flock(".intent.lock"):
        services = _load_intents()
        for item in names:
            services[item] = rec
        _write_json(path, {"version": 1, "services": services})
    return rec


def _owner(owner, kwargs):
    if owner:
        return owner
    user = kwargs.get("__pub_user")
    return f"operator {user}" if isinstance(user, str) and user else "operator"


def _load_service(name, now):
    raw = _load_store().get(name)
    try:
        state = hx_budget.from_dict(raw)
    except ValueError as exc:
        raise CommandExecutionError(f"recovery store entry for {name} is malformed: {exc}") from exc
    state, fixed = hx_budget.normalize(state, now)
    if fixed:
        log.warning("hx_service: %s: %d recovery timestamps were in the future (clock skew); re-stamped", name, fixed)
    return state


def _fire(name, what, data):
    tag = f"hx/service/{__opts__['id']}/{name}/{what}"
    try:
        sent = bool(__salt__["event.send"](tag, data))
    except Exception as exc:  # pylint: disable=broad-except
        # The quarantine itself is already persisted; a lost event must not undo it.
        log.error("hx_service: could not send %s: %s", tag, exc)
        sent = False
    return {"tag": tag, "sent": sent}


def _restart_for_recovery(cfg, name, backend, proc):
    svc = cfg["services"][name]
    stop_res = None
    if proc["state"] in ("running", "starting", "stopping"):
        # Running but unhealthy: the same graceful path as a planned stop. Never held by
        # the blast-radius budget: this brings a broken host back (the master's
        # remediation holds the host's slot while it works).
        stop_res = _stop_one(cfg, name, backend, budget=False)
    began = time.monotonic()
    try:
        backend.start()
    except CommandExecutionError as exc:
        return False, {"status": "critical", "source": "process", "message": str(exc), "checks": {}}, stop_res
    healthy, health, _ = _wait_healthy(svc, backend, svc["start_timeout"])
    log.debug("hx_service: %s restart -> healthy=%s in %.0f ms", name, healthy, (time.monotonic() - began) * 1000)
    if healthy:
        _traffic_hook(svc, "ready")
    return healthy, health, stop_res


def recover(name, attempts=None):
    """
    Bring a failing service back: if it is down or its health fails, restart
    it and verify health within its ``start_timeout``, spending the restart
    budget (default 3 restarts in 900 s). When the budget is spent, or the
    service is flapping (``flap.count`` recoveries in a row each failed again
    within ``flap.window`` s), it is quarantined: no more restarts until
    ``hx_service.release``, and ``hx/service/<minion>/<name>/quarantined``
    fires once.

    name
        One service.
    attempts
        Most restarts to make in this call (default: whatever the budget
        allows).

    A service intended down (``hx_service.stop``, a parked color, a
    maintenance run) is not restarted: outcome ``intended_down``.

    Returns ``{"service", "outcome": recovered | already_healthy | failed |
    quarantined | intended_down, "attempts": restarts made now, "time_to_recover_ms",
    "evidence": {"before": health, "after": health}, "budget": {...},
    "quarantine": {...} | None, "history": [...], "event": {...}}``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.recover demo-blue
    """
    cfg = _config()
    names = _names(name, cfg)
    if len(names) != 1:
        raise SaltInvocationError("recover takes exactly one service")
    name = names[0]
    if attempts is not None:
        try:
            attempts = int(attempts)
        except (TypeError, ValueError) as exc:
            raise SaltInvocationError(f"attempts must be an integer, got {attempts!r}") from exc
        if attempts < 1:
            raise SaltInvocationError("attempts must be >= 1")
    svc = cfg["services"][name]
    limits = _budget_cfg(cfg, svc)
    backend = _backend(cfg, name)
    _check_health_names(cfg, [name])
    began_wall, began = time.time(), time.monotonic()

    with _flock(f".{name}.lock"):  # one recovery of a service at a time
        state = _load_service(name, began_wall)
        proc = backend.state()
        before = _health(svc, proc)
        result = {"service": name, "attempts": 0, "time_to_recover_ms": None, "event": None,
                  "evidence": {"before": before, "after": before}}

        def finish(outcome, st):
            now = time.time()
            result["outcome"] = outcome
            result["budget"] = dict(limits["budget"], remaining=hx_budget.remaining(st, now, limits["budget"]))
            result["quarantine"] = st.get("quarantine")
            result["history"] = st["attempts"][-20:]
            return result

        if _passing(before):
            return finish("already_healthy", state)
        intent = hx_intent.effective(_intent_of(name), began_wall)
        if intent and intent["want"] == hx_intent.DOWN:
            # Stopped on purpose: a restart would undo someone's work.
            result["intent"] = intent
            result["comment"] = hx_intent.describe(intent)
            return finish("intended_down", state)

        state = hx_budget.note_failure(state, began_wall, limits["flap"])
        made = 0
        while True:
            now = time.time()
            decision = hx_budget.decide(state, now, limits["budget"], limits["flap"])
            if decision["action"] == "quarantined":
                _save_service(name, state)
                return finish("quarantined", state)
            if decision["action"] == "quarantine":
                state = hx_budget.quarantine(state, now, decision["reason"], decision["detail"])
                _save_service(name, state)
                log.warning("hx_service: %s quarantined (%s): %s", name, decision["reason"], decision["detail"])
                result["event"] = _fire(name, "quarantined", {
                    "service": name,
                    "minion": __opts__["id"],
                    "reason": decision["reason"],
                    "detail": decision["detail"],
                    "since": state["quarantine"]["since"],
                    "attempts": made,
                    "history": state["attempts"][-20:],
                    "last_health": result["evidence"]["after"],
                })
                return finish("quarantined", state)
            if attempts is not None and made >= attempts:
                _save_service(name, state)
                return finish("failed", state)

            ts, m0 = time.time(), time.monotonic()
            proc = backend.state()
            healthy, after, stop_res = _restart_for_recovery(cfg, name, backend, proc)
            made += 1
            result["attempts"] = made
            result["evidence"]["after"] = after
            if stop_res is not None:
                result.setdefault("stops", []).append(stop_res)
            ms = int((time.monotonic() - m0) * 1000)
            state = hx_budget.record_attempt(state, ts, time.time(), "recovered" if healthy else "failed", ms)
            _save_service(name, state)
            if healthy:
                result["time_to_recover_ms"] = int((time.monotonic() - began) * 1000)
                return finish("recovered", state)


def release(name):
    """
    Lift a service's quarantine and give it a fresh restart budget (history
    is kept). Fires ``hx/service/<minion>/<name>/released`` when a quarantine
    was lifted.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.release demo-blue
    """
    cfg = _config()
    names = _names(name, cfg)
    if len(names) != 1:
        raise SaltInvocationError("release takes exactly one service")
    name = names[0]
    with _flock(f".{name}.lock"):
        now = time.time()
        state = _load_service(name, now)
        was = state.get("quarantine")
        state = hx_budget.release(state, now)
        _save_service(name, state)
    out = {"service": name, "released": was is not None, "was": was, "history": state["attempts"][-20:]}
    if was is not None:
        out["event"] = _fire(name, "released", {"service": name, "minion": __opts__["id"], "was": was})
    return out


def budget(name):
    """
    Restart budget, flap settings, quarantine and recovery history of one
    service, as persisted in ``<cachedir>/hx/recovery.json``.

    CLI Example:

    .. code-block:: bash

        salt app1 hx_service.budget demo-blue
    """
    cfg = _config()
    names = _names(name, cfg)
    if len(names) != 1:
        raise SaltInvocationError("budget takes exactly one service")
    name = names[0]
    limits = _budget_cfg(cfg, cfg["services"][name])
    now = time.time()
    state = _load_service(name, now)
    flapping, detail = hx_budget.flapping(state, limits["flap"])
    return {
        "service": name,
        "budget": dict(limits["budget"], remaining=hx_budget.remaining(state, now, limits["budget"]),
                       used=len(hx_budget.in_window(state, now, limits["budget"]))),
        "flap": dict(limits["flap"], flapping=flapping, detail=detail),
        "quarantine": state.get("quarantine"),
        "released_at": state.get("released_at"),
        "history": state["attempts"],
    }
