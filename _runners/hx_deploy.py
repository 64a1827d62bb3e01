"""Zero-downtime deployments sequenced from the master.

Blue-green: the new version goes to the idle color on every app host, is
proven healthy on its own port, then every load balancer raises the new color
to full weight before draining the old one (the other order drops requests),
the new color is watched during ``bake``, and any failure after traffic moved
puts it back. The old color stays warm at weight 0 for ``keep_warm`` seconds
so ``rollback`` is a verified weight flip.

App definitions come from pillar ``hx:apps:<app>`` as compiled for the
master's own id (see docs/reference/hx_deploy.md).

CLI Example:

.. code-block:: bash

    salt-run hx_deploy.plan app=demo version=1.1.0
    salt-run hx_deploy.blue_green app=demo version=1.1.0
    salt-run hx_deploy.status app=demo
"""
import logging
import os
import time
import uuid

import salt.pillar

import hx_analysis
import hx_apps
import hx_audit
import hx_canary
import hx_events
import hx_fleet
import hx_incidents
import hx_lease
import hx_numbers
import hx_releases
import hx_rollout
import hx_rotation
import hx_runner
import hx_store

log = logging.getLogger(__name__)

__virtualname__ = "hx_deploy"


def __virtual__():
    return __virtualname__


# -- helpers --------------------------------------------------------------------


def _say(message):
    hx_runner.progress(globals(), message, log)


def _refuse(reason, **extra):
    ret = {"result": False, "outcome": "refused", "comment": reason}
    ret.update(extra)
    hx_events.audit(__opts__, "deploy.refused", extra.get("app"), "refused", reason=reason)
    return hx_runner.finish(__context__, ret)


def _apps():
    pillar = salt.pillar.get_pillar(__opts__, {}, __opts__["id"], saltenv="base").compile_pillar()
    return ((pillar or {}).get("hx") or {}).get("apps") or {}


def _cfg(app):
    return hx_apps.lookup(_apps(), app)


def _caller(kwargs):
    return kwargs.get("__pub_user") or os.environ.get("SUDO_USER") or os.environ.get("USER") or "salt"


def _duration(value, key, cfg):
    """The ``key`` argument as typed (checked against ``hx_numbers.DEPLOY``), else the app's pillar value."""
    if value is None:
        return cfg["deploy"][key]
    return hx_numbers.check(key, value, hx_numbers.DEPLOY[key], text=True)


def _runner_number(key, value):
    """A plain argument of a public function (``timeout``, ``limit``), checked against ``hx_numbers.DEPLOY_RUNNER``."""
    return hx_numbers.check(key, value, hx_numbers.DEPLOY_RUNNER[key], text=True)


def _abandon(store, holder):
    """Mark the record of a deployment whose stale lease was taken over as abandoned."""
    record = store.get(hx_rollout.RUNS, holder.get("deployment"))
    why = (f"abandoned by {holder.get('master')} (pid {holder.get('pid')}): "
           f"{holder.get('stale_reason') or 'its lease went stale'}")
    if record and record.get("outcome") in ("running", None):
        record.update(outcome="abandoned", reason=why, ended=time.time())
        store.put(hx_rollout.RUNS, record["id"], record)
    hx_events.audit(__opts__, "deploy.abandoned", holder.get("app") or holder.get("scope"), "ok",
                    deployment=holder.get("deployment"), reason=why)
    hx_events.fire(__opts__, f"hx/deploy/{(holder.get('scope') or 'app:?').split(':', 1)[-1]}/abandoned",
                   {"deployment": holder.get("deployment"), "reason": why})
    _say(f"took over the stale lease of {holder.get('deployment')}: {why}")


def _lock(store, cfg, ro, break_lock):
    """Take the app's lease: ``(token, None)``, or ``(None, holder)`` / ``(None, refusal text)``."""
    app = cfg["app"]
    ttl = hx_store.lease_ttl(__opts__)
    token = uuid.uuid4().hex
    holder = hx_lease.new(
        token, "deploy", f"app:{app}", ro.record["id"], ro.record["user"], __opts__.get("id"), os.getpid(),
        time.time(), ttl,
        what=f"deployment {ro.record['id']} ({ro.record['strategy']} of {ro.record['version']})",
        deployment=ro.record["id"], jid=ro.record["jid"], version=ro.record["version"],
        strategy=ro.record["strategy"], app=app, services=[],
    )
    taken, current, replaced = store.claim(hx_rollout.LOCKS, app, holder, break_lock, alive=_alive)
    for old in replaced:
        if old.get("forced"):
            hx_events.audit(__opts__, "deploy.lock_broken", app, "ok", who=ro.record["user"],
                            holder={k: v for k, v in old.items() if k != "token"})
        _abandon(store, old)
    return (token, None) if taken else (None, current)


def _heartbeat(store, app, token):
    """Renew ``app``'s lease from a thread while this run works on it."""
    held = store.get(hx_rollout.LOCKS, app) or {}
    return hx_store.Heartbeat(store, hx_rollout.LOCKS, app, token,
                              hx_lease.heartbeat_every(float(held.get("ttl") or hx_lease.DEFAULT_TTL)))


def _holder_text(holder):
    if isinstance(holder, str):
        return holder
    if holder.get("state") == "paused":
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(holder.get("since", 0)))
        return (
            f"canary {holder.get('deployment')} of {holder.get('version')} by {holder.get('user')} since {since} UTC "
            "is paused; go on with hx_deploy.resume, or end it with hx_deploy.promote or hx_deploy.abort"
        )
    return (f"{hx_lease.describe(holder)}; if that run is dead its lease expires by itself "
            f"(or pass break_lock=True once it is stale)")


def _begin(cfg, version, strategy, break_lock, kwargs, guard=None):
    """A recorded rollout holding the app's lock, or the refusal to return."""
    ro = hx_rollout.Rollout(
        __opts__, cfg, version, strategy, progress=_say, user=_caller(kwargs), jid=kwargs.get("__pub_jid"),
        guard=guard,
    )
    store = hx_store.Store(__opts__)
    token, holder = _lock(store, cfg, ro, break_lock)
    if token:
        maint = _maintenance_over(store, cfg)
        if maint:
            store.release(hx_rollout.LOCKS, cfg["app"], token)
            return ro, store, None, _refuse(maint, app=cfg["app"])
    if not token:
        if isinstance(holder, str):
            return ro, store, None, _refuse(holder, app=cfg["app"])
        refused = _refuse(f"another deployment of {cfg['app']} is running: {_holder_text(holder)}",
                          app=cfg["app"], holder=holder)
        return ro, store, None, refused
    return ro, store, token, None


MAINT_LOCKS, MAINT_KEY = "hx/maint/locks", "fleet"


def _maintenance_over(store, cfg):
    """Refusal text when a live maintenance lease covers one of the app's hosts, else None."""
    held = store.get(MAINT_LOCKS, MAINT_KEY)
    if not held or hx_lease.stale(held, time.time(), _alive(held))[0]:
        return None
    hosts = sorted(set(held.get("hosts") or []) & set(cfg["hosts"]))
    if not hosts:
        return None
    return (f"a maintenance run covers {', '.join(hosts)}: {hx_lease.describe(held)}; "
            "deploy when it is done (salt-run hx_maint.status)")


def _install_and_verify(store, ro, token, chosen):
    """Preflight, then the release on the idle color, healthy on every host and UP on every LB.

    ``chosen(live, idle)`` records what the strategy makes of the colors and
    says what it will do. Returns ``(live, idle, running versions)``;
    nothing of the traffic has moved.
    """
    app, cfg, version = ro.app, ro.cfg, ro.record["version"]
    ro.phase("preflight")
    live, running = _preflight(ro)
    idle = hx_apps.other(live)
    ro.record.update(from_color=live, to_color=idle, previous_versions=running)
    _under_work(store, ro, token, idle)
    plan = chosen(live, idle)
    _say(f"{app}: live color {live} ({', '.join(f'{h}={v}' for h, v in sorted(running.items()))}); {plan}")
    ro.phase("deploy", color=idle)
    ro.hosts(
        "hx_release.install",
        f"install {version} into {idle}",
        kwarg={"app": app, "version": version, "slot": idle},
        timeout=int(cfg["deploy"]["verify_timeout"]) + 120,
    )
    ro.phase("verify", color=idle)
    ro.wait_color_healthy(idle, version, cfg["deploy"]["verify_timeout"])
    ro.wait_lb_up(idle, cfg["deploy"]["verify_timeout"])
    return live, idle, running


def _under_work(store, ro, token, color):
    """Put ``color``'s slot service under this deployment's lease: remediation leaves it to the deployment."""
    store.update(hx_rollout.LOCKS, ro.app, token, services=[ro.cfg["slots"][color]["service"]], color=color)


# An idle minion answers a ping in well under a second: one that is silent this
# long is down, and the operator should hear so now, not after a minute.
PING_TIMEOUT = 10


def _preflight(ro):
    ro.hosts("test.ping", "app hosts answer", timeout=PING_TIMEOUT)
    ro.lbs("test.ping", "load balancers answer", timeout=PING_TIMEOUT)
    live = ro.live_color()
    versions = ro.slot_versions()
    sick = [h for h, slots in versions.items() if not hx_rollout.slot_ok(slots.get(live))]
    if sick:
        raise hx_rollout.StepError(f"live color {live} is not healthy on {', '.join(sorted(sick))}")
    running = {h: (slots.get(live) or {}).get("running") for h, slots in versions.items()}
    return live, running


def _bake(ro, color, seconds, before):
    """Watch the new color's counters and health; raise StepError on a fail verdict."""
    cfg = ro.cfg
    servers = hx_apps.servers_by_color(cfg)[color]
    limits = {
        "error_rate": cfg["deploy"]["error_rate"],
        "response_time": cfg["deploy"]["response_time"],
        "min_requests": cfg["deploy"]["min_requests"],
    }
    interval = max(0.5, float(cfg["deploy"]["bake_interval"]))
    deadline = time.monotonic() + seconds
    verdict = {"verdict": "pass", "reasons": ["no bake configured"], "figures": None}
    while True:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(min(interval, remaining))
        figures = hx_analysis.window(before, ro.lb_stats(), servers)
        verdict = hx_analysis.judge(figures, limits)
        sick = [
            h
            for h, slots in ro.slot_versions().items()
            if not hx_rollout.slot_ok(slots.get(color), ro.record["version"])
        ]
        if sick:
            verdict = dict(verdict, verdict="fail", reasons=[f"{color} unhealthy on {', '.join(sorted(sick))}"])
        left = max(0, int(deadline - time.monotonic()))
        _say(
            f"bake: {figures['requests']} requests, {figures['errors']} errors, "
            f"avg {figures['response_time']} ms -> {verdict['verdict']} ({left}s left)"
        )
        if verdict["verdict"] == "fail":
            raise hx_rollout.StepError("bake failed: " + "; ".join(verdict["reasons"]))
        if time.monotonic() >= deadline:
            return verdict


def _failure_text(exc, guard=None):
    """What a failed step says; an error no step expected also says where it came from (logged in full).

    A signal raised inside a Salt client call stops the client's event loop, and the call fails with
    SaltClientError instead of the Interrupted the guard raised: the guard's record says why.
    """
    if guard is not None and guard.raised and not isinstance(exc, hx_rollout.Interrupted):
        log.warning("hx_deploy: %s surfaced as %s: %s", hx_rollout.Interrupted(guard.raised).signame, type(exc).__name__, exc)
        exc = hx_rollout.Interrupted(guard.raised)
    if isinstance(exc, hx_rollout.StepError):
        return str(exc)
    if isinstance(exc, hx_rollout.Interrupted):
        log.warning("hx_deploy: %s", exc)
        why = "an operator's Ctrl-C" if exc.signame == "SIGINT" else "the process was told to stop"
        return f"{exc} ({why})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    if isinstance(exc, SystemExit):
        return f"the process was told to exit (SystemExit {exc.code!r})"[:500]
    log.error("hx_deploy: unexpected error", exc_info=exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"[:500]


def _park(ro, color):
    """Stop the idle color after a release failed before any traffic moved.

    It never served; left running unhealthy it would keep the health beacon
    and remediation busy. The release stays installed for inspection.
    """
    service = ro.cfg["slots"][color]["service"]
    owner = f"deployment {ro.record['id']}"
    try:
        ro.hosts("hx_service.stop", f"stop {service}", arg=[service], timeout=120,
                 kwarg={"owner": owner, "reason": f"parked: {ro.record['version']} failed before traffic"})
        ro.phase("parked", color=color, service=service)
    except Exception as exc:  # pylint: disable=broad-except
        ro.phase("parked", color=color, service=service, result="failed", error=_failure_text(exc, ro.guard))
        return
    # What the failing release raised on its way (endpoint checks of the
    # slot) is explained now: the slot is stopped on purpose.
    try:
        ids = hx_incidents.make_desk(__opts__).resolve_planned(
            sorted(ro.cfg["hosts"]), service, owner, f"{service} parked by {owner}: stopped on purpose")
        if ids:
            ro.phase("incidents_resolved", service=service, incidents=ids)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("hx_deploy: could not resolve the incidents of parked %s: %s", service, exc)


def _restore(ro, live, reason):
    """Put traffic back on ``live`` (raise it first, then drain the other) and verify."""
    ro.phase("rollback", color=live, reason=reason, result="started")
    _say(f"rolling back: traffic back to {live} ({reason})")
    ro.set_weights(hx_apps.target_weights(ro.cfg, live), f"restore traffic to {live}")
    ro.phase("rolled_back", color=live)


def _remember(cfg, live, warm_color, warm_version, keep_warm, record):
    store = hx_store.Store(__opts__)
    state = store.get(hx_rollout.APPS, cfg["app"], {}) or {}
    state.update(
        live=live,
        last=record["id"],
        warm={"color": warm_color, "version": warm_version, "until": time.time() + keep_warm},
        updated=time.time(),
    )
    store.put(hx_rollout.APPS, cfg["app"], state)


def _blue_green(store, ro, token, bake, keep_warm, moved):
    """Install, verify, switch, bake; ``moved`` says how far traffic went (for ``_unwind``)."""
    cfg, version = ro.cfg, ro.record["version"]
    live, idle, running = _install_and_verify(store, ro, token, lambda live, idle: f"deploying {version} to {idle}")
    moved["live"] = live
    before = ro.lb_stats()
    target = hx_apps.target_weights(cfg, idle)
    ro.phase("switch", color=idle, weights=target)
    moved["switched"] = True
    ro.set_weights(target, f"switch traffic to {idle}")
    _say(f"switched: all traffic on {idle}; baking {bake}s")
    ro.phase("bake", seconds=bake)
    verdict = _bake(ro, idle, bake, before)
    # The bake passed: the rest records it; a signal now ends the process
    # once that is done, it does not undo a good deployment.
    with ro.guard.settling():
        ro.record["bake"] = verdict
        _remember(cfg, idle, live, running, keep_warm, ro.record)
        ro.phase("warm", color=live, seconds=keep_warm)
        return ro.finish("succeeded")


def _unwind(ro, exc, moved, keep_warm):
    """After any failure of a blue-green run: traffic back and verified if it moved, else park; the record ended."""
    reason = _failure_text(exc, ro.guard)
    if moved["switched"]:
        live = moved["live"]
        try:
            _restore(ro, live, reason)
        except Exception as again:  # pylint: disable=broad-except
            return ro.finish("rollback_failed", f"{reason}; rollback: {_failure_text(again, ro.guard)}")
        _rejected_warm(ro, live, hx_apps.other(live), keep_warm)
        return ro.finish("rolled_back", reason)
    if ro.record.get("to_color"):
        _park(ro, ro.record["to_color"])
    return ro.finish("failed", reason)


def _rejected_warm(ro, live, rejected, keep_warm):
    """After a rollback: ``live`` carries the traffic; the rejected color is stopped by cleanup after keep_warm.

    A later ``hx_deploy.rollback`` goes back to what that color held before
    the rejected release, when that is known.
    """
    store = hx_store.Store(__opts__)
    state = store.get(hx_rollout.APPS, ro.app, {}) or {}
    prev = state.get("warm") or {}
    state.update(
        live=live,
        warm={"color": rejected, "version": prev.get("version") if prev.get("color") == rejected else None,
              "until": time.time() + keep_warm},
        updated=time.time(),
    )
    store.put(hx_rollout.APPS, ro.app, state)


# -- public functions -----------------------------------------------------------


def blue_green(app, version, bake=None, keep_warm=None, break_lock=False, **kwargs):
    """
    Deploy ``version`` of ``app`` to the idle color, prove it, switch every
    load balancer to it, bake, and roll back automatically if anything fails
    after traffic moved. A failure before the switch leaves traffic untouched.

    app
        An app defined in pillar ``hx:apps``.
    version
        The release to deploy (``1.2.3`` or ``1.2.3-rc.1``).
    bake
        Seconds to watch the new color after the switch (default
        ``hx:apps:<app>:deploy:bake``, 60).
    keep_warm
        Seconds the old color stays running at weight 0 (default 600).
    break_lock
        Take over the app's deployment lock left by a dead run.

    Numbers must be finite and within bounds (bake 0..86400 s, keep_warm
    0..604800 s; docs/reference/bad-input.md): checked before the lease is
    taken. Ctrl-C (SIGINT) or SIGTERM after the switch puts traffic back,
    reads it back and records ``rolled_back`` before the process ends.

    Fires ``hx/deploy/<app>/<phase>`` for preflight, deploy, verify, switch,
    bake, rollback, rolled_back, warm and done.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.blue_green app=demo version=1.1.0
        salt-run hx_deploy.blue_green app=demo version=1.1.0 bake=120
    """
    try:
        cfg = _cfg(app)
        hx_releases.validate_version(version)
        bake = _duration(bake, "bake", cfg)
        keep_warm = _duration(keep_warm, "keep_warm", cfg)
    except ValueError as exc:
        return _refuse(str(exc), app=app, version=version)
    guard = hx_rollout.Guard()
    with guard:
        guard.hold()
        ro, store, token, refused = _begin(cfg, version, "blue_green", break_lock, kwargs, guard)
        if refused:
            guard.let_go()
            return refused
        moved = {"live": None, "switched": False}
        try:
            with _heartbeat(store, app, token):
                try:
                    guard.let_go()  # a signal that came while the lease was taken is handled from here on
                    record = _blue_green(store, ro, token, bake, keep_warm, moved)
                except BaseException as exc:
                    # Whatever went wrong, traffic goes back to where it was
                    # and the record says why: it never stays "running" after
                    # this process. Ctrl-C and SIGTERM included, re-raised once
                    # traffic is back.
                    with guard.settling():
                        record = _unwind(ro, exc, moved, keep_warm)
                    if not isinstance(exc, Exception):
                        raise
        finally:
            with guard.settling():
                store.release(hx_rollout.LOCKS, app, token)
    ret = {
        "result": record["outcome"] == "succeeded",
        "outcome": record["outcome"],
        "deployment": record["id"],
        "app": app,
        "version": version,
        "from_color": record.get("from_color"),
        "to_color": record.get("to_color"),
        "duration": record["duration"],
        "reason": record.get("reason"),
        "comment": (
            f"{app} {version} live on {record.get('to_color')}"
            if record["outcome"] == "succeeded"
            else f"{app} {version} {record['outcome']}: {record.get('reason')}"
        ),
    }
    return hx_runner.finish(__context__, ret)


def plan(app, version, strategy="blue_green", steps=None, step_interval=None, **kwargs):
    """
    Show every step a blue-green deployment (or, with ``strategy=canary``, a
    canary with the same arguments as ``hx_deploy.canary``) would take, with
    the hosts and the exact load-balancer changes, without changing anything.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.plan app=demo version=1.1.0
        salt-run hx_deploy.plan app=demo version=1.1.0 strategy=canary steps='[10, 50, 100]'
    """
    if strategy not in ("blue_green", "canary"):
        return _refuse(f"strategy: must be blue_green or canary, got {strategy!r}", app=app, version=version)
    try:
        cfg = _cfg(app)
        hx_releases.validate_version(version)
        if strategy == "canary":
            conf = _canary_conf(cfg, steps, step_interval, kwargs)
            keep_warm = _duration(kwargs.get("keep_warm"), "keep_warm", cfg)
        else:
            bake = _duration(kwargs.get("bake"), "bake", cfg)
            keep_warm = _duration(kwargs.get("keep_warm"), "keep_warm", cfg)
    except ValueError as exc:
        return _refuse(str(exc), app=app, version=version)
    if strategy == "canary":
        return _plan_canary(cfg, version, conf, keep_warm, kwargs)
    ro = hx_rollout.Rollout(__opts__, cfg, version, "plan", user=_caller(kwargs))
    try:
        live, running = _preflight(ro)
        idle = hx_apps.other(live)
        switch = ro.plan_weights(hx_apps.target_weights(cfg, idle))
        back = hx_apps.target_weights(cfg, live)
    except hx_rollout.StepError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": f"preflight would fail: {exc}"})
    hosts = ", ".join(sorted(cfg["hosts"]))
    steps = [
        f"preflight: {hosts} and {', '.join(cfg['lbs'])} answer; live color {live} healthy; lock {app}",
        f"deploy: hx_release.install app={app} version={version} slot={idle} on {hosts}",
        f"verify: {idle} answers healthy with {version} on every host (<= {cfg['deploy']['verify_timeout']}s)",
        f"switch on {', '.join(cfg['lbs'])}: raise {idle} to {cfg['deploy']['weight']}, then drain {live} to 0",
        f"bake {bake}s: error rate < {cfg['deploy']['error_rate']}%, "
        f"response time < {cfg['deploy']['response_time']} ms, {idle} healthy",
        f"on failure after the switch: weights back to {back}",
        f"keep {live} warm at weight 0 for {keep_warm}s, then stop it",
    ]
    _say("\n".join(f"{n}. {s}" for n, s in enumerate(steps, 1)))
    return {
        "result": True,
        "app": app,
        "version": version,
        "live": live,
        "idle": idle,
        "running": running,
        "steps": steps,
        "lb_changes": switch,
        "comment": "plan only: nothing changed",
    }


def _plan_canary(cfg, version, conf, keep_warm, kwargs):
    app = cfg["app"]
    ro = hx_rollout.Rollout(__opts__, cfg, version, "plan", user=_caller(kwargs))
    try:
        live, running = _preflight(ro)
        idle = hx_apps.other(live)
        by = hx_apps.servers_by_color(cfg)
        weight = int(cfg["deploy"]["weight"])
        first = next((s for s in conf["steps"] if not s.get("pause")), None)
        first_changes = ro.plan_weights(hx_canary.server_weights(by[idle], by[live], first["percent"], weight))
    except hx_rollout.StepError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": f"preflight would fail: {exc}"})
    hosts = ", ".join(sorted(cfg["hosts"]))
    lbs = ", ".join(cfg["lbs"])
    lines = [
        f"preflight: {hosts} and {lbs} answer; live color {live} healthy; lock {app}",
        f"deploy: hx_release.install app={app} version={version} slot={idle} on {hosts}",
        f"verify: {idle} answers healthy with {version} on every host and is UP on {lbs}",
    ]
    weights = []
    for n, step in enumerate(conf["steps"], 1):
        if step.get("pause"):
            lines.append(f"step {n}: pause: the run ends paused until hx_deploy.resume (or promote/abort)")
            continue
        wc, ws = hx_canary.step_weights(step["percent"], weight)
        interval = step.get("interval") or conf["step_interval"]
        change = {s: wc for s in by[idle]} | {s: ws for s in by[live]}
        weights.append({"step": n, "percent": step["percent"], "weights": change,
                        "share": hx_canary.share(wc, ws), "interval": interval})
        lines.append(
            f"step {n}: {step['percent']}% on {lbs}: {', '.join(by[idle])} -> {wc}, {', '.join(by[live])} -> {ws} "
            f"(share {hx_canary.share(wc, ws)}%; raised first, then lowered); watch {interval}s, "
            f"samples every {conf['sample_interval']}s"
        )
    lines += [
        f"judge every step: canary 5xx < {conf['error_rate']}% and < stable + {conf['error_margin']} points, "
        f"response time < {conf['response_time']} ms and < {conf['latency_ratio']} x stable "
        f"(unless within {conf['latency_floor']} ms), health polls >= {conf['success_threshold']}%, "
        f"at least {conf['min_requests']} canary requests (else inconclusive: {conf['inconclusive']})",
        f"on a failing step: weights back to {hx_apps.target_weights(cfg, live)} (stable raised first)",
        f"promote: {idle} to {weight}, {live} to 0; keep {live} warm for {keep_warm}s",
    ]
    _say("\n".join(f"{n}. {s}" for n, s in enumerate(lines, 1)))
    return {
        "result": True,
        "app": app,
        "version": version,
        "strategy": "canary",
        "live": live,
        "idle": idle,
        "running": running,
        "steps": lines,
        "weights": weights,
        "lb_changes": first_changes,
        "comment": "plan only: nothing changed",
    }


def status(app, **kwargs):  # pylint: disable=unused-argument
    """
    Live color, versions per color and host, weights per load balancer, the
    running deployment (if any) and the warm color.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.status app=demo
    """
    try:
        cfg = _cfg(app)
    except ValueError as exc:
        return _refuse(str(exc), app=app)
    ro = hx_rollout.Rollout(__opts__, cfg, None, "status")
    store = hx_store.Store(__opts__)
    out = {"result": True, "app": app}
    try:
        out["weights"] = ro.lb_weights()
        out["live"], problems = hx_apps.live_color(cfg, out["weights"])
        if problems:
            out["problems"] = problems
    except hx_rollout.StepError as exc:
        out.update(result=False, weights=None, live=None, problems=[str(exc)])
    try:
        out["versions"] = ro.slot_versions()
    except hx_rollout.StepError as exc:
        out["versions"] = None
        out.setdefault("problems", []).append(str(exc))
        out["result"] = False
    lock = store.get(hx_rollout.LOCKS, app)
    out["running"] = None
    if lock:
        run = store.get(hx_rollout.RUNS, lock.get("deployment")) or {}
        gone, why = hx_lease.stale(lock, time.time(), _alive(lock))
        out["running"] = {"lock": {k: v for k, v in lock.items() if k != "token"}, "phase": run.get("phase"),
                          "outcome": run.get("outcome"), "lease": hx_lease.describe(lock),
                          "stale": why if gone else None}
        if run.get("strategy") == "canary":
            out["canary"] = _canary_view(run)
    out["state"] = store.get(hx_rollout.APPS, app)
    out["rotation"] = {"max_out": cfg["max_out"],
                       "held": hx_rotation.held(store.all(f"{hx_store.ROTATION}/{app}"), time.time(), _alive)}
    lines = [f"{app}: live color {out['live']}"]
    for lb, weights in sorted((out.get("weights") or {}).items()):
        lines.append(f"  {lb}: " + ", ".join(f"{s}={w}" for s, w in sorted(weights.items())))
    for host, slots in sorted((out.get("versions") or {}).items()):
        shown = ", ".join(f"{c}={(slots.get(c) or {}).get('running') or '-'}" for c in hx_apps.COLORS)
        lines.append(f"  {host}: {shown}")
    for host, slots in sorted((out.get("versions") or {}).items()):
        for color in hx_apps.COLORS:
            intent = (slots.get(color) or {}).get("intent") or {}
            if intent.get("want") == "down":
                lines.append(f"  {host}: {color} intended down by {intent.get('owner')} ({intent.get('reason')})")
    if out["running"]:
        lines.append(f"  running: {out['running']['lock'].get('deployment')} phase {out['running']['phase']}; "
                     f"lease {out['running']['lease']}"
                     + (f"; STALE: {out['running']['stale']}" if out["running"]["stale"] else ""))
    for slot in out["rotation"]["held"]:
        lines.append(f"  out of rotation (max_out {cfg['max_out']}): {slot['host']}: {slot['lease']}"
                     + (f"; STALE: {slot['stale']}" if slot["stale"] else ""))
    if out.get("canary"):
        lines.extend("  " + line for line in _canary_lines(out["canary"]))
    warm = (out["state"] or {}).get("warm")
    if warm:
        lines.append(f"  warm: {warm['color']} until {time.strftime('%H:%M:%S', time.gmtime(warm['until']))} UTC")
    _say("\n".join(lines))
    return hx_runner.finish(__context__, out)


def _canary_view(record):
    """Where a canary stands: step, weights, the last verdict with its figures."""
    c = record.get("canary") or {}
    last = c.get("last") or {}
    return {
        "deployment": record.get("id"),
        "version": record.get("version"),
        "outcome": record.get("outcome"),
        "state": c.get("state"),
        "canary_color": c.get("canary"),
        "stable_color": c.get("stable"),
        "step": c.get("current"),
        "steps": [s.get("percent", "pause") for s in c.get("steps") or []],
        "percent": c.get("percent"),
        "weights": c.get("weights"),
        "paused_reason": c.get("paused_reason") if c.get("state") == "paused" else None,
        "last_verdict": {k: last.get(k) for k in ("step", "percent", "verdict", "reasons", "share", "canary", "stable",
                                                  "health")} if last else None,
    }


def _canary_lines(view):
    w = view.get("weights") or {}
    lines = [
        f"canary {view['version']} ({view['deployment']}): {view['state']} at step {view['step']} of "
        f"{len(view['steps'])} {view['steps']}, {view['percent']}% "
        f"(weights {view['canary_color']}={w.get('canary')}, {view['stable_color']}={w.get('stable')})"
    ]
    if view.get("paused_reason"):
        lines.append(f"  paused: {view['paused_reason']}")
    last = view.get("last_verdict")
    if last:
        cf, sf = last.get("canary") or {}, last.get("stable") or {}
        lines.append(
            f"  last verdict (step {last['step']}, {last['percent']}%): {last['verdict']}: {'; '.join(last['reasons'])}"
        )
        lines.append(
            f"    canary {cf.get('requests')} requests, {cf.get('errors')} errors ({cf.get('error_rate')}%), "
            f"avg {cf.get('response_time')} ms; stable {sf.get('requests')} requests ({sf.get('error_rate')}%), "
            f"avg {sf.get('response_time')} ms; served {last.get('share')}%; "
            f"health {(last.get('health') or {}).get('success_rate')}%"
        )
    return lines


def _step_rows(record):
    return [
        {
            "step": r.get("step"),
            "percent": r.get("percent"),
            "weights": r.get("weights"),
            "share": r.get("share"),
            "verdict": r.get("verdict"),
            "reasons": r.get("reasons"),
            "canary": r.get("canary"),
            "stable": r.get("stable"),
            "health": r.get("health"),
        }
        for r in ((record.get("canary") or {}).get("results") or [])
    ]


def history(app=None, limit=20, **kwargs):  # pylint: disable=unused-argument
    """
    Past deployments, newest first, with outcome, duration and reason.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.history app=demo limit=5
    """
    try:
        limit = _runner_number("limit", limit)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "outcome": "refused", "comment": str(exc)})
    store = hx_store.Store(__opts__)
    runs = [r for r in store.all(hx_rollout.RUNS).values() if r and (app is None or r.get("app") == app)]
    runs.sort(key=lambda r: r.get("started", 0), reverse=True)
    rows = [
        {
            "id": r["id"],
            "app": r["app"],
            "strategy": r.get("strategy"),
            "version": r.get("version"),
            "from": r.get("from_color"),
            "to": r.get("to_color"),
            "outcome": r.get("outcome"),
            "phase": r.get("phase"),
            "duration": r.get("duration"),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.get("started", 0))),
            "reason": r.get("reason"),
            "steps": _step_rows(r) if r.get("strategy") == "canary" else None,
        }
        for r in runs[:limit]
    ]
    shown = [dict(r, reason=(r["reason"] or "")[:90]) for r in rows]
    for row in shown:
        if row["steps"]:
            row["strategy"] = "canary " + ",".join(
                f"{s['percent']}%:{s['verdict']}" for s in row["steps"]
            )
    _say(hx_fleet.render_table(("started", "app", "strategy", "version", "from", "to", "outcome", "duration", "reason"), shown))
    return {"result": True, "deployments": rows, "records": {r["id"]: r for r in runs[:limit]}}


def _rollback(store, ro):
    """The steps of ``hx_deploy.rollback``: the previous color back, proven, then switched to."""
    app, cfg = ro.app, ro.cfg
    ro.phase("preflight")
    live = ro.live_color()
    back = hx_apps.other(live)
    versions = ro.slot_versions()
    good = ((store.get(hx_rollout.APPS, app) or {}).get("warm") or {}).get("version") or {}
    # The idle color may hold a release that failed since (a rolled-back
    # deployment leaves it there): go back to the last good version.
    targets = {h: good.get(h) or (slots.get(back) or {}).get("link") for h, slots in versions.items()}
    if not all(targets.values()):
        raise hx_rollout.StepError(
            f"no previous version known for {', '.join(h for h, v in targets.items() if not v)}"
        )
    ro.record.update(from_color=live, to_color=back, version=",".join(sorted(set(targets.values()))))
    for host, version in sorted(targets.items()):
        slot = versions[host].get(back) or {}
        if slot.get("link") != version:
            ro.phase("activate", color=back, host=host, version=version)
            ro.call([host], "hx_release.activate", f"activate {version} in {back}",
                    kwarg={"app": app, "version": version, "slot": back}, timeout=180)
        elif slot.get("state") != "running":
            ro.phase("start", color=back, host=host)
            ro.call([host], "hx_service.start", f"start {back}", arg=[cfg["slots"][back]["service"]], timeout=120,
                    kwarg={"owner": f"rollback {ro.record['id']}", "reason": "rollback to the warm color"})
    ro.phase("verify", color=back)
    ro.wait_color_healthy(back, None, cfg["deploy"]["verify_timeout"])
    wrong = {h: (sl.get(back) or {}).get("running") for h, sl in ro.slot_versions().items()
             if (sl.get(back) or {}).get("running") != targets[h]}
    if wrong:
        raise hx_rollout.StepError(f"{back} runs {wrong}, expected {targets}")
    ro.wait_lb_up(back, cfg["deploy"]["verify_timeout"])
    ro.phase("switch", color=back)
    # From the switch on, a signal waits for the outcome to be recorded.
    with ro.guard.settling():
        ro.set_weights(hx_apps.target_weights(cfg, back), f"switch traffic back to {back}")
        running = {h: (slots.get(live) or {}).get("running") for h, slots in versions.items()}
        _remember(cfg, back, live, running, cfg["deploy"]["keep_warm"], ro.record)
        ro.phase("warm", color=live, seconds=cfg["deploy"]["keep_warm"])
        return ro.finish("succeeded")


def rollback(app, break_lock=False, **kwargs):
    """
    Put traffic back on the previous color: start it again if keep-warm has
    already stopped it, prove it healthy, then raise it to full weight and
    drain the current color, reading the weights back on every load balancer.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.rollback app=demo
    """
    try:
        cfg = _cfg(app)
    except ValueError as exc:
        return _refuse(str(exc), app=app)
    guard = hx_rollout.Guard()
    with guard:
        guard.hold()
        ro, store, token, refused = _begin(cfg, None, "rollback", break_lock, kwargs, guard)
        if refused:
            guard.let_go()
            return refused
        try:
            with _heartbeat(store, app, token):
                try:
                    guard.let_go()
                    record = _rollback(store, ro)
                except BaseException as exc:
                    # Traffic moves only in the switch, which is never cut
                    # short: whatever stops the run before it left traffic
                    # where it was.
                    with guard.settling():
                        record = ro.finish("failed", _failure_text(exc, ro.guard))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            with guard.settling():
                store.release(hx_rollout.LOCKS, app, token)
    ret = {
        "result": record["outcome"] == "succeeded",
        "outcome": record["outcome"],
        "deployment": record["id"],
        "app": app,
        "from_color": record.get("from_color"),
        "to_color": record.get("to_color"),
        "duration": record["duration"],
        "reason": record.get("reason"),
        "comment": f"{app} back on {record.get('to_color')}" if record["outcome"] == "succeeded" else record.get("reason"),
    }
    return hx_runner.finish(__context__, ret)


def cleanup(**kwargs):  # pylint: disable=unused-argument
    """
    Stop the warm color of every app whose ``keep_warm`` has run out. The
    master runs this every minute (``schedule`` in conf/master.d/hx.conf).

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.cleanup
    """
    store = hx_store.Store(__opts__)
    done = {}
    for app, state in store.all(hx_rollout.APPS).items():
        warm = (state or {}).get("warm")
        if not warm or warm.get("until", 0) > time.time() or store.get(hx_rollout.LOCKS, app):
            continue
        try:
            cfg = _cfg(app)
            ro = hx_rollout.Rollout(__opts__, cfg, None, "cleanup")
            if ro.live_color() == warm["color"]:
                raise hx_rollout.StepError(f"{warm['color']} is live again; not stopping it")
            ro.hosts("hx_service.stop", f"stop warm {warm['color']}", arg=[cfg["slots"][warm["color"]]["service"]],
                     kwarg={"owner": f"deploy cleanup of {app}", "reason": f"keep-warm of {warm['color']} over"})
            done[app] = f"stopped {warm['color']}"
            hx_events.fire(__opts__, f"hx/deploy/{app}/cooled", {"color": warm["color"]})
            hx_events.audit(__opts__, "deploy.cooled", app, "ok", color=warm["color"])
        except (ValueError, hx_rollout.StepError) as exc:
            done[app] = f"not stopped: {exc}"
            continue
        state["warm"] = None
        store.put(hx_rollout.APPS, app, state)
    return {"result": True, "apps": done}


def unlock(app, **kwargs):
    """
    Break the deployment lock of ``app`` left by a dead run (audited).

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.unlock app=demo
    """
    store = hx_store.Store(__opts__)
    held = store.get(hx_rollout.LOCKS, app)
    store.release(hx_rollout.LOCKS, app)
    hx_events.audit(__opts__, "deploy.lock_broken", app, "ok", who=_caller(kwargs), holder=held)
    return {"result": True, "app": app, "was": held, "comment": "lock released" if held else "no lock was held"}


# -- canary ---------------------------------------------------------------------

ANSIBLE_KEYS = ("canary_traffic_percentage", "canary_monitoring_time")
# What counts as success for each operator action (salt-run exits 0).
OK_OUTCOMES = {
    "pause": ("paused",),
    "resume": ("succeeded", "paused"),
    "promote": ("succeeded",),
    "abort": ("aborted",),
}


class _Control(Exception):
    """An operator's pause/promote/abort reached the running canary."""

    def __init__(self, action, by):
        super().__init__(action)
        self.action = action
        self.by = by


def _canary_conf(cfg, steps, step_interval, kwargs):
    """Pillar ``hx:apps:<app>:canary`` overridden by the call's arguments (checked, nothing changed on error)."""
    extra = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    unknown = sorted(set(extra) - set(hx_canary.DEFAULTS) - set(ANSIBLE_KEYS) - {"keep_warm"})
    if unknown:
        allowed = sorted(set(hx_canary.DEFAULTS) | set(ANSIBLE_KEYS) | {"keep_warm", "break_lock"})
        raise ValueError(f"{unknown[0]}: unknown argument (allowed: {', '.join(allowed)})")
    overrides = {k: extra.get(k) for k in hx_canary.DEFAULTS if k not in ("steps", "step_interval")}
    overrides.update(steps=steps, step_interval=step_interval)
    if extra.get("canary_traffic_percentage") is not None:
        if steps is not None:
            raise ValueError("steps: give either steps or canary_traffic_percentage, not both")
        overrides["steps"] = hx_canary.ansible_steps(
            extra["canary_traffic_percentage"], extra.get("canary_monitoring_time")
        )
    elif extra.get("canary_monitoring_time") is not None:
        raise ValueError("canary_monitoring_time: needs canary_traffic_percentage (or use steps/step_interval)")
    return hx_canary.merge(cfg["canary"], overrides, text=True)


def _take_lock(store, app, record_id, user):
    """Make this process the holder of the lock a canary record holds (resume/abort/promote)."""
    token = uuid.uuid4().hex
    with hx_audit.lock(__opts__, f"{hx_rollout.LOCKS}/{app}"):  # the lock Store.acquire/release take
        held = store.get(hx_rollout.LOCKS, app)
        if not held or held.get("deployment") != record_id:
            return None, held
        store.put(hx_rollout.LOCKS, app, hx_lease.renewed(
            dict(held, token=token, id=token, pid=os.getpid(), master=__opts__.get("id"), user=user, state="running"),
            time.time()))
    return token, held


def _mark_lock(store, app, token, **fields):
    with hx_audit.lock(__opts__, f"{hx_rollout.LOCKS}/{app}"):  # the lock Store.acquire/release take
        held = store.get(hx_rollout.LOCKS, app)
        if held and held.get("token") == token:
            store.put(hx_rollout.LOCKS, app, dict(held, **fields))


def _control(store, ro):
    """The pending operator action for this canary, consumed; None when there is none."""
    ctl = store.get(hx_rollout.CONTROL, ro.app)
    if not ctl or ctl.get("deployment") != ro.record["id"]:
        return None
    store.delete(hx_rollout.CONTROL, ro.app)
    if ctl.get("action") == "resume":
        return None
    return ctl


def _check(store, ro):
    ctl = _control(store, ro)
    if ctl:
        raise _Control(ctl["action"], ctl.get("by"))


def _wait(store, ro, seconds):
    """Sleep ``seconds`` in short slices, raising _Control as soon as an operator acts."""
    end = time.monotonic() + seconds
    while True:
        _check(store, ro)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.25, left))


def _health_polls(ro, color, version):
    """One health poll of ``color`` on every app host: [(host, ok, why)]."""
    try:
        seen = ro.slot_versions()
    except hx_rollout.StepError as exc:
        return [(h, False, str(exc)[:200]) for h in sorted(ro.cfg["hosts"])]
    out = []
    for host in sorted(ro.cfg["hosts"]):
        slot = (seen.get(host) or {}).get(color)
        out.append((host, hx_rollout.slot_ok(slot, version), None if hx_rollout.slot_ok(slot, version)
                    else hx_rollout._slot_text(slot)))  # pylint: disable=protected-access
    return out


def _one_step(store, ro, step, number):
    """Move traffic to this step's share, watch it, return the step's result entry."""
    c = ro.record["canary"]
    conf, cfg = c["conf"], ro.cfg
    by = hx_apps.servers_by_color(cfg)
    canary, stable = c["canary"], c["stable"]
    weight = int(cfg["deploy"]["weight"])
    wc, ws = hx_canary.step_weights(step["percent"], weight)
    weights = hx_canary.server_weights(by[canary], by[stable], step["percent"], weight)
    _check(store, ro)
    interval = step.get("interval") or conf["step_interval"]
    c.update(current=number, percent=step["percent"], weights={"canary": wc, "stable": ws})
    ro.phase("shift", step=number, percent=step["percent"], weights=weights, interval=interval)
    ro.set_weights(weights, f"step {number}: {step['percent']}% of traffic to {canary}")
    _say(f"step {number}: {step['percent']}% on {canary} (weights {canary} {wc}, {stable} {ws}); watching {interval}s")
    limits = hx_canary.limits(conf)
    before = ro.lb_stats()
    began = time.monotonic()
    deadline = began + interval
    polls = []
    samples = 0
    sample = max(0.5, float(conf["sample_interval"]))
    while True:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            _wait(store, ro, min(sample, remaining))
        samples += 1
        # Counters first: a breach they show is judged before the health
        # polls, so a failing canary keeps its share one Salt round less.
        after = ro.lb_stats()
        cf = hx_analysis.window(before, after, by[canary], strict=True)
        sf = hx_analysis.window(before, after, by[stable], strict=True)
        judged = hx_analysis.judge(cf, limits, baseline=sf if sf["requests"] else None)
        if judged["verdict"] == "fail":
            break
        polls.extend(_health_polls(ro, canary, ro.record["version"]))
        if time.monotonic() >= deadline:
            break
        _say(
            f"step {number}: canary {cf['requests']} requests, {cf['errors']} errors, avg {cf['response_time']} ms; "
            f"stable {sf['requests']} requests, avg {sf['response_time']} ms ({int(deadline - time.monotonic())}s left)"
        )
    ok, total, rate = hx_canary.health_rate([p[1] for p in polls])
    health = {"ok": ok, "polls": total, "success_rate": rate,
              "failures": sorted({f"{h}: {why}" for h, good, why in polls if not good})[:5]}
    verdict = hx_canary.decide(judged, health, conf["success_threshold"])
    served = cf["requests"] + sf["requests"]
    return {
        "step": number,
        "percent": step["percent"],
        "weights": {"canary": wc, "stable": ws},
        "expected_share": hx_canary.share(wc, ws),
        "share": round(100.0 * cf["requests"] / served, 2) if served else None,
        "interval": interval,
        "watched": round(time.monotonic() - began, 2),
        "samples": samples,
        "verdict": verdict["verdict"],
        "reasons": verdict["reasons"],
        "canary": cf,
        "stable": sf,
        "health": health,
        "repeat": c.get("repeats", 0),
        "at": round(time.time(), 3),
    }


def _canary_rollback(store, ro, reason, outcome="rolled_back"):
    """Stable color back to full weight first, canary to 0, verified; the canary slot stays for cleanup."""
    # Settling: a signal now waits for the stable color to be back and recorded.
    with ro.guard.settling():
        c = ro.record["canary"]
        stable, canary = c["stable"], c["canary"]
        ro.phase("rollback", color=stable, reason=reason, result="started")
        _say(f"rolling back: traffic back to {stable} ({reason})")
        try:
            seen = ro.set_weights(hx_apps.target_weights(ro.cfg, stable), f"restore traffic to {stable}")
        except Exception as again:  # pylint: disable=broad-except
            c["state"] = "rollback_failed"
            return ro.finish("rollback_failed", f"{reason}; rollback: {_failure_text(again, ro.guard)}")
        c.update(state=outcome, percent=0, weights={"canary": 0, "stable": int(ro.cfg["deploy"]["weight"])})
        ro.phase("rolled_back", color=stable, weights=seen)
        _rejected_warm(ro, stable, canary, c["keep_warm"])
        return ro.finish(outcome, reason)


def _canary_promote(store, ro, by=None):
    # Settling: a promotion under way is finished and recorded before a signal ends the process.
    with ro.guard.settling():
        c = ro.record["canary"]
        canary, stable = c["canary"], c["stable"]
        full = hx_apps.target_weights(ro.cfg, canary)
        ro.phase("promote", color=canary, weights=full, by=by)
        seen = ro.set_weights(full, f"promote {canary}")
        c.update(state="promoted", percent=100, weights={"canary": int(ro.cfg["deploy"]["weight"]), "stable": 0})
        _remember(ro.cfg, canary, stable, ro.record.get("previous_versions") or {}, c["keep_warm"], ro.record)
        ro.phase("warm", color=stable, seconds=c["keep_warm"], weights=seen)
        _say(f"promoted: all traffic on {canary}; {stable} kept warm {c['keep_warm']}s")
        return ro.finish("succeeded")


def _canary_pause(store, ro, token, reason):
    with ro.guard.settling():
        c = ro.record["canary"]
        c.update(state="paused", paused_reason=reason, paused_at=time.time())
        ro.record["outcome"] = "paused"
        ro.phase("paused", step=c.get("current"), percent=c.get("percent"), reason=reason)
        _mark_lock(store, ro.app, token, state="paused", pid=None, expires=None)
        _say(f"paused at step {c.get('current')} ({c.get('percent')}%): {reason}; "
             f"go on with hx_deploy.resume app={ro.app}, or hx_deploy.promote / hx_deploy.abort")
        return ro.record


def _drive(store, ro, token):
    """Run the remaining steps of a canary; returns the record (finished or paused).

    Any error, Ctrl-C or SIGTERM on the way (an operator's promotion that
    failed included) puts the stable color back, verified and recorded,
    before a signal is raised again.
    """
    try:
        return _steps(store, ro, token)
    except BaseException as exc:
        with ro.guard.settling():
            record = _canary_rollback(store, ro, _failure_text(exc, ro.guard))
        if not isinstance(exc, Exception):
            raise
        return record


def _steps(store, ro, token):
    c = ro.record["canary"]
    conf = c["conf"]
    try:
        while c["index"] < len(c["steps"]):
            step = c["steps"][c["index"]]
            number = c["index"] + 1
            if step.get("pause"):
                _check(store, ro)
                c["index"] += 1
                c["current"] = number
                return _canary_pause(store, ro, token, f"step {number} is a pause")
            entry = _one_step(store, ro, step, number)
            c.setdefault("results", []).append(entry)
            c["last"] = entry
            ro.phase("step", **entry)
            _say(
                f"step {number} ({step['percent']}%): served {entry['share']}% of {entry['canary']['requests'] + entry['stable']['requests']} "
                f"requests, canary error rate {entry['canary']['error_rate']}%, avg {entry['canary']['response_time']} ms "
                f"(stable {entry['stable']['response_time']} ms), health {entry['health']['success_rate']}% -> "
                f"{entry['verdict']}: {'; '.join(entry['reasons'])}"
            )
            action = hx_canary.after_verdict(entry["verdict"], conf["inconclusive"], c.get("repeats", 0),
                                             conf["max_repeats"])
            if action == "rollback":
                return _canary_rollback(store, ro, f"step {number} ({step['percent']}%) {entry['verdict']}: "
                                        + "; ".join(entry["reasons"]))
            if action == "repeat":
                c["repeats"] = c.get("repeats", 0) + 1
                continue
            if action == "pause":
                c["repeats"] = 0
                return _canary_pause(store, ro, token, f"step {number} inconclusive: " + "; ".join(entry["reasons"]))
            c["index"] += 1
            c["repeats"] = 0
        return _canary_promote(store, ro)
    except _Control as ctl:
        who = ctl.by or "an operator"
        if ctl.action == "pause":
            return _canary_pause(store, ro, token, f"paused by {who}")
        if ctl.action == "promote":
            return _canary_promote(store, ro, by=who)
        return _canary_rollback(store, ro, f"aborted by {who}", outcome="aborted")


def _canary_ret(record, ok=("succeeded", "paused")):
    c = record.get("canary") or {}
    outcome = record["outcome"]
    steps = [
        {k: r.get(k) for k in ("step", "percent", "weights", "expected_share", "share", "interval", "watched",
                               "verdict", "reasons")}
        | {"canary": r["canary"], "stable": r["stable"], "health": r["health"]}
        for r in c.get("results", [])
    ]
    if outcome == "succeeded":
        comment = f"{record['app']} {record['version']} promoted: live on {c.get('canary')}"
    elif outcome == "paused":
        comment = (f"{record['app']} {record['version']} paused at step {c.get('current')} ({c.get('percent')}%): "
                   f"{c.get('paused_reason')}; hx_deploy.resume, promote or abort app={record['app']}")
    else:
        comment = f"{record['app']} {record['version']} {outcome}: {record.get('reason')}"
    ret = {
        "result": outcome in ok,
        "outcome": outcome,
        "deployment": record["id"],
        "app": record["app"],
        "version": record["version"],
        "from_color": record.get("from_color"),
        "to_color": record.get("to_color"),
        "step": c.get("current"),
        "percent": c.get("percent"),
        "weights": c.get("weights"),
        "steps": steps,
        "duration": record.get("duration"),
        "reason": record.get("reason"),
        "comment": comment,
    }
    return hx_runner.finish(__context__, ret)


def canary(app, version, steps=None, step_interval=None, break_lock=False, **kwargs):
    """
    Deploy ``version`` of ``app`` to the idle color and move traffic to it in
    steps, judging every step against the limits and the stable color, then
    promote it; a failing step rolls back at once.

    app
        An app defined in pillar ``hx:apps``.
    version
        The release to deploy.
    steps
        Percentages of traffic on the canary, increasing, in (0, 100]
        (default ``hx:apps:<app>:canary:steps``, [10, 25, 50, 100]). A
        ``pause`` entry waits for ``hx_deploy.resume``; ``{percent: 20,
        interval: 900}`` gives one step its own interval.
    step_interval
        Seconds each step is watched (default 60).
    error_rate, response_time, error_margin, latency_ratio, latency_floor,
    success_threshold, min_requests, inconclusive, max_repeats, sample_interval
        Override the pillar's limits for this run (see docs/reference/hx_deploy.md).
    canary_traffic_percentage, canary_monitoring_time
        The Ansible framework's single step: ``20`` and ``900`` mean steps
        ``[{percent: 20, interval: 900}, 100]``.
    keep_warm
        Seconds the old color stays running after promotion.
    break_lock
        Take over the app's deployment lock left by a dead run.

    Numbers must be finite and within bounds (docs/reference/bad-input.md):
    checked before the lease is taken. Ctrl-C (SIGINT) or SIGTERM while a
    step serves puts the stable color back, verified and recorded, before
    the process ends.

    Fires ``hx/deploy/<app>/<phase>``: preflight, deploy, verify, shift and
    step (every step, with its figures and verdict), paused, resumed,
    promote, warm, rollback, rolled_back, done.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.canary app=demo version=1.1.0
        salt-run hx_deploy.canary app=demo version=1.1.0 steps='[5, 25, 100]' step_interval=120
        salt-run hx_deploy.canary app=demo version=1.1.0 canary_traffic_percentage=20 canary_monitoring_time=900
    """
    try:
        cfg = _cfg(app)
        hx_releases.validate_version(version)
        conf = _canary_conf(cfg, steps, step_interval, kwargs)
        keep_warm = _duration(kwargs.get("keep_warm"), "keep_warm", cfg)
    except ValueError as exc:
        return _refuse(str(exc), app=app, version=version)
    guard = hx_rollout.Guard()
    with guard:
        guard.hold()
        ro, store, token, refused = _begin(cfg, version, "canary", break_lock, kwargs, guard)
        if refused:
            guard.let_go()
            return refused
        record = None
        try:
            with _heartbeat(store, app, token):
                record = _canary_run(store, ro, token, conf, keep_warm)
        finally:
            with guard.settling():
                if record is None or record["outcome"] != "paused":
                    store.release(hx_rollout.LOCKS, app, token)
    return _canary_ret(record)


def _canary_run(store, ro, token, conf, keep_warm):
    """Install and verify the canary color, then drive its steps; the record, finished or paused."""
    version = ro.record["version"]
    try:
        ro.guard.let_go()  # a signal that came while the lease was taken is handled from here on
        store.delete(hx_rollout.CONTROL, ro.app)
        ro.record["canary"] = {"conf": conf, "steps": conf["steps"], "index": 0, "results": [], "state": "deploying",
                               "keep_warm": keep_warm, "current": None, "percent": 0, "weights": None}

        def chosen(live, idle):
            ro.record["canary"].update(canary=idle, stable=live)
            return f"canary {version} on {idle}, steps {[s.get('percent', 'pause') for s in conf['steps']]}"

        _install_and_verify(store, ro, token, chosen)
    except BaseException as exc:
        # Nothing of the traffic moved yet.
        with ro.guard.settling():
            record = ro.finish("failed", _failure_text(exc, ro.guard))
        if not isinstance(exc, Exception):
            raise
        return record
    ro.record["canary"]["state"] = "running"
    return _drive(store, ro, token)


def _canary_record(store, app):
    """(lock holder, canary record) of the canary holding ``app``'s lock, or a reason there is none."""
    held = store.get(hx_rollout.LOCKS, app)
    if not held:
        return None, None, f"no canary of {app} is running or paused"
    record = store.get(hx_rollout.RUNS, held.get("deployment")) or {}
    if record.get("strategy") != "canary":
        return held, None, f"{app} is locked by {_holder_text(held)}; that is not a canary"
    return held, record, None


def _alive(held):
    return hx_store.pid_alive(__opts__, held)


def _take_over(store, ro, token, action, user):
    """What ``action`` does to a paused or orphaned canary this run now holds; its record."""
    store.delete(hx_rollout.CONTROL, ro.app)
    ro.record["outcome"] = "running"
    ro.record["canary"]["state"] = "running"
    if action == "resume":
        ro.phase("resumed", by=user, step=ro.record["canary"].get("current"))
        with _heartbeat(store, ro.app, token):
            return _drive(store, ro, token)
    if action == "pause":  # an orphaned running canary: park it where it is
        return _canary_pause(store, ro, token, f"paused by {user} (its run had died)")
    if action == "promote":
        try:
            return _canary_promote(store, ro, by=user)
        except Exception as exc:  # pylint: disable=broad-except
            return _canary_rollback(store, ro, f"promotion failed: {_failure_text(exc, ro.guard)}")
    return _canary_rollback(store, ro, f"aborted by {user}", outcome="aborted")


def _act(app, action, kwargs, timeout=None):
    """pause/resume/promote/abort: on a paused (or orphaned) canary act here, else signal the running one."""
    try:
        cfg = _cfg(app)
        timeout = 120 if timeout is None else _runner_number("timeout", timeout)
    except ValueError as exc:
        return _refuse(str(exc), app=app)
    store = hx_store.Store(__opts__)
    held, record, why = _canary_record(store, app)
    if not record:
        return hx_runner.finish(__context__, {"result": False, "app": app, "comment": why})
    user = _caller(kwargs)
    hx_events.audit(__opts__, f"deploy.{action}", app, "requested", who=user, deployment=record["id"])
    paused = record.get("outcome") == "paused"
    orphan = not paused and hx_lease.stale(held, time.time(), _alive(held))[0]
    if not paused and not orphan:
        if action == "resume":
            return {"result": True, "app": app, "deployment": record["id"], "outcome": "running",
                    "comment": f"{record['id']} is running, not paused"}
        store.put(hx_rollout.CONTROL, app, {"action": action, "deployment": record["id"], "by": user,
                                            "at": time.time()})
        _say(f"{action} sent to the running canary {record['id']} (pid {held.get('pid')} on {held.get('master')})")
        want = ("paused",) if action == "pause" else ("succeeded", "rolled_back", "aborted", "rollback_failed", "failed")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = store.get(hx_rollout.RUNS, record["id"]) or {}
            if now.get("outcome") in want or now.get("outcome") not in ("running", None):
                return _canary_ret(now, ok=OK_OUTCOMES[action])
            time.sleep(0.25)
        return hx_runner.finish(__context__, {
            "result": False, "app": app, "deployment": record["id"],
            "comment": f"{action} sent, but the canary did not act on it within {timeout}s (still pending)"})
    if action == "pause":
        if paused:
            return _canary_ret(record, ok=OK_OUTCOMES[action])
    guard = hx_rollout.Guard()
    with guard:
        guard.hold()
        token, _ = _take_lock(store, app, record["id"], user)
        if not token:
            guard.let_go()
            return hx_runner.finish(__context__, {"result": False, "app": app,
                                                  "comment": f"could not take over the lock of {record['id']}"})
        ro = hx_rollout.Rollout.resume(__opts__, cfg, record, progress=_say, user=user, jid=kwargs.get("__pub_jid"),
                                       guard=guard)
        result = None
        try:
            guard.let_go()
            result = _take_over(store, ro, token, action, user)
        except BaseException as exc:
            # The canary's traffic had moved before this run took it over:
            # whatever stops this run before it recorded an outcome puts the
            # stable color back (a rollback or promotion recorded its own).
            if ro.record.get("outcome") in ("running", None):
                result = _canary_rollback(store, ro, _failure_text(exc, ro.guard))
            if not isinstance(exc, Exception) or result is None:
                raise
        finally:
            with guard.settling():
                if result is None or result["outcome"] != "paused":
                    store.release(hx_rollout.LOCKS, app, token)
    return _canary_ret(result, ok=OK_OUTCOMES[action])


def pause(app, timeout=120, **kwargs):
    """
    Pause a running canary where it is: its current weights stay, its run
    ends with outcome ``paused`` and the lock stays with the canary record
    (a master restart loses nothing). ``resume`` re-runs the step it was in.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.pause app=demo
    """
    return _act(app, "pause", kwargs, timeout)


def resume(app, **kwargs):
    """
    Continue a paused canary in this process: the step it paused in is
    watched again (fresh figures), then the remaining steps and promotion.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.resume app=demo
    """
    return _act(app, "resume", kwargs)


def promote(app, timeout=120, **kwargs):
    """
    Skip the remaining steps of a running or paused canary: all traffic on
    the canary (read back on every LB), the old color kept warm.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.promote app=demo
    """
    return _act(app, "promote", kwargs, timeout)


def abort(app, timeout=120, **kwargs):
    """
    Roll a running or paused canary back now: stable color to full weight
    first, canary to 0, read back on every LB. Works on a paused canary whose
    run is gone (after a master restart) and on one whose process died.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.abort app=demo
    """
    return _act(app, "abort", kwargs, timeout)
