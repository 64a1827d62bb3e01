"""Event-driven remediation: one reactor call per beacon event, decided on the master.

``handle(tag, data)`` trusts nothing in the event but what it can verify: the
minion named in the tag must have signed it (``hx_health`` beacon) or be an
allowed unsigned source (the built-in ``service`` beacon); the condition is
re-checked on that minion before anything happens; the action comes from the
master's policy, never from the event. Reference: docs/reference/hx_remediate.md.

CLI Example:

.. code-block:: bash

    salt-run hx_remediate.status
    salt-run hx_remediate.disable reason='storage migration'
"""
import copy
import logging
import os
import threading
import time

import salt.cache
import salt.crypt
import salt.pillar
import salt.utils.event
import salt.utils.minions

import hx_audit
import hx_fleet
import hx_incidents
import hx_intent
import hx_remediation
import hx_rotation
import hx_runner
import hx_store
import hx_typed
from hx_remediation import Rejected

log = logging.getLogger(__name__)

__virtualname__ = "hx_remediate"

SWITCH_BANK = "hx/remediate"
STALE_BANK = "hx/remediate/stale"
BUDGET_BANK = "hx/remediate/budget"
ACTIVE_BANK = "hx/remediate/active"
NONCE_BANK = "hx/remediate/nonces"  # {minion: {nonce: first seen}}: signed events are accepted once
DEPLOY_LOCKS = "hx/deploy/locks"
MAINT_LOCKS = "hx/maint/locks"  # hx_maint.run's lease, key "fleet"
ESCALATE_EVERY = 5.0  # s between escalate_due sweeps triggered by events
_SWEEP = {"at": 0.0}
_SWEEP_LOCK = threading.Lock()
_LOCAL = threading.local()
# Per reactor process (its runner threads share it): the service names each
# minion declares, so a flood of invented names costs one pillar compile.
_DECLARED_LOCK = threading.Lock()
_DECLARED = {}  # minion -> (expires, frozenset of declared service names)


def __virtual__():
    return __virtualname__


# -- plumbing -------------------------------------------------------------------


def _cache():
    # One per reactor worker thread: a salt.cache costs a loader (~3 ms) and a
    # handle needs it several times; not shared, so no thread loads into another's.
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = salt.cache.factory(__opts__)
    return cache


def _fire(minion, what, data):
    tag = f"hx/remediate/{minion}/{what}"
    secrets = hx_audit.secrets(__opts__)
    try:
        with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
            event.fire_event(secrets.scrub_obj(dict(data, minion=minion)), tag)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("hx_remediate: cannot fire %s: %s", tag, secrets.error(exc))


def _audit(what, target, result, **details):
    return hx_audit.write(__opts__, "hx_remediate", what, target, result, **details)


def _call(minion, fun, arg=(), kwarg=None, timeout=15):
    """``(ret, error)`` of one function on one minion; error when it failed or stayed silent."""
    out = hx_fleet.call(__opts__, minion, fun, arg=arg, kwarg=kwarg, tgt_type="list", timeout=timeout)
    if minion not in out["returns"]:
        return None, f"{minion} did not answer {fun} within {timeout:g} s"
    ret = out["returns"][minion]
    if isinstance(ret["ret"], str) and ret["retcode"]:
        return ret["ret"], f"{fun} failed on {minion}: {ret['ret'][:300]}"
    return ret["ret"], None


def _pillar(minion):
    """The minion's pillar, compiled here from the master's pillar tree (not what the minion says)."""
    _, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    pil = salt.pillar.get_pillar(
        __opts__, grains or {"id": minion}, minion,
        saltenv=__opts__.get("saltenv"), pillarenv=__opts__.get("pillarenv"),
    ).compile_pillar()
    errors = pil.get("_errors") if isinstance(pil, dict) else None
    if errors:
        raise ValueError(f"pillar of {minion} does not compile: {errors}")
    return pil or {}


def _hx(pil, key, default=None):
    value = (pil.get("hx") or {}).get(key) if isinstance(pil.get("hx"), dict) else None
    return default if value is None else value


def _verify_signature(ev, now, pol):
    payload = ev["payload"]
    sig = payload.get("sig")
    if sig is None:
        if pol["require_signature"] and ev["source"] not in pol["unsigned_sources"]:
            raise Rejected(f"unsigned {ev['source']} event (require_signature is on)")
        return False
    pub = os.path.join(__opts__["pki_dir"], "minions", ev["minion"])
    if not os.path.isfile(pub):
        raise Rejected(f"no accepted key for minion {ev['minion']!r}")
    msg = hx_remediation.signed_message(ev["minion"], ev["source"], ev["name"], payload)
    try:
        ok = salt.crypt.verify_signature(pub, msg, hx_remediation.decode_sig(sig), algorithm=salt.crypt.PKCS1v15_SHA224)
    except Rejected:
        raise
    except Exception:  # pylint: disable=broad-except
        ok = False
    if not ok:
        raise Rejected(f"signature does not verify with {ev['minion']}'s key")
    hx_remediation.freshness(payload, now, pol["max_event_age"])
    cache = _cache()
    with hx_audit.lock(__opts__, f"remediate-nonce-{ev['minion']}"):
        first, seen = hx_remediation.note_nonce(cache.fetch(NONCE_BANK, ev["minion"]), payload.get("nonce"), now,
                                                pol["max_event_age"])
        cache.store(NONCE_BANK, ev["minion"], seen)
    if first is not None:
        raise Rejected(f"replayed event: nonce {payload.get('nonce')!r} from {ev['minion']} was first seen "
                       f"{now - first:.1f} s ago")
    return True


# -- re-check -------------------------------------------------------------------


def _recheck(minion, facts, pil, timeout):
    """``{"status", "kind", "message", "raw"}`` measured now on the minion, or status None (no answer)."""
    check = facts["check"]
    if facts["source"] == "service":
        ret, err = _call(minion, "hx_service.status", [facts["service"]], timeout=timeout)
        if err:
            return {"status": None, "message": err}
        svc = (ret or {}).get(facts["service"]) or {}
        state = svc.get("state")
        return {"status": "ok" if state == "running" else "critical", "message": f"process is {state}", "kind": "service",
                "proc_state": state, "intent": svc.get("intent")}
    if facts["type"] == "disk_forecast":
        horizon = facts.get("horizon") or 24
        ret, err = _call(minion, "hx_health.forecast", kwarg={"horizon_hours": horizon}, timeout=timeout)
        if err:
            return {"status": None, "message": err}
        mount = ((ret or {}).get("mounts") or {}).get(facts["resource"]) or {}
        bad = mount.get("status") in ("warning", "critical")
        return {"status": "warning" if bad else "ok", "message": mount.get("reason"), "kind": "forecast"}
    if facts["type"] == "config_error":
        ret, err = _call(minion, "hx_health.checks", timeout=timeout)
        if err and ret is None:
            return {"status": None, "message": err}
        return {"status": "config_error" if err else "ok", "message": err or "configuration valid", "kind": "config"}
    ret, err = _call(minion, "hx_health.check", kwarg={"names": check.split(":", 1)[0]}, timeout=timeout)
    if err:
        # A check name the minion does not know any more is not something to fix.
        return {"status": "ok" if ret and "unknown" in str(ret).lower() else None, "message": err}
    res = ((ret or {}).get("checks") or {}).get(check)
    if res is None:
        return {"status": "ok", "message": f"check {check} no longer reported"}
    return {"status": res.get("status"), "message": res.get("message"), "kind": res.get("kind"), "value": res.get("value")}


# -- guards (suppression, budgets) ------------------------------------------------


def _switch():
    return _cache().fetch(SWITCH_BANK, "switch") or {}


def _suppression(minion, facts, pil, pol):
    """``(reason, detail, escalate)`` when remediation must not run now, else None."""
    sw = _switch()
    if not pol["enabled"]:
        return "disabled", "remediation disabled by configuration (hx_remediation:enabled)", True
    if sw.get("enabled") is False:
        return "disabled", f"remediation disabled by {sw.get('by')}: {sw.get('reason')}", True
    cache = _cache()
    now = time.time()

    def alive(holder):
        return hx_store.pid_alive(__opts__, holder)

    if pol["maintenance"] != "never":
        lease = cache.fetch(MAINT_LOCKS, "fleet") or None
        held = hx_remediation.maintenance_lease_hold(lease, minion, now, alive(lease))
        if held:
            return "maintenance", f"{minion} is in the batch of {held}", False
    if pol["maintenance"] in ("configured", "any"):
        ret, err = _call(minion, "hx_maint.window_open", timeout=pol["recheck_timeout"])
        configured = (_hx(pil, "maintenance", {}) or {}).get("windows") if isinstance(_hx(pil, "maintenance", {}), dict) else None
        if not err and hx_remediation.maintenance_holds(pol["maintenance"], ret, configured):
            return "maintenance", f"maintenance window {ret.get('window')} open on {minion} ({ret.get('reason')})", False
        if err and ret is not None and "is not available" not in str(ret):
            # hx_maint missing on the minion = no window; any other failure is worth a line
            log.warning("hx_remediate: hx_maint.window_open on %s: %s", minion, err)
    holders = {k: cache.fetch(DEPLOY_LOCKS, k) for k in (cache.list(DEPLOY_LOCKS) or [])
               if not k.startswith(".") and not k.startswith("tmp")}
    held = hx_remediation.deploy_suppression(holders, facts.get("service"), now, alive)
    if held:
        app, who = held
        return "deploy", f"{facts.get('service')} is under a deployment of {app}: {who}", False
    return None


def _claim_budget(minion, role, pol, now, incident):
    """Check and spend the per-minion and per-role budgets atomically (master lock)."""
    cache = _cache()
    with hx_audit.lock(__opts__, "remediate-budget"):
        stamps = (cache.fetch(BUDGET_BANK, minion) or {}).get("stamps", [])
        mb = hx_remediation.minion_budget(stamps, now, pol["budget"]["minion"])
        if not mb["allowed"]:
            return False, f"minion budget spent: {mb['used']}/{mb['max']} remediations in {mb['window']:g} s"
        if role:
            size = len(salt.utils.minions.CkMinions(__opts__).check_minions(f"hx:role:{role}", "pillar").get("minions", []))
            active = 0
            for other in cache.list(ACTIVE_BANK) or []:
                rec = cache.fetch(ACTIVE_BANK, other) or {}
                # a marker older than two action timeouts is from a crashed run
                if rec.get("role") == role and other != minion and now - rec.get("since", 0) < 2 * pol["action_timeout"]:
                    active += 1
            rb = hx_remediation.role_budget(active, max(size, active + 1), pol["budget"]["role"]["max_pct"])
            if not rb["allowed"]:
                return False, (f"role budget: {rb['active']} of {rb['size']} '{role}' minions already being "
                               f"remediated (max {pol['budget']['role']['max_pct']:g} % = {rb['slots']})")
        cache.store(BUDGET_BANK, minion, {"stamps": hx_remediation.in_window(stamps, now, pol["budget"]["minion"]["window"]) + [now]})
        cache.store(ACTIVE_BANK, minion, {"role": role, "since": now, "incident": incident})
    return True, f"budget ok ({mb['used'] + 1}/{mb['max']})"


def _release_active(minion):
    with hx_audit.lock(__opts__, "remediate-budget"):
        _cache().flush(ACTIVE_BANK, minion)


# -- the handler ------------------------------------------------------------------


def _facts(ev, pil):
    services = _hx(pil, "services", {}) or {}
    if ev["source"] == "service":
        svc = hx_remediation.service_for(services, ev["name"])
        if not svc:
            raise Rejected(f"service {ev['name']!r} is not declared in {ev['minion']}'s hx:services")
        return {"source": "service", "check": f"service/{ev['name']}", "type": "service", "resource": svc, "service": svc}
    facts = hx_remediation.check_facts(ev["name"], None, services)
    facts["source"] = "hx_health"
    return facts


def _event_status(ev):
    p = ev["payload"]
    if ev["source"] == "service":
        running = (p.get(ev["name"]) or {}).get("running") if isinstance(p.get(ev["name"]), dict) else None
        return "ok" if running else "critical"
    status = p.get("status")
    return status if status in hx_remediation.STATUS_ORDER else "unknown"


def _key(ev):
    """Dedupe key from the tag alone (cheap, before any pillar or minion call)."""
    if ev["source"] == "service":
        return hx_incidents.dedupe_key(ev["minion"], f"service/{ev['name']}", ev["name"])
    facts = hx_remediation.check_facts(ev["name"])
    return hx_incidents.dedupe_key(ev["minion"], ev["name"], facts["resource"])


def _sweep(d):
    with _SWEEP_LOCK:
        if time.time() - _SWEEP["at"] < ESCALATE_EVERY:
            return []
        _SWEEP["at"] = time.time()
    try:
        return d.escalate_due()
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("hx_remediate: escalate_due failed: %s", d.secrets.error(exc))
        return []


def handle(tag, data, **kwargs):  # pylint: disable=unused-argument
    """
    React to one beacon event (the reactor's only call): verify the sender,
    dedupe, re-check on that minion, open or update the incident, remediate
    within policy and budgets, verify, resolve or escalate.

    tag
        The event tag, ``salt/beacon/<minion>/hx_health/<check>`` or
        ``salt/beacon/<minion>/service/<name>``.
    data
        The event data, exactly as the reactor received it.

    Returns ``{"result", "outcome", "incident", "comment", ...}``; ``outcome``
    is one of rejected, ignored, duplicate, stale, intended (the service
    was stopped on purpose: audited, nothing else), resolved, suppressed,
    notified, escalated, remediated, failed.

    CLI Example:

    .. code-block:: bash

        salt-run hx_remediate.handle tag=salt/beacon/web1/hx_health/app_http data='{...}'
    """
    # The return is the job's return and its salt/run/*/ret event: no configured secret in it.
    return hx_audit.secrets(__opts__).scrub_obj(_handle(tag, data))


def _bad_config(minion, exc, tag):
    """A reaction refused for configuration: the key in the answer, the audit log, an event and the master log."""
    text = hx_audit.secrets(__opts__).scrub(exc)
    _audit("remediate.config", minion, "error", error=text, tag=tag)
    _fire(minion or "unknown", "config_error", {"tag": tag, "error": text})
    log.error("hx_remediate: %s not handled, bad configuration: %s", tag, text)
    return hx_runner.finish(__context__, {"result": False, "outcome": "rejected", "comment": f"bad configuration: {text}"})


def _handle(tag, data):
    now = time.time()
    try:
        master_pol = hx_remediation.policy(*hx_audit.config_layers(__opts__, "hx_remediation"))
    except ValueError as exc:
        return _bad_config(None, exc, tag)
    try:
        ev = hx_remediation.parse_event(tag, data)
        signed = _verify_signature(ev, now, master_pol)
    except Rejected as exc:
        named = hx_remediation.TAG_RE.fullmatch(tag) if isinstance(tag, str) else None
        target = named["minion"] if named else None
        sender = data.get("id") if isinstance(data, dict) else None
        _audit("remediate.reject", target, "rejected", reason=str(exc), tag=tag, sender=sender)
        _fire(target or "unknown", "rejected", {"tag": tag, "reason": str(exc), "sender": sender})
        log.warning("hx_remediate: rejected %s: %s", tag, exc)
        return hx_runner.finish(__context__, {"result": False, "outcome": "rejected", "comment": str(exc)})

    if not signed:
        try:
            _check_declared(ev, now, master_pol)
        except Rejected as exc:
            _audit("remediate.reject", ev["minion"], "rejected", reason=str(exc), tag=tag)
            return hx_runner.finish(__context__, {"result": False, "outcome": "rejected", "comment": str(exc)})
    minion, status = ev["minion"], _event_status(ev)
    key = _key(ev)
    stamps = {"beacon_ts": ev["payload"].get("ts"), "master_stamp": (data or {}).get("_stamp"), "handled": now}
    log.info("hx_remediate: %s %s from %s (beacon %s, master bus %s)", tag, status, minion,
             stamps["beacon_ts"], stamps["master_stamp"])
    try:
        d = hx_incidents.make_desk(__opts__, cache=_cache())
    except ValueError as exc:
        return _bad_config(minion, exc, tag)
    # A refused classification does not stop the reaction: every answer says which key was refused.
    notes = list(d.cfg["errors"])
    try:
        if status == "ok":
            ret = _handle_ok(d, ev, key, master_pol)
        elif hx_remediation.below_min_status(ev["name"], status, master_pol["min_status"]):
            _audit("remediate.ignore", minion, "ignored", check=ev["name"], status=status,
                   reason=f"below min_status {master_pol['min_status']}")
            ret = {"result": True, "outcome": "ignored", "comment": f"{status} is below min_status"}
        else:
            ret = _handle_bad(d, ev, key, status, master_pol, signed, now, notes)
    finally:
        _sweep(d)
    return dict(ret, config_errors=notes) if notes else ret


def _check_declared(ev, now, pol):
    """Refuse a ``service`` event about a name the minion does not declare, from a cached list."""
    if ev["source"] != "service":
        return
    minion = ev["minion"]
    with _DECLARED_LOCK:
        expires, names = _DECLARED.get(minion, (0.0, None))
    if names is None or now >= expires:
        try:
            names = hx_remediation.declared_names(_hx(_pillar(minion), "services", {}))
        except ValueError as exc:
            raise Rejected(str(exc)) from exc
        with _DECLARED_LOCK:
            _DECLARED[minion] = (now + pol["declared_ttl"], names)
    if ev["name"] not in names:
        raise Rejected(f"service {ev['name']!r} is not declared in {minion}'s hx:services")


def _handle_ok(d, ev, key, pol):
    minion = ev["minion"]
    inc = d.store.active_for(key)
    if not inc:
        return {"result": True, "outcome": "ignored", "comment": "ok and no active incident"}
    if inc["status"] == "remediating":
        d.note(inc["id"], "detection", "beacon reports ok while the remediation runs")
        return {"result": True, "outcome": "noted", "incident": inc["id"]}
    pil = _pillar(minion)
    facts = _facts(ev, pil)
    now_status = _recheck(minion, facts, pil, pol["recheck_timeout"])
    d.note(inc["id"], "verification", f"beacon reports ok; master re-check: {now_status['status']} ({now_status.get('message')})")
    if now_status["status"] != "ok":
        return {"result": True, "outcome": "noted", "incident": inc["id"]}
    try:
        d.resolve(inc["id"], "hx", _after_planned_work(inc, "condition cleared (beacon and master re-check agree)"))
    except ValueError:
        pass  # resolved meanwhile
    _fire(minion, "resolved", {"incident": inc["id"], "check": inc["check"]})
    return {"result": True, "outcome": "resolved", "incident": inc["id"]}


def _handle_bad(d, ev, key, status, master_pol, signed, now, notes):
    with d.locked(key):
        step = _judge(d, ev, key, status, master_pol, signed, now, notes)
    if isinstance(step, dict):
        return step
    inc, facts, pil, pol, current, retry = step
    # Outside the incident's lock: resolving, noting and notifying take it again.
    if retry and current["status"] == "ok":
        return _cleared_on_retry(d, inc, facts, current)
    if retry and current.get("intended"):
        _cleared_on_retry(d, inc, facts, current, why=current["intended"]["comment"])
        return current["intended"]
    if retry:
        d.note(inc["id"], "verification", f"master re-check on {inc['minion']} after its report #{inc['repeats']}: "
               f"{current['status'] or 'no answer'} ({current.get('message')})")
        return _act(d, inc, facts, pil, pol, current, None)
    # People are told while hx acts: a slow webhook must not delay the fix.
    # Every later notification waits for this one, so resolve never beats open.
    opener = threading.Thread(target=d.notify, args=(inc["id"], "open"), daemon=True)
    opener.start()
    try:
        return _act(d, inc, facts, pil, pol, current, opener)
    finally:
        opener.join()


def _judge(d, ev, key, status, master_pol, signed, now, notes):
    """Under the incident's lock: a finished answer (dict), or ``(inc, facts, pil, pol, current, retry)``."""
    minion = ev["minion"]
    cache = _cache()
    slot = hx_incidents.dedupe_slot(key)
    active = d.store.active_for(key)
    retry = False
    if active:
        rec = hx_incidents.note_repeat(active, now, status=status)
        # The master could not reach the minion when it opened this incident (an overloaded
        # master looks the same): the minion's next report of it is the retry, claimed here
        # so that a second repeat arriving meanwhile stays a duplicate.
        # An acknowledged incident is a person's: no retry behind their back.
        retry = bool(rec.get("awaiting_answer")) and rec["status"] in ("open", "escalated")
        rec["awaiting_answer"] = False
        d.store.put(rec)
        if not retry:
            return {"result": True, "outcome": "duplicate", "incident": active["id"], "repeats": rec["repeats"]}
    stale = cache.fetch(STALE_BANK, slot) or {}
    if not retry and stale and now - stale.get("t", 0) < master_pol["stale_ttl"]:
        stale["repeats"] = stale.get("repeats", 0) + 1
        cache.store(STALE_BANK, slot, stale)
        return {"result": True, "outcome": "duplicate", "comment": "repeat of a stale event", "repeats": stale["repeats"]}
    try:
        pil = _pillar(minion)
        pol = hx_remediation.policy(*hx_audit.config_layers(__opts__, "hx_remediation"), pillar=_hx(pil, "remediation"))
        icfg = hx_incidents.config(*hx_audit.config_layers(__opts__, "hx_incident"), pillar=_hx(pil, "incidents"))
        pillar_errors = [e for e in icfg["errors"] if e not in d.cfg["errors"]]
        hx_incidents.report_config_errors(__opts__, pillar_errors, now)
        notes.extend(pillar_errors)
        facts = _facts(ev, pil)
    except Rejected as exc:
        _audit("remediate.reject", minion, "rejected", reason=str(exc), tag=f"salt/beacon/{minion}/{ev['source']}/{ev['name']}")
        _fire(minion, "rejected", {"reason": str(exc)})
        return hx_runner.finish(__context__, {"result": False, "outcome": "rejected", "comment": str(exc)})
    except ValueError as exc:
        return _bad_config(minion, exc, f"salt/beacon/{minion}/{ev['source']}/{ev['name']}")
    payload = ev["payload"]
    if ev["source"] == "hx_health" and payload.get("horizon_hours"):
        facts["horizon"] = payload.get("horizon_hours")
    current = _recheck(minion, facts, pil, pol["recheck_timeout"])
    if retry and current["status"] == "ok":
        return rec, facts, pil, pol, current, True
    if current["status"] == "ok":
        cache.store(STALE_BANK, slot, {"t": now, "repeats": 0})
        _audit("remediate.stale", minion, "no action", check=facts["check"], reported=status,
               message=current.get("message"), signed=signed)
        _fire(minion, "stale", {"check": facts["check"], "reported": status})
        return {"result": True, "outcome": "stale", "comment": f"{facts['check']} is ok now: stale, no action"}
    if facts["type"] == "unknown" and current.get("kind"):
        # what kind of check it is comes from the minion's answer, not from the event
        facts.update({k: v for k, v in hx_remediation.check_facts(
            facts["check"], current["kind"], _hx(pil, "services", {})).items() if k != "check"})
    if facts.get("service") and "intent" not in current and current["status"] is not None:
        svc_ret, _ = _call(minion, "hx_service.status", [facts["service"]], timeout=pol["recheck_timeout"])
        svc = (svc_ret or {}).get(facts["service"]) or {}
        current.update(proc_state=current.get("proc_state") or svc.get("state"), intent=svc.get("intent"))
    if facts["type"] == "service":
        facts["type"] = "endpoint_failure" if current.get("proc_state") == "running" else "service_down"
    intended = _intended_down(minion, facts, current, signed)
    if intended and not retry:
        return intended
    if retry:
        current["intended"] = intended
        return rec, facts, pil, pol, current, True
    confirmed = current["status"] or status
    inc = _open(d, ev, key, facts, current, confirmed, status, icfg, pillar_errors, signed, now)
    return inc, facts, pil, pol, current, False


def _open(d, ev, key, facts, current, confirmed, status, icfg, pillar_errors, signed, now):
    """A new incident for a confirmed (or unanswered) bad report, stored; returns it."""
    minion, payload = ev["minion"], ev["payload"]
    cls = hx_incidents.classify(facts["type"], confirmed if confirmed in ("warning", "critical") else status,
                                icfg["classification"])
    subject = facts.get("service") or facts.get("resource") or facts["check"]
    summary = (f"{facts['type'].replace('_', ' ')} on {minion}: {subject} "
               f"({current.get('message') or payload.get('message') or confirmed})")
    if current["status"] is None:
        summary += " [minion did not answer the re-check]"
    taken = set(d.store.ids())
    inc = hx_incidents.new_incident(
        hx_incidents.make_id(now, minion, taken), minion, facts["check"], facts["resource"], cls, now,
        summary, first_bad_at=payload.get("since") if isinstance(payload.get("since"), (int, float)) else None,
        dedupe=key,
        status=confirmed, value=current.get("value", payload.get("value")), service=facts.get("service"),
        source=facts["source"], signed=signed,
    )
    inc["escalation_timeout"] = icfg["escalation_timeout"]
    hx_incidents.add_timeline(inc, now, "verification",
                              f"master re-check on {minion}: {current['status'] or 'no answer'} ({current.get('message')})")
    repeat = payload.get("repeat")
    if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat > 0:
        hx_incidents.add_timeline(inc, now, "detection",
                                  f"opened from the beacon's repeat #{repeat}: no incident existed, so the "
                                  "first report of this condition got no reaction on the master")
    d.create(inc, config_errors=pillar_errors)
    return inc


def _after_planned_work(inc, note):
    """The resolution says when planned work (maintenance, a deployment) had held the incident back."""
    return note + ("; planned work had held it back earlier" if inc.get("held_since") else "")


def _cleared_on_retry(d, inc, facts, current, why=None):
    """An incident opened while the minion did not answer, which answers ok (or intended) now."""
    note = _after_planned_work(inc, why or f"condition cleared: the minion answered the re-check ({current.get('message') or 'ok'})")
    try:
        d.resolve(inc["id"], "hx", note)
    except ValueError:
        pass  # resolved meanwhile
    _fire(inc["minion"], "resolved", {"incident": inc["id"], "check": facts["check"]})
    return {"result": True, "outcome": "resolved", "incident": inc["id"], "comment": note}


def _intended_down(minion, facts, current, signed):
    """The answer for a service stopped on purpose: audited, no incident, no action; else None."""
    intent = current.get("intent")
    if not facts.get("service") or not isinstance(intent, dict) or intent.get("want") != hx_intent.DOWN:
        return None
    detail = f"{facts['service']} is {hx_intent.describe(intent)}"
    _audit("remediate.intended", minion, "no action", check=facts["check"], service=facts["service"],
           owner=intent.get("owner"), detail=detail, signed=signed)
    _fire(minion, "intended", {"check": facts["check"], "service": facts["service"], "intent": intent})
    log.info("hx_remediate: %s on %s: %s; no action", facts["check"], minion, detail)
    return {"result": True, "outcome": "intended", "comment": f"{detail}: no action", "intent": intent}


def _joined(opener):
    """Wait for the opening notification (None: the incident was opened, and notified, earlier)."""
    if opener is not None:
        opener.join()


def _act(d, inc, facts, pil, pol, current, opener):
    minion, inc_id = inc["minion"], inc["id"]
    spec = hx_remediation.action_for(pol, facts["type"])
    action = spec["action"]
    if action == "recover" and not facts.get("service"):
        action = "notify"  # nothing declared to restart: people must look
    if action == "notify" or current["status"] is None:
        _joined(opener)
    if current["status"] is None:
        first = not inc.get("unanswered")
        d.update(inc_id, lambda rec: dict(rec, awaiting_answer=True, unanswered=rec.get("unanswered", 0) + 1))
        d.note(inc_id, "suppressed", "no action: the minion did not answer the re-check; "
               "its next report of this condition is checked again")
        # People hear of an unreachable minion once, not at every unanswered retry.
        return _escalate_or_leave(d, inc_id, "minion unreachable", inc["escalate"] and first, "notified")
    if action == "notify":
        d.note(inc_id, "action", "policy: notify only (no automatic action for " + facts["type"] + ")")
        _audit("remediate.notify", minion, "notified", incident=inc_id, check=facts["check"])
        _fire(minion, "notify", {"incident": inc_id, "check": facts["check"]})
        return _escalate_or_leave(d, inc_id, "classification requires people", inc["escalate"], "notified")
    sup = _suppression(minion, facts, pil, pol)
    if sup:
        reason, detail, escalate = sup
        escalate = escalate and inc["escalate"]
        if reason in ("maintenance", "deploy"):
            escalate, detail = _held(d, inc_id, detail, pol["hold_max"])
        return _suppressed(d, inc, action, opener, "suppressed", reason, f"suppressed ({reason}): {detail}",
                           f"remediation suppressed: {detail}", escalate, detail=detail)
    # The blast radius first: a held-back action must not spend the minion's budget.
    slots, refused = _take_rotation(minion, pil, inc_id, action, facts)
    if refused:
        escalate, detail = _held(d, inc_id, refused, pol["hold_max"])
        return _suppressed(d, inc, action, opener, "budget", "blast_radius", f"not run: {detail}",
                           f"remediation held back: {detail}", escalate, detail=detail)
    with slots:
        role = _hx(pil, "role")
        ok, why = _claim_budget(minion, role if isinstance(role, str) else None, pol, time.time(), inc_id)
        if not ok:
            return _suppressed(d, inc, action, opener, "budget", "budget", f"not run: {why}", why, True, detail=why)
        try:
            return _run_action(d, inc_id, minion, facts, spec, action, pol, opener)
        finally:
            _release_active(minion)


def _suppressed(d, inc, action, opener, result, reason, note, why, escalate, **audit):
    """Nothing runs now: the timeline, the audit line (``result``), the event (``reason``), and maybe people."""
    _joined(opener)
    minion, inc_id = inc["minion"], inc["id"]
    d.note(inc_id, "suppressed", f"{action} {note}")
    _audit("remediate.suppress", minion, result, incident=inc_id, action=action, reason=reason, **audit)
    _fire(minion, "suppressed", {"incident": inc_id, "action": action, "reason": reason})
    return _escalate_or_leave(d, inc_id, why, escalate, "suppressed")


def _take_rotation(minion, pil, inc_id, action, facts):
    """Hold ``minion``'s slot in the blast-radius budget of each app it serves: ``(slots, refusal)``.

    A recovery acts on a service found down: its host is out already, so it
    is never refused, but it holds the slot while it works. Any other action
    (a state) may take a serving host out and asks like everyone else.
    """
    apps = _hx(pil, "apps", {}) or {}
    subject = facts.get("service") or facts["check"]
    slots = hx_store.Slots(hx_store.Store(__opts__), "remediate", inc_id, "hx",
                           f"remediation of {minion} ({action} {subject}, incident {inc_id})")
    try:
        for app in sorted(apps) if isinstance(apps, dict) else []:
            try:
                cfg = hx_rotation.app_budget(app, apps[app])
            except ValueError as exc:
                log.warning("hx_remediate: no blast-radius budget for %s on %s: %s", app, minion, exc)
                continue
            if minion not in cfg["hosts"]:
                continue
            decision = slots.ask(app, minion, cfg["max_out"], {minion} if action == "recover" else ())
            if not decision["granted"]:
                slots.__exit__(None, None, None)
                return None, hx_rotation.refusal(app, minion, decision)
    except BaseException:
        # A slot already granted for another app would otherwise be renewed by its heartbeat for good.
        slots.__exit__(None, None, None)
        raise
    return slots, None


def _held(d, inc_id, detail, hold_max):
    """Planned work holds the incident back: ``(escalate, detail)``.

    The minion's next report of the condition is judged again (the work may
    have moved on); past ``hold_max`` people are told, once.
    """
    now = time.time()
    rec = d.update(inc_id, lambda r: dict(r, awaiting_answer=True, held_since=r.get("held_since") or now))
    over = hx_remediation.held_too_long(rec["held_since"], now, hold_max)
    if not over or rec.get("hold_escalated"):
        return False, detail
    d.update(inc_id, lambda r: dict(r, hold_escalated=True))
    return True, f"{detail}; {over}"


def _escalate_or_leave(d, inc_id, reason, escalate, outcome):
    if escalate:
        try:
            inc = d.escalate(inc_id, reason)
            return {"result": True, "outcome": "escalated", "incident": inc_id, "level": inc["level"], "comment": reason}
        except ValueError as exc:
            return {"result": True, "outcome": outcome, "incident": inc_id, "comment": str(exc)}
    return {"result": True, "outcome": outcome, "incident": inc_id, "comment": reason}


def _run_action(d, inc_id, minion, facts, spec, action, pol, opener):
    d.move(inc_id, "remediating", note=f"{action} {facts.get('service') or spec.get('sls')}")
    _fire(minion, action, {"incident": inc_id, "check": facts["check"], "phase": "start"})
    started = time.monotonic()
    if action == "recover":
        ret, err = _call(minion, "hx_service.recover", [facts["service"]], timeout=pol["action_timeout"])
        outcome = (ret or {}).get("outcome") if isinstance(ret, dict) else None
        detail = err or f"hx_service.recover {facts['service']}: {outcome} after {ret.get('attempts')} restart(s)"
        if isinstance(ret, dict) and ret.get("quarantine"):
            detail += f"; quarantined ({ret['quarantine'].get('reason')}: {ret['quarantine'].get('detail')})"
        acted_ok = outcome in ("recovered", "already_healthy")
    else:
        ret, err = _call(minion, "state.apply", [spec["sls"]], timeout=pol["action_timeout"])
        states = ret if isinstance(ret, dict) else {}
        failed = [k for k, v in states.items() if isinstance(v, dict) and v.get("result") is False]
        changed = sum(1 for v in states.values() if isinstance(v, dict) and v.get("changes"))
        outcome = "failed" if err or failed or not states else "applied"
        detail = err or f"state.apply {spec['sls']}: {len(states)} state(s), {changed} changed, {len(failed)} failed"
        acted_ok = outcome == "applied"
    ms = int((time.monotonic() - started) * 1000)
    _joined(opener)
    d.note(inc_id, "action", detail, action=action, outcome=outcome, ms=ms)
    _audit(f"remediate.{action}", minion, outcome or "error", incident=inc_id, check=facts["check"],
           service=facts.get("service"), sls=spec.get("sls"), ms=ms, error=err)
    # Verify from the master, whatever the action said.
    after = _recheck(minion, facts, {}, pol["recheck_timeout"])
    healthy = after["status"] == "ok"
    d.note(inc_id, "verification", f"after {action}: {after['status'] or 'no answer'} ({after.get('message')})")
    _fire(minion, action, {"incident": inc_id, "check": facts["check"], "phase": "done", "outcome": outcome,
                           "healthy": healthy, "ms": ms})
    if healthy and acted_ok:
        try:
            d.resolve(inc_id, "hx", _after_planned_work(d.store.get(inc_id) or {}, f"remediated: {action} {outcome}, verified ok"))
        except ValueError:
            pass
        return {"result": True, "outcome": "remediated", "incident": inc_id, "action": action, "detail": detail, "ms": ms}
    try:
        d.move(inc_id, "open", note="remediation did not fix it")
    except ValueError:
        pass
    res = _escalate_or_leave(d, inc_id, f"{action} did not fix it: {detail}", True, "failed")
    res.update(action=action, detail=detail)
    return res


# -- operator switches ------------------------------------------------------------


def disable(reason=None, by=None):
    """
    Global kill switch: no automatic remediation anywhere until ``enable``.
    Incidents are still opened, suppressed actions recorded and escalated.

    CLI Example:

    .. code-block:: bash

        salt-run hx_remediate.disable reason='storage migration'
    """
    try:
        who = hx_runner.who(by)
        reason = hx_typed.operator_text("reason", reason, 1024)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    rec = {"enabled": False, "reason": reason or "no reason given", "by": who, "at": time.time()}
    _cache().store(SWITCH_BANK, "switch", rec)
    hx_audit.write(__opts__, who, "remediate.disable", "*", "disabled", reason=rec["reason"])
    return {"result": True, "comment": f"automatic remediation disabled by {who}", "switch": rec}


def enable(by=None):
    """
    Lift the kill switch set by ``disable``.

    CLI Example:

    .. code-block:: bash

        salt-run hx_remediate.enable
    """
    try:
        who = hx_runner.who(by)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    _cache().flush(SWITCH_BANK, "switch")
    hx_audit.write(__opts__, who, "remediate.enable", "*", "enabled")
    return {"result": True, "comment": f"automatic remediation enabled by {who}"}


def release(minion, by=None):
    """
    Give ``minion`` a fresh master-side remediation budget (the per-minion
    count of ``hx_remediation:budget:minion``), once a person has dealt with
    what spent it. The minion's own restart budget and quarantine are
    ``hx_service.release`` on the minion.

    CLI Example:

    .. code-block:: bash

        salt-run hx_remediate.release minion=app1
    """
    try:
        # The id is a cache key: "../x" would remove a file outside the bank.
        minion = hx_typed.minion_id("minion", minion)
        who = hx_runner.who(by)
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": str(exc)})
    with hx_audit.lock(__opts__, "remediate-budget"):
        stamps = (_cache().fetch(BUDGET_BANK, minion) or {}).get("stamps", [])
        _cache().flush(BUDGET_BANK, minion)
    hx_audit.write(__opts__, who, "remediate.release", minion, "released", spent=len(stamps))
    return {"result": True, "comment": f"remediation budget of {minion} reset by {who} ({len(stamps)} remediation(s) forgotten)",
            "released": len(stamps)}


def status():
    """
    The kill switch, the effective master policy, remediations in flight and budgets used.

    CLI Example:

    .. code-block:: bash

        salt-run hx_remediate.status
    """
    cache = _cache()
    try:
        pol = hx_remediation.policy(*hx_audit.config_layers(__opts__, "hx_remediation"))
    except ValueError as exc:
        return hx_runner.finish(__context__, {"result": False, "comment": f"bad configuration: {exc}"})
    now = time.time()
    budgets = {}
    for mid in cache.list(BUDGET_BANK) or []:
        stamps = (cache.fetch(BUDGET_BANK, mid) or {}).get("stamps", [])
        budgets[mid] = hx_remediation.minion_budget(stamps, now, pol["budget"]["minion"])
    return {
        "result": True,
        "enabled": pol["enabled"] and _switch().get("enabled", True) is not False,
        "switch": _switch() or None,
        "active": {m: cache.fetch(ACTIVE_BANK, m) for m in cache.list(ACTIVE_BANK) or []},
        "budgets": budgets,
        "policy": copy.deepcopy(pol),
    }
