"""
Health transitions as events: runs the minion's ``hx_health`` checks and fires
``salt/beacon/<minion>/hx_health/<check>`` when a check's status changed
(ok -> warning -> critical -> ok ...) and the new status held for
``for_cycles`` consecutive runs. Also fires ``.../hx_health/forecast<mount>``
when ``hx_health.forecast`` predicts a mount crossing its critical threshold
within ``horizon`` hours, and ``.../hx_health/config/error`` once when the
check configuration is broken. While a check stays non-ok the event is sent
again (``repeat: N`` in the data), first ``repeat_every`` seconds after the
transition, then at doubling intervals up to ``repeat_max``: a reaction lost
on the way (a master restarting, a reactor whose runner client predates the
runner) gets another chance instead of leaving the failure unhandled.

Every event is signed with the minion's key (``sig``): the master cannot
otherwise tell a real beacon event from one another minion forged
(docs/reference/hx_health_beacon.md).

.. code-block:: yaml

    beacons:
      hx_health:
        - interval: 5          # s between runs (the minion loop ticks once a second)
        - for_cycles: 2        # runs a new status must hold before it is reported
        - horizon: 24          # h, disk forecast horizon; 0 turns forecasts off
        - forecast_every: 300  # s between forecasts
        - checks: [app_http]   # default: every configured check
        - repeat_every: 60     # s to the first repeat of a non-ok status; 0 = transitions only
        - repeat_max: 3600     # s, the longest interval the repeats double up to
"""
import importlib
import logging
import os
import sys
import time
import uuid

import salt.crypt
import salt.utils.beacons

hx_remediation = None  # imported by __virtual__ (see there)

log = logging.getLogger(__name__)

__virtualname__ = "hx_health"

DEFAULTS = {"for_cycles": 2, "horizon": 24, "forecast_every": 300, "repeat_every": 60, "repeat_max": 3600,
            "checks": None, "sign": True}
KNOWN = set(DEFAULTS) | {"interval", "_beacon_name", "enabled", "disable_during_state_run"}
STATUSES = ("ok", "warning", "critical", "unknown")
CTX = "hx_health_beacon"


def __virtual__():
    # Unlike the module/runner loaders, Salt's beacon loader does not put the
    # utils directories on sys.path, so the shared signing code is found here.
    global hx_remediation  # pylint: disable=global-statement
    if hx_remediation is None:
        dirs = [os.path.join(__opts__["extension_modules"], "utils")] + list(__opts__.get("utils_dirs") or [])
        for path in dirs:
            if os.path.isfile(os.path.join(path, "hx_remediation.py")) and path not in sys.path:
                sys.path.append(path)
        try:
            hx_remediation = importlib.import_module("hx_remediation")
        except ImportError as exc:
            return False, f"hx_health beacon: _utils/hx_remediation.py is not synced (saltutil.sync_all): {exc}"
    return __virtualname__


def _settings(config):
    cfg = salt.utils.beacons.list_to_dict(config) if isinstance(config, list) else dict(config or {})
    unknown = sorted(set(cfg) - KNOWN)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KNOWN - {'_beacon_name'}))})")
    out = dict(DEFAULTS)
    out.update({k: v for k, v in cfg.items() if k in DEFAULTS})
    n = out["for_cycles"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"for_cycles must be an integer >= 1, got {n!r}")
    for key in ("horizon", "forecast_every", "repeat_every", "repeat_max"):
        v = out[key]
        # hx_remediation's own hx_numbers: this loader puts no utils dir on sys.path.
        if not hx_remediation.hx_numbers.is_finite(v) or v < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {v!r}")
    checks = out["checks"]
    if isinstance(checks, str):
        checks = [c.strip() for c in checks.split(",") if c.strip()]
    if checks is not None and (not isinstance(checks, list) or not all(isinstance(c, str) for c in checks)):
        raise ValueError("checks must be a list of check names")
    out["checks"] = checks or None
    out["name"] = cfg.get("_beacon_name", __virtualname__)
    return out


def validate(config):
    """
    Validate the beacon configuration (a list of one-key mappings).

    CLI Example:

    .. code-block:: bash

        salt '*' beacons.list
    """
    if not isinstance(config, list):
        return False, "hx_health beacon: configuration must be a list of mappings (- for_cycles: 2)"
    try:
        _settings(config)
    except ValueError as exc:
        return False, f"hx_health beacon: {exc}"
    return True, "valid"


def _sign(cfg, tag, data):
    if not cfg["sign"]:
        return data
    try:
        key = os.path.join(__opts__["pki_dir"], "minion.pem")
        msg = hx_remediation.signed_message(__opts__["id"], cfg["name"], tag, data)
        data["sig"] = hx_remediation.encode_sig(salt.crypt.sign_message(key, msg, algorithm=salt.crypt.PKCS1v15_SHA224))
    except Exception as exc:  # pylint: disable=broad-except
        # Unsigned events are refused by the master (when it requires signatures); say why here.
        log.error("hx_health beacon: cannot sign event %s: %s", tag, exc)
    return data


def _event(cfg, tag, **data):
    data = dict(data, ts=round(time.time(), 3), nonce=uuid.uuid4().hex[:16])
    return dict(_sign(cfg, tag, data), tag=tag)


def _service_of(check):
    services = __salt__["pillar.get"]("hx:services", {}, unmask=True) or {}
    if not isinstance(services, dict):
        return None
    for svc, spec in sorted(services.items()):
        health = (spec or {}).get("health") if isinstance(spec, dict) else None
        if isinstance(health, str):
            health = [h.strip() for h in health.split(",")]
        if check in (health or []):
            return svc
    return None


def _watched():
    """Routine checks, plus the on_demand checks of services that should be up.

    An on_demand check belongs to something that is down by design at times
    (the idle color of a blue-green app). It is watched while its service
    runs or has failed (ended on its own), and not while the service is
    stopped on purpose or starting.
    """
    raw = __salt__["pillar.get"]("hx:health:checks", [], unmask=True) or []
    entries = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
    names = [c.get("name") for c in entries if not c.get("on_demand")]
    owned = {c.get("name"): _service_of(c.get("name")) for c in entries if c.get("on_demand")}
    if any(owned.values()) and "hx_service.status" in __salt__:
        states = __salt__["hx_service.status"](sorted({s for s in owned.values() if s}))
        names += [c for c, svc in owned.items() if svc and (states.get(svc) or {}).get("state") in ("running", "failed")]
    return names or None


def _report(cfg, name, res, status, previous, since, **extra):
    data = {
        "check": name,
        "status": status,
        "previous": previous,
        "value": res.get("value"),
        "threshold": res.get("threshold"),
        "message": res.get("message"),
        "kind": res.get("kind"),
        "since": since,
        "cycles": cfg["for_cycles"],
        **extra,
    }
    svc = _service_of(name)
    if svc:
        data["service"] = svc
    return _event(cfg, name, **data)


def _repeat_gap(cfg, sent):
    """Seconds from the last event of a held status to its next repeat, after ``sent`` repeats."""
    return min(cfg["repeat_every"] * 2 ** min(sent, 32), max(cfg["repeat_max"], cfg["repeat_every"]))


def _transitions(cfg, state, results, now):
    """Hysteresis: report a status only after it held ``for_cycles`` runs in a row.

    A reported non-ok status is repeated while it holds, ``repeat_every`` s
    after the transition and then at doubling intervals up to ``repeat_max``:
    the master dedupes repeats onto the open incident and acts on one only
    when no incident exists, which is when the first report was lost. The
    doubling keeps a long-held failure from costing the master an event a
    minute per check.
    """
    events = []
    seen = state["checks"]
    for name, res in sorted(results.items()):
        status = res.get("status") if res.get("status") in STATUSES else "unknown"
        st = seen.setdefault(name, {"reported": "ok", "candidate": None, "count": 0, "since": None,
                                    "reported_since": None, "sent": None, "repeats": 0})
        if status == st["reported"]:
            st.update(candidate=None, count=0, since=None)
            if status != "ok" and cfg["repeat_every"] and now - st["sent"] >= _repeat_gap(cfg, st["repeats"]):
                st.update(sent=now, repeats=st["repeats"] + 1)
                events.append(_report(cfg, name, res, status, status, st["reported_since"], repeat=st["repeats"]))
            continue
        if status == st["candidate"]:
            st["count"] += 1
        else:
            st.update(candidate=status, count=1, since=now)
        if st["count"] < cfg["for_cycles"]:
            continue
        previous = st["reported"]
        st.update(reported=status, reported_since=st["since"], candidate=None, count=0, sent=now, repeats=0)
        events.append(_report(cfg, name, res, status, previous, st["since"]))
    # Checks removed from the config: forget them (a re-added one starts at ok).
    for name in set(seen) - set(results):
        del seen[name]
    return events


def _forecasts(cfg, state, now):
    if not cfg["horizon"] or now - state.get("forecast_at", 0) < cfg["forecast_every"]:
        return []
    state["forecast_at"] = now
    res = __salt__["hx_health.forecast"](horizon_hours=cfg["horizon"])
    events = []
    seen = state.setdefault("forecast", {})
    for mount, m in sorted((res.get("mounts") or {}).items()):
        predicted = m.get("status") in ("warning", "critical")
        if predicted == seen.get(mount, False):
            continue
        seen[mount] = predicted
        events.append(_event(
            cfg, "forecast" + mount,
            check="forecast" + mount, mount=mount,
            status="warning" if predicted else "ok",
            previous="ok" if predicted else "warning",
            value=m.get("current"), threshold={"critical": m.get("critical")},
            message=m.get("reason"), hours_to_critical=m.get("hours_to_critical"),
            horizon_hours=cfg["horizon"], kind="forecast",
        ))
    return events


def beacon(config):
    """
    Run the configured ``hx_health`` checks and return one event per
    confirmed status transition (never raises: a broken configuration is
    reported once as ``hx_health/config/error``).

    CLI Example:

    .. code-block:: bash

        salt '*' beacons.add hx_health "[{'interval': 5}, {'for_cycles': 2}]"
    """
    state = __context__.setdefault(CTX, {"checks": {}, "config_error": None})
    now = time.time()
    try:
        cfg = _settings(config)
    except ValueError as exc:
        return _config_error(state, {"name": __virtualname__, "sign": True}, f"beacon config: {exc}")
    try:
        if "hx_health.check" not in __salt__:
            return _config_error(state, cfg, "hx_health module is not available (saltutil.sync_all)")
        res = __salt__["hx_health.check"](names=cfg["checks"] or _watched())
        events = []
        if state["config_error"] is not None:
            state["config_error"] = None
            events.append(_event(cfg, "config/error", check="config/error", status="ok",
                                 previous="config_error", message="check configuration is valid again"))
        events += _transitions(cfg, state, res.get("checks") or {}, now)
        try:
            events += _forecasts(cfg, state, now)
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("hx_health beacon: forecast failed: %s", exc)
        return events
    except Exception as exc:  # pylint: disable=broad-except
        # hx_errors.ConfigError is a malformed hx:health pillar; anything else
        # is unexpected. Either way the minion loop must go on.
        return _config_error(state, cfg, str(exc))


def _config_error(state, cfg, message):
    if state.get("config_error") == message:
        return []
    state["config_error"] = message
    log.error("hx_health beacon: %s", message)
    return [_event(cfg, "config/error", check="config/error", status="config_error",
                   previous="ok", message=message[:500])]
