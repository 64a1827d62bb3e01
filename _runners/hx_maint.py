"""Rolling maintenance runs sequenced from the master.

A run takes the targeted hosts batch by batch out of rotation on every load
balancer of their apps, stops the configured services, patches, cleans up,
reboots when required and allowed, starts the services again in dependency
order, verifies services, health checks and application logs, and puts the
hosts back exactly as they were. Nothing starts outside a maintenance window
(unless ``emergency=True``), without a fresh backup (unless emergency), or
while another run holds the lock. A host that fails stays out of rotation;
the run stops once failed hosts exceed ``max_fail_percentage``.

The minion module of the same name (windows) is separate; this runner asks
it. Reference: docs/reference/hx_maint_runner.md.

CLI Example:

.. code-block:: bash

    salt-run hx_maint.plan tgt='app*' batch=1
    salt-run hx_maint.run tgt='app*' batch=1
    salt-run hx_maint.status
"""
import json
import logging
import os
import time
import uuid

import salt.pillar

import hx_apps
import hx_audit
import hx_events
import hx_fleet
import hx_lease
import hx_maintrun
import hx_rotation
import hx_runner
import hx_typed
import hx_store

try:
    import hx_incidents
except ImportError:  # pragma: no cover - the incident desk is optional
    hx_incidents = None

log = logging.getLogger(__name__)

__virtualname__ = "hx_maint"

RUNS = "hx/maint/runs"
LOCKS = "hx/maint/locks"
LOCK_KEY = "fleet"  # one maintenance run at a time per master/cache
CALL_TIMEOUT = 60
# A maintenance stop is intended for at most this long: if the run dies
# before it starts the services again, remediation takes over afterwards.
STOP_INTENT_TTL = 3600


def __virtual__():
    return __virtualname__


class Stop(Exception):
    """The run cannot go on (refusal before anything changed, or a batch that must not start)."""


# -- small helpers ------------------------------------------------------------------


def _say(message):
    hx_runner.progress(globals(), message, log)


def _caller(kwargs):
    return kwargs.get("__pub_user") or os.environ.get("SUDO_USER") or os.environ.get("USER") or "salt"


def _bool(value, key):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    if value is None:
        return False
    raise ValueError(f"{key}: must be True or False, got {value!r}")


def _maint_dir():
    return __opts__.get("hx_maint_dir") or os.path.join(__opts__["cachedir"], "hx", "maint")


def _apps():
    """Every app of ``hx:apps`` (master's pillar), validated; ValueError names a bad one."""
    pillar = salt.pillar.get_pillar(__opts__, {}, __opts__["id"], saltenv="base").compile_pillar()
    raw = ((pillar or {}).get("hx") or {}).get("apps") or {}
    return {name: hx_apps.validate(name, spec) for name, spec in sorted(raw.items())}


def _call(hosts, fun, arg=(), kwarg=None, timeout=CALL_TIMEOUT):
    """``{host: (ok, ret)}`` for every host; a silent host is ``(False, "no answer ...")``."""
    out = hx_fleet.call(__opts__, list(hosts), fun, arg=arg, kwarg=kwarg, tgt_type="list", timeout=timeout)
    res = {}
    for host in hosts:
        if host in out["returns"]:
            data = out["returns"][host]
            ret = data["ret"]
            # An exception comes back as its text with a non-zero retcode; a
            # dict with a retcode (hx_health.check critical) is an answer.
            res[host] = (not (data.get("retcode") and isinstance(ret, str)), ret, data.get("retcode"))
        else:
            res[host] = (False, f"no answer from {host} within {timeout}s ({fun})", None)
    return res


def _one(host, fun, arg=(), kwarg=None, timeout=CALL_TIMEOUT):
    ok, ret, _ = _call([host], fun, arg, kwarg, timeout)[host]
    if not ok:
        raise StepFailed(f"{fun}: {str(ret).strip()[:400]}")
    return ret


class StepFailed(Exception):
    """One host's step failed; the message says why."""


# -- the run record ---------------------------------------------------------------------


class Run:
    def __init__(self, tgt, tgt_type, user, jid, args):
        self.started = time.time()
        self.store = hx_store.Store(__opts__)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.started))
        self.record = {
            "id": f"maint-{stamp}-{uuid.uuid4().hex[:6]}",
            "tgt": tgt,
            "tgt_type": tgt_type,
            "user": user,
            "jid": jid,
            "args": args,
            "emergency": bool(args.get("emergency")),
            "started": self.started,
            "phase": "created",
            "outcome": "running",
            "targets": [],
            "batches": [],
            "window": {},
            "backup": {},
            "hosts": {},
            "phases": [],
            "incidents": [],
            "out_of_rotation": [],
        }

    @property
    def id(self):
        return self.record["id"]

    def phase(self, name, host=None, result="ok", **data):
        now = time.time()
        entry = {"phase": name, "at": round(now, 3), "elapsed": round(now - self.started, 2), "result": result}
        if host:
            entry["host"] = host
        entry.update(data)
        self.record["phase"] = name
        self.record["phases"].append(entry)
        self.save()
        hx_events.fire(__opts__, f"hx/maint/{self.id}/{name}", dict(entry, run=self.id))
        hx_events.audit(__opts__, f"maint.{name}", host or self.record["tgt"], result, who=self.record["user"],
                        jid=self.record["jid"], run=self.id, **data)
        return entry

    def save(self):
        self.store.put(RUNS, self.id, self.record)

    def host(self, host):
        return self.record["hosts"].setdefault(host, {"outcome": "pending"})


# -- gates: window, lock, backup, pre-checks ------------------------------------------------


def _window(run, hosts, emergency):
    answers = _call(hosts, "hx_maint.window_open", kwarg={"emergency": emergency})
    closed = []
    for host, (ok, ret, _) in sorted(answers.items()):
        if not ok or not isinstance(ret, dict):
            run.record["window"][host] = {"open": None, "reason": str(ret)[:300]}
            closed.append(f"{host}: {str(ret).strip()[:300]}")
            continue
        run.record["window"][host] = {k: ret.get(k) for k in ("open", "window", "reason", "emergency", "closes_at",
                                                              "next_open")}
        if not ret.get("open"):
            closed.append(f"{host}: {ret.get('reason')}")
    run.phase("window", result="ok" if not closed else "refused", emergency=emergency,
              hosts={h: w.get("reason") for h, w in run.record["window"].items()})
    if closed:
        raise Stop("outside the maintenance window (pass emergency=True to override): " + "; ".join(closed))


def _holder_text(holder):
    if isinstance(holder, str):
        return holder
    return (f"{hx_lease.describe(holder)}; if that run is dead its lease expires by itself "
            "(or pass break_lock=True once it is stale)")


def _alive(holder):
    return hx_store.pid_alive(__opts__, holder)


def _abandon(run, holder):
    """Mark the record of a maintenance run whose stale lease this run took over as abandoned."""
    why = (f"abandoned by {holder.get('master')} (pid {holder.get('pid')}): "
           f"{holder.get('stale_reason') or 'its lease went stale'}")
    old = run.store.get(RUNS, holder.get("run"))
    if old and old.get("outcome") in ("running", None):
        old.update(outcome="abandoned", reason=why, ended=time.time())
        run.store.put(RUNS, old["id"], old)
    hx_events.audit(__opts__, "maint.abandoned", holder.get("tgt"), "ok", run=holder.get("run"), reason=why,
                    forced=bool(holder.get("forced")))


def _lock(run, break_lock):
    store = run.store
    token = uuid.uuid4().hex
    holder = hx_lease.new(
        token, "maint", "fleet", run.id, run.record["user"], __opts__.get("id"), os.getpid(), time.time(),
        hx_store.lease_ttl(__opts__), what=f"maintenance run {run.id} on {run.record['tgt']}",
        run=run.id, tgt=run.record["tgt"], jid=run.record["jid"], hosts=list(run.record["targets"]),
    )
    taken, current, replaced = store.claim(LOCKS, LOCK_KEY, holder, break_lock, alive=_alive)
    for old in replaced:
        _abandon(run, old)
    if not taken:
        if not isinstance(current, str):
            run.record["holder"] = {k: v for k, v in current.items() if k != "token"}
        raise Stop("another maintenance run holds the lock: " + _holder_text(current))
    run.phase("lock", holder={k: v for k, v in holder.items() if k != "token"})
    return token


# A maintenance run waits this long for a deployment of an app on the hosts
# it is about to drain, then stops (the deployment owns those weights).
DEPLOY_WAIT = 600


def _deploys_on(batch, facts):
    """{app: lease holder} of live, running deployments of the apps the batch's hosts serve."""
    store = hx_store.Store(__opts__)
    apps = sorted({app for host in batch for app, _lb, _backend, _server in facts[host]["servers"]})
    out = {}
    for app in apps:
        held = store.get("hx/deploy/locks", app)
        if held and held.get("state", "running") == "running" and not hx_lease.stale(held, time.time(), _alive(held))[0]:
            out[app] = held
    return out


def _wait_for_deploys(run, batch, facts, wait=DEPLOY_WAIT):
    """Before draining ``batch``: wait (bounded, with progress) for deployments of its apps to end."""
    began = time.monotonic()
    said = 0.0
    held = _deploys_on(batch, facts)
    if not held:
        return
    what = "; ".join(f"{app}: {hx_lease.describe(h)}" for app, h in sorted(held.items()))
    run.phase("wait_deploy", hosts=batch, holders=what)
    while held:
        waited = time.monotonic() - began
        if waited >= wait:
            raise Stop(f"a deployment still holds the apps of {', '.join(batch)} after {wait}s ({what}); "
                       "nothing was drained")
        if waited - said >= 10 or said == 0.0:
            _say(f"waiting for a deployment before draining {', '.join(batch)} ({waited:.0f}s): {what}")
            said = waited or 0.001
        time.sleep(1)
        held = _deploys_on(batch, facts)
    run.record.setdefault("waited", []).append({"hosts": batch, "for": what,
                                                "seconds": round(time.monotonic() - began, 1)})
    run.phase("waited_deploy", hosts=batch, holders=what, seconds=round(time.monotonic() - began, 1))


# ... and this long for the blast-radius budget of an app (another host out
# under someone else's work: a remediation, another automation).
BUDGET_WAIT = 600


def _observed_out(apps, app):
    """Hosts of ``app`` no load balancer shows live (drained by hand, DOWN, left out)."""
    cfg = apps[app]
    out = set()
    for lb in cfg["lbs"]:
        try:
            out |= set(hx_rotation.hosts_out(cfg, _lb_rows(lb, cfg["backend"])))
        except StepFailed as exc:
            raise Stop(f"cannot read {lb} {cfg['backend']} for the blast-radius budget of {app}: {exc}") from None
    return out


def _ask_budget(slots, batch, apps):
    """Ask each app's budget for the batch's hosts: ``(refusals, waitable)``."""
    refusals, waitable = [], False
    for host in batch:
        for app in hx_rotation.apps_of(apps, host):
            decision = slots.ask(app, host, apps[app]["max_out"], _observed_out(apps, app))
            if not decision["granted"]:
                refusals.append(hx_rotation.refusal(app, host, decision))
                waitable = waitable or decision["foreign"]
    return refusals, waitable


def _wait_for_budget(run, batch, apps, slots, wait=BUDGET_WAIT):
    """Before draining ``batch``: hold a budget slot for every host and app, waiting (bounded) for others'."""
    too_big = hx_rotation.batch_too_big(apps, batch)
    if too_big:
        raise Stop(f"{too_big}; nothing was drained")
    began = time.monotonic()
    said = None
    refusals, waitable = _ask_budget(slots, batch, apps)
    waiting = bool(refusals)
    if waiting:
        run.phase("wait_budget", hosts=batch, holders="; ".join(refusals))
    while refusals:
        waited = time.monotonic() - began
        if not waitable or waited >= wait:
            for host in batch:
                slots.give_back(host)
            why = "" if waitable else " (held by no running automation: put them back or wait for them)"
            raise Stop("; ".join(refusals) + f"{why}; nothing was drained after {waited:.0f}s")
        if said is None or waited - said >= 10:
            _say(f"waiting for the blast-radius budget before draining {', '.join(batch)} ({waited:.0f}s): "
                 + "; ".join(refusals))
            said = waited
        time.sleep(1)
        refusals, waitable = _ask_budget(slots, batch, apps)
    if waiting:
        seconds = round(time.monotonic() - began, 1)
        run.record.setdefault("waited", []).append({"hosts": batch, "for": "blast-radius budget", "seconds": seconds})
        run.phase("waited_budget", hosts=batch, seconds=seconds)


def _settings(hosts):
    answers = _call(hosts, "pillar.get", arg=["hx:maintenance"], kwarg={"default": {}, "unmask": True})
    cfgs, problems = {}, []
    for host, (ok, ret, _) in sorted(answers.items()):
        if not ok:
            problems.append(f"{host}: {str(ret)[:300]}")
            continue
        try:
            cfgs[host] = hx_maintrun.settings(ret)
        except ValueError as exc:
            problems.append(f"{host}: {exc}")
    if problems:
        raise Stop("bad maintenance settings: " + "; ".join(problems))
    return cfgs


def _backups(run, hosts, cfgs, emergency):
    now = time.time()
    stale = []
    for host in hosts:
        backup = cfgs[host]["backup"]
        if backup is None:
            verdict = {"fresh": False, "reason": "no hx:maintenance:backup configured", "path": None}
        else:
            ok, ret, _ = _call([host], "file.find", arg=[backup["path"]],
                               kwarg={"type": "f", "name": backup["pattern"], "print": "path,mtime"})[host]
            if not ok:
                verdict = {"fresh": False, "reason": f"cannot list {backup['path']}: {str(ret)[:200]}", "path": None}
            else:
                verdict = hx_maintrun.newest_backup(ret if isinstance(ret, list) else [], now,
                                                    backup["max_age_hours"])
            verdict["where"] = f"{host}:{backup['path']}/{backup['pattern']}"
        run.record["backup"][host] = verdict
        if not verdict["fresh"]:
            stale.append(f"{host}: {verdict['reason']}")
    run.phase("backup", result="ok" if not stale else ("emergency" if emergency else "refused"),
              hosts={h: v["reason"] for h, v in run.record["backup"].items()})
    if stale and not emergency:
        raise Stop("no recent backup (pass emergency=True to override): " + "; ".join(stale))
    if stale:
        _say("WARNING: emergency run without a verified backup: " + "; ".join(stale))


def _prechecks(run, hosts, cfgs, services_arg):
    """Apps, LBs, services; returns ``(apps, facts)``. Raises Stop naming every problem."""
    problems = []
    try:
        apps = _apps()
    except ValueError as exc:
        raise Stop(f"hx:apps: {exc}") from None
    lbs = sorted({lb for cfg in apps.values() if set(cfg["hosts"]) & set(hosts) for lb in cfg["lbs"]})
    for lb, (ok, ret, _) in sorted(_call(lbs, "hx_traffic.servers").items()):
        if not ok:
            problems.append(f"load balancer {lb}: {str(ret)[:300]}")
    facts = {}
    discover = _call(hosts, "hx_service.discover")
    checks = _call(hosts, "hx_health.checks", kwarg={"on_demand": True})
    grains = _call(hosts, "grains.get", arg=["os_family"])
    for host in hosts:
        ok, ret, _ = discover[host]
        if not ok or not isinstance(ret, dict):
            problems.append(f"{host}: hx_service.discover: {str(ret)[:300]}")
            continue
        cfg = cfgs[host]
        stop = hx_maintrun.names("services", services_arg) if services_arg is not None else cfg["stop_services"]
        unknown = [s for s in stop + (cfg["critical_services"] or []) if s not in ret]
        if unknown:
            problems.append(f"{host}: not in hx:services: {', '.join(unknown)}")
        running = sorted(s for s, row in ret.items() if isinstance(row, dict) and row.get("state") == "running")
        critical = cfg["critical_services"] if cfg["critical_services"] is not None else running
        ok_c, chk, _ = checks[host]
        if not ok_c or not isinstance(chk, list):
            problems.append(f"{host}: hx_health.checks: {str(chk)[:300]}")
        configured = [c["name"] for c in chk] if ok_c and isinstance(chk, list) else []
        if cfg["health_checks"] is not None:
            health = list(cfg["health_checks"])
        else:
            health = [c["name"] for c in chk if not c.get("on_demand")] if configured else []
        # plus the checks of what must run, even on_demand ones (an idle color's are)
        for svc in critical:
            health += [h for h in (ret.get(svc) or {}).get("health_checks") or [] if h not in health]
        missing = [h for h in health if configured and h not in configured]
        if missing:
            problems.append(f"{host}: health checks not in hx:health:checks: {', '.join(missing)}")
        facts[host] = {"stop": stop, "running": running, "critical": critical, "health": health,
                       "os_family": grains[host][1] if grains[host][0] else None,
                       "servers": hx_maintrun.host_servers(apps, host)}
    run.phase("precheck", result="ok" if not problems else "refused", lbs=lbs,
              hosts={h: {k: f[k] for k in ("stop", "critical", "health")} for h, f in facts.items()})
    if problems:
        raise Stop("pre-checks failed: " + "; ".join(problems))
    return apps, facts


# -- load balancers -------------------------------------------------------------------------


def _lb_rows(lb, backend):
    ret = _one(lb, "hx_traffic.servers", arg=[backend])
    return (ret or {}).get(backend) or {}


def _drain_safety(batch, facts):
    """Raise Stop when taking ``batch`` out would leave an app's backend on a LB with no live server."""
    groups = {}
    for host in batch:
        for app, lb, backend, server in facts[host]["servers"]:
            groups.setdefault((app, lb, backend), []).append(server)
    for (app, lb, backend), servers in sorted(groups.items()):
        try:
            rows = _lb_rows(lb, backend)
        except StepFailed as exc:
            raise Stop(f"cannot read {lb} {backend}: {exc}") from None
        left = hx_maintrun.remaining_live(rows, servers)
        if not left:
            raise Stop(f"taking {', '.join(batch)} out would leave app {app} with no live server on {lb} "
                       f"(backend {backend}); nothing was drained")


def _drain(run, host, facts, cfg):
    rec = run.host(host)
    rec["drained"] = []
    for app, lb, backend, server in facts[host]["servers"]:
        rows = _lb_rows(lb, backend)
        if server not in rows:
            raise StepFailed(f"{lb}: backend {backend} has no server {server}")
        before = {k: rows[server].get(k) for k in ("weight", "admin", "status")}
        entry = {"app": app, "lb": lb, "backend": backend, "server": server, "before": before}
        rec["drained"].append(entry)
        run.save()
        # budget=False: this run holds the host's slot in the master's budget already.
        ret = _one(lb, "hx_traffic.drain", kwarg={"backend": backend, "server": server,
                                                   "timeout": cfg["drain_timeout"], "budget": False},
                   timeout=int(cfg["drain_timeout"]) + 30)
        entry["drain"] = {k: ret.get(k) for k in ("from", "state", "waited_ms")}
        row = _lb_rows(lb, backend).get(server) or {}
        entry["left"] = {k: row.get(k) for k in ("weight", "admin")}  # what restore checks is still ours
        run.save()
    run.phase("drain", host=host, servers=[f"{e['lb']}:{e['backend']}/{e['server']}" for e in rec["drained"]])


def _restore(run, host, cfg):
    rec = run.host(host)
    done = []
    for entry in rec.get("drained") or []:
        lb, backend, server, before = entry["lb"], entry["backend"], entry["server"], entry["before"]
        now = _lb_rows(lb, backend).get(server)
        change = hx_maintrun.restore_changes(before, now, entry.get("left"))
        if hx_maintrun.foreign_weight(now, entry.get("left")):
            entry["foreign_weight"] = int((now or {}).get("weight") or 0)
            _say(f"{lb}: {backend}/{server} weight changed to {entry['foreign_weight']} by someone else since the "
                 f"drain (was {(entry.get('left') or {}).get('weight')}); left as it is")
        # Weight first: a server leaving maint must come back with its old weight, not another.
        if "weight" in change:
            _one(lb, "hx_traffic.set_weight", arg=[backend, server, change["weight"]])
        if "state" in change:
            _one(lb, "hx_traffic.set_state", arg=[backend, server, change["state"]])
        done.append({"server": f"{lb}:{backend}/{server}", "restored": change or "unchanged"})
    deadline = time.monotonic() + cfg["restore_timeout"]
    while True:
        wrong = []
        for entry in rec.get("drained") or []:
            row = _lb_rows(entry["lb"], entry["backend"]).get(entry["server"]) or {}
            before = entry["before"]
            weight = entry.get("foreign_weight", before.get("weight"))
            if row.get("admin") != before.get("admin") or int(row.get("weight") or 0) != int(weight or 0):
                wrong.append(f"{entry['server']}: admin {row.get('admin')} weight {row.get('weight')}, "
                             f"expected {before.get('admin')}/{weight}")
            elif before.get("status") == "UP" and row.get("status") not in ("UP", "unknown"):
                wrong.append(f"{entry['server']}: {row.get('status')}, was UP")
        if not wrong:
            break
        if time.monotonic() >= deadline:
            raise StepFailed("back in rotation but not as before: " + "; ".join(wrong))
        time.sleep(0.5)
    rec["restored"] = done
    run.phase("restore", host=host, servers=done)


# -- the steps on one host ------------------------------------------------------------------


def _stop_services(run, host, facts):
    rec = run.host(host)
    stop = facts[host]["stop"]
    rec["services_stopped"] = []
    if stop:
        ret = _one(host, "hx_service.stop", arg=[",".join(stop)], timeout=300,
                   kwarg={"owner": f"maintenance {run.id}", "reason": "maintenance run", "ttl": STOP_INTENT_TTL})
        rec["services_stopped"] = [s for s, row in (ret.get("services") or {}).items()
                                   if row.get("stopped") in ("graceful", "killed")]
        if not ret.get("result", True):
            raise StepFailed(f"hx_service.stop: {ret}")
    run.phase("stop_services", host=host, services=rec["services_stopped"])


def _patch(run, host, cfg, security_only):
    rec = run.host(host)
    patch = cfg["patch"]
    kwarg = {"security_only": patch["security_only"] if security_only is None else security_only,
             "refresh": patch["refresh"]}
    if patch["exclude"]:
        kwarg["exclude"] = ",".join(patch["exclude"])
    if patch["pkgs"] is not None:
        kwarg["pkgs"] = ",".join(patch["pkgs"])
    ret = _one(host, "hx_patch.apply", kwarg=kwarg, timeout=int(cfg["patch_timeout"]))
    rec["patch"] = {"args": kwarg, "changes": ret.get("changes") or {}, "upgraded": ret.get("upgraded") or [],
                    "failed": ret.get("failed") or {}, "held": ret.get("held") or [],
                    "reboot_required": ret.get("reboot_required")}
    run.phase("patch", host=host, result="ok" if ret.get("result") else "failed",
              upgraded=rec["patch"]["upgraded"], failed=rec["patch"]["failed"])
    if not ret.get("result"):
        raise StepFailed(f"packages did not reach their candidate version: {ret.get('failed')}")


def _tidy(host, clean, test):
    """``{deleted, warnings}`` of ``hx_cleanup.tidied`` over the host's ``cleanup:tmp_dirs``.

    The state re-checks each directory resolved on the host and removes by
    descriptor: a directory swapped for a symlink cannot redirect a removal."""
    out = {"deleted": [], "warnings": []}
    if not clean["tmp_dirs"]:
        return out
    ok, ret, _ = _call([host], "state.single", arg=["hx_cleanup.tidied", "hx maintenance cleanup"],
                       kwarg={"dirs": clean["tmp_dirs"], "age_days": clean["max_age_days"],
                              "key": hx_maintrun.TMP_DIRS_KEY, "test": test})[host]
    states = [v for v in ret.values() if isinstance(v, dict)] if ok and isinstance(ret, dict) else []
    for state in states:
        out["deleted"] += (state.get("changes") or {}).get("removed", [])
        if state.get("result") is False:
            out["warnings"].append(f"cleanup: {state.get('comment')}"[:300])
    if not states:
        out["warnings"].append(f"cleanup: {str(ret)[:200]}")
    return out


def _cleanup(run, host, cfg, facts):
    """Old temp files, logrotate -f, package cache: warnings only, never a failed host."""
    rec = run.host(host)
    clean = cfg["cleanup"]
    out = {"deleted": [], "logrotate": None, "pkg_cache": None, "warnings": []}
    tidy = _tidy(host, clean, test=False)
    out["deleted"], out["warnings"] = tidy["deleted"], tidy["warnings"]
    if clean["logrotate"]:
        argv = ["logrotate", "-f"] + (["-s", clean["logrotate_state"]] if clean["logrotate_state"] else []) + [
            clean["logrotate"]]
        ok, ret, _ = _call([host], "cmd.run_all", arg=[argv], kwarg={"python_shell": False})[host]
        out["logrotate"] = ret.get("retcode") if ok and isinstance(ret, dict) else str(ret)[:200]
        if out["logrotate"] != 0:
            out["warnings"].append(f"logrotate: {(ret.get('stderr') if isinstance(ret, dict) else ret)}"[:300])
    if clean["pkg_cache"]:
        argv = ["apt-get", "clean"] if facts[host]["os_family"] == "Debian" else ["dnf", "clean", "packages"]
        ok, ret, _ = _call([host], "cmd.run_all", arg=[argv], kwarg={"python_shell": False})[host]
        out["pkg_cache"] = " ".join(argv) if ok and isinstance(ret, dict) and ret.get("retcode") == 0 else None
        if out["pkg_cache"] is None:
            out["warnings"].append(f"{' '.join(argv)}: {str(ret)[:200]}")
    rec["cleanup"] = out
    run.phase("cleanup", host=host, result="ok" if not out["warnings"] else "warning",
              deleted=len(out["deleted"]), warnings=out["warnings"])


def _reboot(run, host, cfg, reboot):
    rec = run.host(host)
    ret = _one(host, "hx_patch.maybe_reboot", kwarg={"dry_run": reboot is False})
    rec["reboot"] = {k: ret.get(k) for k in ("required", "action", "reason", "done", "dry_run", "packages")}
    if reboot is False and ret.get("action") == "reboot":
        rec["reboot"]["reason"] = "reboot required but not allowed in this run (reboot=False); reported only"
    run.phase("reboot", host=host, **{k: rec["reboot"][k] for k in ("required", "action", "done", "reason")})
    if ret.get("done"):
        _wait_reboot(host, ret, cfg)


def _wait_reboot(host, ret, cfg):
    """Wait for a host rebooted by ``shutdown -r <delay>`` to come back (its uptime restarts)."""
    called = time.time()
    delay = int(((ret.get("policy") or {}).get("delay_minutes")) or 0) * 60
    deadline = time.monotonic() + delay + cfg["reboot_timeout"]
    _say(f"{host}: reboot scheduled in {delay // 60} min; waiting up to {delay + cfg['reboot_timeout']:.0f}s")
    while time.monotonic() < deadline:
        ok, up, _ = _call([host], "status.uptime", timeout=10)[host]
        if ok and isinstance(up, dict) and up.get("seconds", 1e12) < time.time() - called:
            return
        time.sleep(10)
    raise StepFailed(f"did not come back from its reboot within {delay + cfg['reboot_timeout']:.0f}s")


def _start_services(run, host):
    rec = run.host(host)
    stopped = rec.get("services_stopped") or []
    rec["services_started"] = []
    if stopped:
        ret = _one(host, "hx_service.start", arg=[",".join(stopped)], timeout=300,
                   kwarg={"owner": f"maintenance {run.id}", "reason": "maintenance run done"})
        rec["services_started"] = [s for s, row in (ret.get("services") or {}).items()
                                   if row.get("action") == "started"]
        if not ret.get("result", True):
            raise StepFailed(f"hx_service.start: {ret}")
    run.phase("start_services", host=host, services=rec["services_started"])


def _verify(run, host, cfg, facts):
    rec = run.host(host)
    problems = []
    critical = facts[host]["critical"]
    services = {}
    if critical:
        ok, ret, _ = _call([host], "hx_service.status", arg=[",".join(critical)])[host]
        if not ok or not isinstance(ret, dict):
            problems.append(f"hx_service.status: {str(ret)[:300]}")
        else:
            services = {s: (ret.get(s) or {}).get("state") for s in critical}
            down = [f"{s} is {st}" for s, st in services.items() if st != "running"]
            if down:
                problems.append("critical services not running: " + ", ".join(down))
    health = {}
    if facts[host]["health"]:
        ok, ret, _ = _call([host], "hx_health.check", kwarg={"names": ",".join(facts[host]["health"])})[host]
        if not ok or not isinstance(ret, dict):
            problems.append(f"hx_health.check: {str(ret)[:300]}")
        else:
            health = {n: c.get("status") for n, c in (ret.get("checks") or {}).items()}
            bad = [f"{n}={st} ({(ret['checks'][n].get('message') or '')[:120]})" for n, st in sorted(health.items())
                   if st not in cfg["health_ok"]]
            if bad:
                problems.append("health checks failing: " + "; ".join(bad))
    logs = []
    now = time.time()
    for path in cfg["app_logs"]:
        ok, st, _ = _call([host], "file.stats", arg=[path])[host]
        if not ok or not isinstance(st, dict) or not st:
            logs.append({"path": path, "matches": [], "source": "missing", "scanned": 0})
            continue
        ok, ret, _ = _call([host], "cmd.run_all", arg=[["tail", "-c", str(cfg["log_max_bytes"]), path]],
                           kwarg={"python_shell": False})[host]
        if not ok or not isinstance(ret, dict) or ret.get("retcode"):
            problems.append(f"cannot read {path}: {str(ret)[:200]}")
            continue
        found = hx_maintrun.scan_log(ret.get("stdout") or "", now, cfg["log_window_minutes"] * 60,
                                     mtime=st.get("mtime"), levels=cfg["log_levels"], tz=cfg["log_tz"], path=path)
        logs.append(found)
        if found["matches"]:
            problems.append(f"{path}: {len(found['matches'])} error line(s) in the last "
                            f"{cfg['log_window_minutes']} min, e.g. {found['matches'][-1]['line'][:200]!r}")
    rec["verification"] = {"passed": not problems, "problems": problems, "services": services, "health": health,
                           "logs": [dict(l, matches=l["matches"][-5:]) for l in logs]}
    run.phase("verify", host=host, result="ok" if not problems else "failed", problems=problems)
    if problems:
        raise StepFailed("post-verification failed: " + "; ".join(problems))


# -- one batch, the whole run ----------------------------------------------------------------


def _maintain(run, host, cfgs, facts, opts):
    """Everything after the drain for one host; StepFailed leaves it out of rotation."""
    cfg = cfgs[host]
    rec = run.host(host)
    step = "stop_services"
    try:
        _stop_services(run, host, facts)
        step = "patch"
        _patch(run, host, cfg, opts["security_only"])
        step = "cleanup"
        _cleanup(run, host, cfg, facts)
        step = "reboot"
        _reboot(run, host, cfg, opts["reboot"])
        step = "start_services"
        _start_services(run, host)
        step = "verify"
        _verify(run, host, cfg, facts)
        step = "restore"
        _restore(run, host, cfg)
    except StepFailed as exc:
        rec.update(outcome="failed", failed_step=step, reason=str(exc))
        return False
    return True


def _batch(run, batch, cfgs, facts, opts, slots):
    for host in batch:
        run.host(host).update(outcome="running", started=time.time())
    run.phase("batch", hosts=batch, number=len(run.record["batches"]))
    # Out of rotation first, all of the batch, before anything is touched.
    for host in batch:
        try:
            _drain(run, host, facts, cfgs[host])
        except StepFailed as exc:
            run.host(host).update(outcome="failed", failed_step="drain", reason=str(exc))
    for host in batch:
        rec = run.host(host)
        if rec["outcome"] == "running":
            _say(f"{host}: out of rotation; stopping services, patching, verifying")
            if _maintain(run, host, cfgs, facts, opts):
                rec["outcome"] = "ok"
        rec["ended"] = time.time()
        if rec["outcome"] == "ok":
            rec["in_rotation"] = True
            run.phase("host_done", host=host, duration=round(rec["ended"] - rec["started"], 1))
            slots.give_back(host)
            _resolve_held(run, host)
            _say(f"{host}: done, back in rotation ({rec['ended'] - rec['started']:.0f}s)")
        else:
            rec["in_rotation"] = False
            for entry in rec.get("drained") or []:
                run.record["out_of_rotation"].append(
                    {"host": host, "lb": entry["lb"], "backend": entry["backend"], "server": entry["server"],
                     "put_back": f"salt {entry['lb']} hx_traffic.set_state {entry['backend']} {entry['server']} "
                                 f"{entry['before'].get('admin') or 'ready'}"})
            run.phase("host_failed", host=host, result="failed", step=rec.get("failed_step"), reason=rec.get("reason"))
            _say(f"{host}: FAILED at {rec.get('failed_step')}: {rec.get('reason')}; left out of rotation")
    run.record["batches"].append(batch)


def _resolve_held(run, host):
    """The host is maintained, verified and back in rotation: what remediation held back for it is over."""
    if hx_incidents is None or not hasattr(hx_incidents, "make_desk"):
        return
    try:
        ids = hx_incidents.make_desk(__opts__).resolve_held(
            [host], f"maintenance run {run.id}",
            f"{host} maintained by run {run.id}, verified and back in rotation: the planned work that held this back has ended")
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("hx_maint: could not resolve the held-back incidents of %s: %s", host, exc)
        return
    if ids:
        run.phase("incidents_resolved", host=host, incidents=ids)
        _say(f"{host}: resolved {len(ids)} incident(s) held back for this maintenance: {', '.join(ids)}")


def _incidents(run, failed):
    """One incident per failed host, through the incident desk when it is installed.

    The host is left out of rotation: its type (``maintenance``, high, escalates
    by default: _utils/hx_inctypes.py) pages the first level unless a rule says
    otherwise.
    """
    if hx_incidents is None or not hasattr(hx_incidents, "make_desk"):
        run.record["incidents"].append({"error": "incident module not available"})
        return
    secrets = hx_audit.secrets(__opts__)
    try:
        desk = hx_incidents.make_desk(__opts__)
        secrets = desk.secrets
        for host in failed:
            rec = run.host(host)
            now = time.time()
            key = hx_incidents.dedupe_key(host, "maintenance", run.id)
            cls = hx_incidents.classify("maintenance", "critical", desk.cfg["classification"])
            summary = (f"maintenance run {run.id}: {host} failed at {rec.get('failed_step')}: "
                       f"{(rec.get('reason') or '')[:300]}; left out of rotation")
            with desk.locked(key):
                inc = hx_incidents.new_incident(
                    hx_incidents.make_id(now, host, set(desk.store.ids())), host, "maintenance", run.id, cls, now,
                    summary, dedupe=key, status="critical", run=run.id, step=rec.get("failed_step"))
                desk.create(inc)
            desk.notify(inc["id"], "open")
            if inc["escalate"]:
                inc = desk.escalate(inc["id"], f"{host} left out of rotation by maintenance run {run.id}")
            rec["incident"] = inc["id"]
            run.record["incidents"].append({"host": host, "id": inc["id"], "severity": inc["severity"],
                                            "priority": inc["priority"], "level": inc["level"]})
            run.phase("incident", host=host, incident=inc["id"], severity=inc["severity"], level=inc["level"])
    except Exception as exc:  # pylint: disable=broad-except
        # A broken notification channel must not hide the run's own result.
        text = secrets.error(exc)
        log.error("hx_maint: cannot open incident: %s", text)
        run.record["incidents"].append({"error": f"incident not opened: {text}"})


def _report(run):
    rec = run.record
    rec["compliance"] = hx_maintrun.compliance(rec)
    run.save()
    base = _maint_dir()
    reports = os.path.join(base, "reports")
    os.makedirs(reports, exist_ok=True)
    path = os.path.join(reports, f"{run.id}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(rec, fh, indent=2, sort_keys=True, default=str)
    os.replace(path + ".tmp", path)
    rows = [hx_maintrun.csv_row(h, r) for h, r in sorted(rec["hosts"].items(), key=lambda kv: kv[1].get("ended") or 0)
            if r.get("outcome") in ("ok", "failed")]
    csv_path = os.path.join(base, "maintenance-summary.csv")
    if rows:
        new = not os.path.exists(csv_path) or os.path.getsize(csv_path) == 0
        with open(csv_path, "a", encoding="utf-8") as fh:
            fh.write(hx_maintrun.csv_lines(rows, header=new))
    rec["report"] = {"json": path, "csv": csv_path if rows else None}
    run.save()
    return path


def _finish(run, outcome, reason=None):
    rec = run.record
    rec.update(outcome=outcome, reason=reason, ended=time.time())
    rec["duration"] = round(rec["ended"] - run.started, 2)
    for host in rec["targets"]:
        if run.host(host)["outcome"] == "pending":
            run.host(host)["outcome"] = "skipped"
    _report(run)
    run.phase("done", result="ok" if outcome == "succeeded" else outcome, outcome=outcome, reason=reason,
              compliance=rec["compliance"], report=rec["report"]["json"])
    hosts = rec["hosts"]
    ret = {
        "result": outcome == "succeeded",
        "outcome": outcome,
        "run": run.id,
        "reason": reason,
        "emergency": rec["emergency"],
        "batches": rec["batches"],
        "hosts": {h: {k: r.get(k) for k in ("outcome", "failed_step", "reason", "in_rotation", "incident")
                      if r.get(k) is not None} for h, r in sorted(hosts.items())},
        "compliance": rec["compliance"],
        "out_of_rotation": rec["out_of_rotation"],
        "incidents": rec["incidents"],
        "report": rec["report"],
        "duration": rec["duration"],
        "comment": (f"maintenance {run.id}: {outcome}" + (f": {reason}" if reason else "")),
    }
    if rec.get("holder"):
        ret["holder"] = rec["holder"]
    return hx_runner.finish(__context__, ret)


def _run_opts(batch, emergency, max_fail_percentage, security_only, reboot, services):
    opts = {
        "batch": batch,
        "emergency": _bool(emergency, "emergency"),
        "max_fail_percentage": hx_maintrun.max_fail(max_fail_percentage),
        "security_only": None if security_only is None else _bool(security_only, "security_only"),
        "reboot": None if reboot is None else _bool(reboot, "reboot"),
        "services": services,
    }
    hx_maintrun.batch_size(batch, 1)
    if services is not None:
        opts["services"] = hx_maintrun.names("services", services)
    return opts


# -- public functions ---------------------------------------------------------------------------


def run(tgt, tgt_type="glob", batch=1, emergency=False, max_fail_percentage=0, security_only=None, reboot=None,
        services=None, break_lock=False, **kwargs):
    """
    Rolling maintenance of the minions ``tgt`` matches, ``batch`` hosts at a time.

    tgt / tgt_type
        Which minions (any Salt target type: glob, list, compound, grain ...).
    batch
        Hosts per batch: a number (``2``) or a share (``"25%"``, rounded up).
    emergency
        Run outside the maintenance window and without a fresh backup; both
        are recorded (``compliance.window_respected: false``).
    max_fail_percentage
        Stop the run when failed hosts exceed this share of the targets
        (default 0: the first failure stops it). Failed hosts stay out of
        rotation.
    security_only
        Only security updates (default ``hx:maintenance:patch:security_only``).
    reboot
        ``False`` never reboots in this run (a required reboot is reported);
        default/``True``: ``hx:patching:auto_reboot`` decides.
    services
        Services to stop while patching (default ``hx:maintenance:stop_services``).
    break_lock
        Take over the lock of a maintenance run that died.

    Fires ``hx/maint/<run>/<phase>``; writes ``<cachedir>/hx/maint/reports/<run>.json``
    and appends to ``<cachedir>/hx/maint/maintenance-summary.csv``.

    CLI Example:

    .. code-block:: bash

        salt-run hx_maint.run tgt='app*' batch=1
        salt-run hx_maint.run tgt=app1,app2 tgt_type=list batch=50% max_fail_percentage=50
        salt-run hx_maint.run tgt=app1 emergency=True reboot=False
    """
    try:
        tgt, tgt_type = hx_typed.target(tgt, tgt_type)
        opts = _run_opts(batch, emergency, max_fail_percentage, security_only, reboot, services)
        break_lock = "force" if str(break_lock).lower() == "force" else _bool(break_lock, "break_lock")
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "outcome": "refused", "comment": str(exc)})
    run_ = Run(tgt, tgt_type, _caller(kwargs), kwargs.get("__pub_jid"), dict(opts, tgt=tgt, tgt_type=tgt_type))
    emergency = opts["emergency"]
    hosts = hx_fleet.expected_minions(__opts__, tgt, tgt_type)
    run_.record["targets"] = hosts
    run_.phase("start", hosts=hosts, batch=str(batch), emergency=emergency,
               max_fail_percentage=opts["max_fail_percentage"])
    if not hosts:
        return _finish(run_, "refused", f"target {tgt!r} ({tgt_type}) matches no accepted minion")
    _say(f"maintenance {run_.id}: {len(hosts)} host(s): {', '.join(hosts)}; batch {batch}"
         + ("; EMERGENCY (window and backup checks bypassed, recorded)" if emergency else ""))
    try:
        _window(run_, hosts, emergency)
        # Every host's numbers and settings are checked before the lease is taken.
        cfgs = _settings(hosts)
        token = _lock(run_, break_lock)
    except Stop as exc:
        return _finish(run_, "refused", str(exc))
    beat = hx_store.Heartbeat(run_.store, LOCKS, LOCK_KEY, token, hx_lease.heartbeat_every(
        float((run_.store.get(LOCKS, LOCK_KEY) or {}).get("ttl") or hx_lease.DEFAULT_TTL)))
    beat.__enter__()
    slots = hx_store.Slots(run_.store, "maint", run_.id, run_.record["user"], f"maintenance run {run_.id}")
    try:
        try:
            _backups(run_, hosts, cfgs, emergency)
            app_cfgs, facts = _prechecks(run_, hosts, cfgs, opts["services"])
        except Stop as exc:
            return _finish(run_, "refused", str(exc))
        plan = hx_maintrun.batches(hosts, batch)
        _say(f"batches: {' | '.join(', '.join(b) for b in plan)}")
        failed = []
        for batch_hosts in plan:
            try:
                _wait_for_deploys(run_, batch_hosts, facts)
                _drain_safety(batch_hosts, facts)
                _wait_for_budget(run_, batch_hosts, app_cfgs, slots)
            except Stop as exc:
                run_.phase("stopped", result="failed", reason=str(exc))
                _incidents(run_, failed)
                return _finish(run_, "failed", str(exc))
            # The lease names the hosts under work: remediation holds back there only.
            run_.store.update(LOCKS, LOCK_KEY, token, batch=sorted(set(batch_hosts) | set(failed)))
            _batch(run_, batch_hosts, cfgs, facts, opts, slots)
            failed = [h for h in hosts if run_.host(h)["outcome"] == "failed"]
            # Failed hosts stay out of rotation, still held, until the run ends.
            run_.store.update(LOCKS, LOCK_KEY, token, batch=failed)
            if hx_maintrun.fail_exceeded(len(failed), len(hosts), opts["max_fail_percentage"]):
                reason = (f"{len(failed)} of {len(hosts)} host(s) failed ({', '.join(failed)}), more than "
                          f"max_fail_percentage={opts['max_fail_percentage']:g}; run stopped, failed hosts left "
                          "out of rotation")
                run_.phase("stopped", result="failed", reason=reason)
                _incidents(run_, failed)
                return _finish(run_, "failed", reason)
        if failed:
            _incidents(run_, failed)
            return _finish(run_, "failed", f"{', '.join(failed)} failed (within max_fail_percentage); "
                                           "left out of rotation")
        return _finish(run_, "succeeded")
    except Exception as exc:  # pylint: disable=broad-except
        log.exception("hx_maint.run %s", run_.id)
        return _finish(run_, "error", f"unexpected error: {exc}; hosts being maintained stay out of rotation")
    finally:
        slots.__exit__(None, None, None)  # a host left out still counts: the LB shows it out
        beat.__exit__(None, None, None)
        run_.store.release(LOCKS, LOCK_KEY, token)


def plan(tgt, tgt_type="glob", batch=1, emergency=False, security_only=None, reboot=None, services=None, **kwargs):
    """
    What ``hx_maint.run`` with the same arguments would do, and whether it
    would be refused; changes nothing (patches are listed with
    ``hx_patch.apply test=True``, cleanup with ``file.find`` without delete).

    CLI Example:

    .. code-block:: bash

        salt-run hx_maint.plan tgt='app*' batch=1
    """
    try:
        tgt, tgt_type = hx_typed.target(tgt, tgt_type)
        opts = _run_opts(batch, emergency, 0, security_only, reboot, services)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    hosts = hx_fleet.expected_minions(__opts__, tgt, tgt_type)
    if not hosts:
        return hx_runner.finish(__context__, {"result": False, "comment": f"target {tgt!r} matches no minion"})
    refusals, lines = [], []
    windows = _call(hosts, "hx_maint.window_open")
    for host, (ok, ret, _) in sorted(windows.items()):
        if not ok or not ret.get("open"):
            text = ret.get("reason") if ok else str(ret)[:200]
            if opts["emergency"]:
                lines.append(f"window {host}: {text} -> bypassed (emergency, recorded)")
            else:
                refusals.append(f"window {host}: {text}")
        else:
            lines.append(f"window {host}: {ret.get('reason')}")
    holder = hx_store.Store(__opts__).get(LOCKS, LOCK_KEY)
    if holder:
        refusals.append("lock: " + _holder_text(holder))
    else:
        lines.append(f"lock {LOCKS}/{LOCK_KEY}: free")
    steps = {}
    try:
        cfgs = _settings(hosts)
        now = time.time()
        for host in hosts:
            backup = cfgs[host]["backup"]
            if backup is None:
                verdict = {"fresh": False, "reason": "no hx:maintenance:backup configured"}
            else:
                ok, ret, _ = _call([host], "file.find", arg=[backup["path"]],
                                   kwarg={"type": "f", "name": backup["pattern"], "print": "path,mtime"})[host]
                verdict = hx_maintrun.newest_backup(ret if ok and isinstance(ret, list) else [], now,
                                                    backup["max_age_hours"])
            (lines if verdict["fresh"] or opts["emergency"] else refusals).append(f"backup {host}: {verdict['reason']}")
        apps, facts = _plan_prechecks(hosts, cfgs, opts["services"])
        for n, batch_hosts in enumerate(hx_maintrun.batches(hosts, batch), 1):
            try:
                _drain_safety(batch_hosts, facts)
                safe = "safe"
            except Stop as exc:
                safe = str(exc)
                refusals.append(f"batch {n}: {exc}")
            too_big = hx_rotation.batch_too_big(apps, batch_hosts)
            if too_big:
                refusals.append(f"batch {n}: {too_big}")
            servers = [f"{lb}:{be}/{s}" for h in batch_hosts for _a, lb, be, s in facts[h]["servers"]]
            lines.append(f"batch {n}: {', '.join(batch_hosts)}: drain {', '.join(servers) or 'nothing (in no app)'}"
                         f" ({safe})")
        for host in hosts:
            steps[host] = _plan_host(host, cfgs[host], facts[host], opts)
            lines += [f"  {host}: {line}" for line in steps[host]["lines"]]
    except Stop as exc:
        refusals.append(str(exc))
    _say("\n".join(lines + [f"WOULD REFUSE: {r}" for r in refusals]))
    ret = {"result": not refusals, "would_run": not refusals, "refusals": refusals, "steps": lines,
           "hosts": steps, "batches": hx_maintrun.batches(hosts, batch), "emergency": opts["emergency"],
           "comment": "plan only: nothing changed" + ("" if not refusals else "; the run would be refused")}
    return hx_runner.finish(__context__, ret)


def _plan_prechecks(hosts, cfgs, services):
    class _Quiet(Run):
        def phase(self, name, host=None, result="ok", **data):  # no events/audit for a plan
            return {}

        def save(self):
            return None

    return _prechecks(_Quiet("plan", "plan", None, None, {}), hosts, cfgs, services)


def _plan_host(host, cfg, facts, opts):
    lines = [f"stop {', '.join(facts['stop']) or 'no services'}"]
    patch = cfg["patch"]
    kwarg = {"security_only": patch["security_only"] if opts["security_only"] is None else opts["security_only"],
             "refresh": patch["refresh"], "test": True}
    if patch["exclude"]:
        kwarg["exclude"] = ",".join(patch["exclude"])
    if patch["pkgs"] is not None:
        kwarg["pkgs"] = ",".join(patch["pkgs"])
    ok, ret, _ = _call([host], "hx_patch.apply", kwarg=kwarg, timeout=int(cfg["patch_timeout"]))[host]
    changes = (ret.get("changes") or {}) if ok and isinstance(ret, dict) else {}
    lines.append(f"patch: {len(changes)} package(s) " + (", ".join(f"{p} {c.get('old')}->{c.get('new')}"
                                                               for p, c in sorted(changes.items())) or "")
                 if ok else f"patch: cannot plan: {str(ret)[:200]}")
    old = _tidy(host, cfg["cleanup"], test=True)["deleted"]
    lines.append(f"cleanup: delete {len(old)} file(s) older than {cfg['cleanup']['max_age_days']} d"
                 + (f"; logrotate -f {cfg['cleanup']['logrotate']}" if cfg["cleanup"]["logrotate"] else "")
                 + ("; clean package cache" if cfg["cleanup"]["pkg_cache"] else ""))
    ok, rb, _ = _call([host], "hx_patch.maybe_reboot", kwarg={"dry_run": True})[host]
    lines.append(f"reboot: {rb.get('reason') if ok and isinstance(rb, dict) else str(rb)[:200]}"
                 + (" (reboot=False: report only)" if opts["reboot"] is False else ""))
    lines.append(f"start {', '.join(facts['stop']) or 'nothing'}; verify services "
                 f"{', '.join(facts['critical']) or 'none'}, checks {', '.join(facts['health']) or 'none'}, "
                 f"logs {', '.join(cfg['app_logs']) or 'none'} (last {cfg['log_window_minutes']:g} min)")
    return {"lines": lines, "patches": changes, "cleanup": old, "stop": facts["stop"],
            "critical": facts["critical"], "health": facts["health"]}


def status(run=None, **kwargs):  # pylint: disable=redefined-outer-name,unused-argument
    """
    The running maintenance run (lock holder and its record), or the last run
    (or the run named by ``run``).

    CLI Example:

    .. code-block:: bash

        salt-run hx_maint.status
        salt-run hx_maint.status run=maint-20240601T020000-ab12cd
    """
    if run is not None:
        try:
            run = hx_typed.maint_run_id("run", run)
        except ValueError as exc:
            return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    store = hx_store.Store(__opts__)
    holder = store.get(LOCKS, LOCK_KEY)
    out = {"result": True, "running": False, "lock": None}
    if holder:
        out["running"] = True
        out["lock"] = {k: v for k, v in holder.items() if k != "token"}
    name = run or (holder or {}).get("run")
    if name:
        record = store.get(RUNS, name)
    else:
        records = [store.get(RUNS, key) or {} for key in store.keys(RUNS)]
        record = max(records, key=lambda r: r.get("started") or 0) if records else None
    if run and not record:
        return hx_runner.finish(__context__, {"result": False, "comment": f"no maintenance run {run}"})
    out["run"] = record
    if record:
        hosts = record.get("hosts") or {}
        out["summary"] = {
            "id": record.get("id"), "outcome": record.get("outcome"), "phase": record.get("phase"),
            "reason": record.get("reason"), "emergency": record.get("emergency"),
            "compliance": record.get("compliance"),
            "hosts": {h: r.get("outcome") for h, r in sorted(hosts.items())},
            "out_of_rotation": record.get("out_of_rotation"),
        }
        _say(f"{'running' if out['running'] else 'last'}: {record.get('id')} {record.get('outcome')} "
             f"(phase {record.get('phase')}); hosts: "
             + ", ".join(f"{h}={r.get('outcome')}" for h, r in sorted(hosts.items())))
    else:
        _say("no maintenance run recorded")
    return out
