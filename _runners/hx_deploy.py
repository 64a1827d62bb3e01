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
import hx_events
import hx_fleet
import hx_releases
import hx_rollout
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


def _duration(kwargs, key, cfg):
    value = kwargs.get(key)
    if value is None:
        return cfg["deploy"][key]
    return hx_apps.number(cfg["app"], key, value)


def _lock(store, cfg, ro, break_lock):
    if break_lock:
        held = store.get(hx_rollout.LOCKS, cfg["app"])
        store.release(hx_rollout.LOCKS, cfg["app"])
        hx_events.audit(__opts__, "deploy.lock_broken", cfg["app"], "ok", who=ro.record["user"], holder=held)
    token = uuid.uuid4().hex
    holder = {
        "token": token,
        "deployment": ro.record["id"],
        "user": ro.record["user"],
        "jid": ro.record["jid"],
        "pid": os.getpid(),
        "master": __opts__.get("id"),
        "version": ro.record["version"],
        "strategy": ro.record["strategy"],
    }
    taken, current = store.acquire(hx_rollout.LOCKS, cfg["app"], holder)
    return token if taken else None, current


def _holder_text(holder):
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(holder.get("since", 0)))
    return (
        f"deployment {holder.get('deployment')} ({holder.get('strategy')} of {holder.get('version')}) "
        f"by {holder.get('user')} since {since} UTC, pid {holder.get('pid')} on {holder.get('master')}; "
        "if that run is dead, break the lock with break_lock=True or hx_deploy.unlock"
    )


def _preflight(ro):
    cfg = ro.cfg
    ro.hosts("test.ping", "app hosts answer")
    ro.lbs("test.ping", "load balancers answer")
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
        bake = _duration(dict(kwargs, bake=bake), "bake", cfg)
        keep_warm = _duration(dict(kwargs, keep_warm=keep_warm), "keep_warm", cfg)
    except ValueError as exc:
        return _refuse(str(exc), app=app, version=version)
    ro = hx_rollout.Rollout(
        __opts__, cfg, version, "blue_green", progress=_say, user=_caller(kwargs), jid=kwargs.get("__pub_jid")
    )
    store = hx_store.Store(__opts__)
    token, holder = _lock(store, cfg, ro, break_lock)
    if not token:
        return _refuse(f"another deployment of {app} is running: {_holder_text(holder)}", app=app, holder=holder)
    switched = False
    live = None
    try:
        ro.phase("preflight")
        live, running = _preflight(ro)
        idle = hx_apps.other(live)
        ro.record.update(from_color=live, to_color=idle, previous_versions=running)
        _say(f"{app}: live color {live} ({', '.join(f'{h}={v}' for h, v in sorted(running.items()))}); deploying {version} to {idle}")
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
        before = ro.lb_stats()
        target = hx_apps.target_weights(cfg, idle)
        ro.phase("switch", color=idle, weights=target)
        switched = True
        ro.set_weights(target, f"switch traffic to {idle}")
        _say(f"switched: all traffic on {idle}; baking {bake}s")
        ro.phase("bake", seconds=bake)
        verdict = _bake(ro, idle, bake, before)
        ro.record["bake"] = verdict
        _remember(cfg, idle, live, running, keep_warm, ro.record)
        ro.phase("warm", color=live, seconds=keep_warm)
        record = ro.finish("succeeded")
    except hx_rollout.StepError as exc:
        reason = str(exc)
        if switched:
            try:
                _restore(ro, live, reason)
                record = ro.finish("rolled_back", reason)
            except hx_rollout.StepError as again:
                record = ro.finish("rollback_failed", f"{reason}; rollback: {again}")
        else:
            record = ro.finish("failed", reason)
    finally:
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


def plan(app, version, **kwargs):
    """
    Show every step a blue-green deployment would take, with the hosts and
    the exact load-balancer changes, without changing anything.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.plan app=demo version=1.1.0
    """
    try:
        cfg = _cfg(app)
        hx_releases.validate_version(version)
    except ValueError as exc:
        return _refuse(str(exc), app=app, version=version)
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
        f"bake {cfg['deploy']['bake']}s: error rate < {cfg['deploy']['error_rate']}%, "
        f"response time < {cfg['deploy']['response_time']} ms, {idle} healthy",
        f"on failure after the switch: weights back to {back}",
        f"keep {live} warm at weight 0 for {cfg['deploy']['keep_warm']}s, then stop it",
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
        out["running"] = {"lock": {k: v for k, v in lock.items() if k != "token"}, "phase": run.get("phase")}
    out["state"] = store.get(hx_rollout.APPS, app)
    lines = [f"{app}: live color {out['live']}"]
    for lb, weights in sorted((out.get("weights") or {}).items()):
        lines.append(f"  {lb}: " + ", ".join(f"{s}={w}" for s, w in sorted(weights.items())))
    for host, slots in sorted((out.get("versions") or {}).items()):
        shown = ", ".join(f"{c}={(slots.get(c) or {}).get('running') or '-'}" for c in hx_apps.COLORS)
        lines.append(f"  {host}: {shown}")
    if out["running"]:
        lines.append(f"  running: {out['running']['lock'].get('deployment')} phase {out['running']['phase']}")
    warm = (out["state"] or {}).get("warm")
    if warm:
        lines.append(f"  warm: {warm['color']} until {time.strftime('%H:%M:%S', time.gmtime(warm['until']))} UTC")
    _say("\n".join(lines))
    return hx_runner.finish(__context__, out)


def history(app=None, limit=20, **kwargs):  # pylint: disable=unused-argument
    """
    Past deployments, newest first, with outcome, duration and reason.

    CLI Example:

    .. code-block:: bash

        salt-run hx_deploy.history app=demo
    """
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
        }
        for r in runs[: int(limit)]
    ]
    shown = [dict(r, reason=(r["reason"] or "")[:90]) for r in rows]
    _say(hx_fleet.render_table(("started", "app", "strategy", "version", "from", "to", "outcome", "duration", "reason"), shown))
    return {"result": True, "deployments": rows, "records": {r["id"]: r for r in runs[: int(limit)]}}


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
    ro = hx_rollout.Rollout(
        __opts__, cfg, None, "rollback", progress=_say, user=_caller(kwargs), jid=kwargs.get("__pub_jid")
    )
    store = hx_store.Store(__opts__)
    token, holder = _lock(store, cfg, ro, break_lock)
    if not token:
        return _refuse(f"another deployment of {app} is running: {_holder_text(holder)}", app=app, holder=holder)
    try:
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
                ro.call([host], "hx_service.start", f"start {back}", arg=[cfg["slots"][back]["service"]], timeout=120)
        ro.phase("verify", color=back)
        ro.wait_color_healthy(back, None, cfg["deploy"]["verify_timeout"])
        wrong = {h: (sl.get(back) or {}).get("running") for h, sl in ro.slot_versions().items()
                 if (sl.get(back) or {}).get("running") != targets[h]}
        if wrong:
            raise hx_rollout.StepError(f"{back} runs {wrong}, expected {targets}")
        ro.wait_lb_up(back, cfg["deploy"]["verify_timeout"])
        ro.phase("switch", color=back)
        ro.set_weights(hx_apps.target_weights(cfg, back), f"switch traffic back to {back}")
        running = {h: (slots.get(live) or {}).get("running") for h, slots in versions.items()}
        _remember(cfg, back, live, running, cfg["deploy"]["keep_warm"], ro.record)
        ro.phase("warm", color=live, seconds=cfg["deploy"]["keep_warm"])
        record = ro.finish("succeeded")
    except hx_rollout.StepError as exc:
        record = ro.finish("failed", str(exc))
    finally:
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
            ro.hosts("hx_service.stop", f"stop warm {warm['color']}", arg=[cfg["slots"][warm["color"]]["service"]])
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
