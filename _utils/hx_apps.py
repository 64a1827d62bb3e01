"""The deployment definition of an app (pillar ``hx:apps:<app>``), validated.

The same block serves the master (which hosts, which load balancers, how to
judge a rollout) and the minions (ports and services of the slots, where
releases live, see ``hx_release``). Defaults are the Ansible framework's:
blue 8080, green 8081, ``/health``, error rate 5 %, response time 2000 ms.
"""
import re

import hx_canary
import hx_haproxy
import hx_numbers
import hx_releases
import hx_rotation

COLORS = hx_releases.SLOTS
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

DEPLOY_DEFAULTS = {
    "weight": 100,  # weight of a live server
    "bake": 60,  # seconds of watching the new color after the switch
    "bake_interval": 5,  # seconds between bake samples
    "keep_warm": 600,  # seconds the old color stays running at weight 0
    "error_rate": 5.0,  # % of 5xx among the new color's requests
    "response_time": 2000,  # ms, HAProxy's average response time of the new color
    "min_requests": 20,  # fewer requests than this in a bake: error rate not judged
    "verify_timeout": 60,  # seconds for the idle color to become healthy after install
}


def _fail(app, key, why):
    raise ValueError(f"hx:apps:{app}: {key}: {why}")


def validate(app, raw):
    """Return the app's definition with defaults filled in; ValueError names the bad key."""
    if not isinstance(raw, dict):
        _fail(app, "(app)", "must be a mapping")
    # Keys an app host needs (slots, release source, health path) are
    # validated once, by hx_releases; this module adds the rollout keys.
    release = hx_releases.validate_app_config(
        app, {k: v for k, v in raw.items() if k not in hx_releases.ROLLOUT_KEYS}
    )
    hosts = raw.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        _fail(app, "hosts", "must map each app host's minion id to its address")
    for mid, addr in hosts.items():
        if not isinstance(addr, str) or not addr:
            _fail(app, f"hosts.{mid}", "address must be a non-empty string")
    lbs = raw.get("lbs")
    if isinstance(lbs, str):
        lbs = [lbs]
    if not isinstance(lbs, list) or not lbs or not all(isinstance(x, str) and x for x in lbs):
        _fail(app, "lbs", "must list the load-balancer minion ids")
    deploy = dict(DEPLOY_DEFAULTS)
    raw_deploy = raw.get("deploy") or {}
    if not isinstance(raw_deploy, dict):
        _fail(app, "deploy", "must be a mapping")
    for key, value in raw_deploy.items():
        if key not in DEPLOY_DEFAULTS:
            _fail(app, f"deploy.{key}", "unknown setting (allowed: " + ", ".join(sorted(DEPLOY_DEFAULTS)) + ")")
        deploy[key] = number(app, f"deploy.{key}", value)
    server = raw.get("server", "{host}_{color}")
    if not isinstance(server, str) or "{host}" not in server or "{color}" not in server:
        _fail(app, "server", "template must contain {host} and {color}")
    # Both reach HAProxy's runtime API as words of a command: checked here, where the key is known.
    backend = raw.get("backend", app)
    _name(app, "backend", backend)
    for host in hosts:
        for color in COLORS:
            try:
                name = server.format(host=host, color=color)
            except (KeyError, IndexError, ValueError):
                _fail(app, "server", "template may only use {host} and {color}")
            _name(app, "server", name)
    return {
        "app": app,
        "hosts": dict(hosts),
        "lbs": list(lbs),
        "backend": backend,
        "server": server,
        "slots": release["slots"],
        "health_path": release["health_path"],
        "deploy": deploy,
        "canary": hx_canary.settings(app, raw.get("canary")),
        "max_out": hx_rotation.max_out(app, raw.get("max_out"), len(hosts)),
    }


def _name(app, key, value):
    try:
        hx_haproxy.validate_name(key, value)
    except ValueError as exc:
        _fail(app, key, str(exc).split(": ", 1)[1])


def number(app, key, value):
    """``deploy.<key>`` of ``app``'s pillar within its bounds (``hx_numbers.DEPLOY``)."""
    try:
        return hx_numbers.check(key, value, hx_numbers.DEPLOY[key.split(".")[-1]])
    except ValueError as exc:
        raise ValueError(f"hx:apps:{app}: {exc}") from None


def lookup(apps, app):
    """The validated definition of ``app`` from the ``hx:apps`` mapping."""
    if not isinstance(app, str) or not NAME_RE.fullmatch(app):
        raise ValueError(f"app name {app!r} is not valid")
    if not isinstance(apps, dict) or app not in apps:
        known = ", ".join(sorted(apps)) if isinstance(apps, dict) and apps else "none"
        raise ValueError(f"unknown app {app!r} (hx:apps defines: {known})")
    return validate(app, apps[app])


def server_name(cfg, host, color):
    return cfg["server"].format(host=host, color=color)


def servers_by_color(cfg):
    """{color: [server names on every host]}."""
    return {color: [server_name(cfg, host, color) for host in sorted(cfg["hosts"])] for color in COLORS}


other = hx_releases.other_slot


def live_color(cfg, lb_weights):
    """Which color carries traffic, from every LB's weights ``{lb: {server: weight}}``.

    Returns ``(color, problems)``: color is None unless every LB agrees that
    exactly one color has weight on all its servers and the other has none.
    """
    by_color = servers_by_color(cfg)
    seen = {}
    problems = []
    for lb, weights in sorted(lb_weights.items()):
        missing = [s for c in COLORS for s in by_color[c] if s not in weights]
        if missing:
            problems.append(f"{lb}: backend {cfg['backend']} has no server {', '.join(missing)}")
            continue
        live = [c for c in COLORS if all(weights[s] > 0 for s in by_color[c])]
        idle = [c for c in COLORS if all(weights[s] == 0 for s in by_color[c])]
        if len(live) == 1 and idle == [other(live[0])]:
            seen[lb] = live[0]
        else:
            shown = ", ".join(f"{s}={weights[s]}" for c in COLORS for s in by_color[c])
            problems.append(f"{lb}: no single live color ({shown})")
    colors = set(seen.values())
    if len(colors) > 1:
        problems.append("load balancers disagree: " + ", ".join(f"{lb}={c}" for lb, c in sorted(seen.items())))
    if problems or not colors:
        return None, problems or ["no load balancer answered"]
    return colors.pop(), []


def target_weights(cfg, live):
    """Weights that put all traffic on ``live`` and none on the other color."""
    by_color = servers_by_color(cfg)
    weight = int(cfg["deploy"]["weight"])
    out = {s: weight for s in by_color[live]}
    out.update({s: 0 for s in by_color[other(live)]})
    return out
