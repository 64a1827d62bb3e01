"""Notification payloads (Slack, PagerDuty Events v2, Alertmanager v4) and delivery with retries.

Payload builders are pure. :func:`deliver` takes the HTTP ``post`` callable
and a ``sleep`` so retry/backoff is testable without a network. Secrets (a
Slack webhook URL is itself a secret, a PagerDuty routing key) never leave
this module in an error text: every error becomes text through
``hx_secrets.Secrets`` (the channels' secrets, :func:`secrets_of`).
"""
import datetime
import re

import hx_secrets

CHANNEL_KINDS = ("slack", "pagerduty", "alertmanager")
PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
RETRY_STATUS = {429} | set(range(500, 600))
DEFAULT_DELIVERY = {"timeout": 5.0, "retries": 3, "backoff": 0.5, "max_backoff": 10.0}
CHANNEL_KEYS = {
    "slack": {"kind", "url", "channel"},
    "pagerduty": {"kind", "url", "routing_key"},
    "alertmanager": {"kind", "url", "generator_url", "firing_ttl"},
}
PD_DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"


def iso(ts):
    """RFC 3339 UTC with milliseconds, as Alertmanager and PagerDuty expect."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_channels(channels, what="hx_incident:channels"):
    """``{name: {kind, url, ...}}`` validated; ValueError names the channel and key."""
    if channels is None:
        return {}
    if not isinstance(channels, dict):
        raise ValueError(f"{what} must be a mapping of channel name to settings")
    out = {}
    for name, cfg in channels.items():
        where = f"{what}:{name}"
        if not isinstance(cfg, dict):
            raise ValueError(f"{where} must be a mapping")
        kind = cfg.get("kind", name)
        if kind not in CHANNEL_KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(CHANNEL_KINDS)}, got {kind!r}")
        unknown = sorted(set(cfg) - CHANNEL_KEYS[kind])
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}")
        url = cfg.get("url", PD_DEFAULT_URL if kind == "pagerduty" else None)
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"{where}: url must be an http(s) URL")
        if kind == "pagerduty" and not isinstance(cfg.get("routing_key"), str):
            raise ValueError(f"{where}: routing_key is required")
        out[name] = dict(cfg, kind=kind, url=url)
    return out


def secrets_of(channels):
    """The :class:`hx_secrets.Secrets` of parsed channels (URLs, their paths and queries, routing keys)."""
    return hx_secrets.collect(channels)


def _headline(inc, event):
    return f"[{inc['priority']}] {inc['id']} {event}: {inc['summary']}"


def slack(inc, event, channel_cfg=None):
    """Slack incoming-webhook body with blocks (and ``text`` as the fallback)."""
    emoji = {"resolved": ":white_check_mark:", "acknowledged": ":eyes:"}.get(event, ":rotating_light:")
    fields = [
        {"type": "mrkdwn", "text": f"*Minion*\n{inc['minion']}"},
        {"type": "mrkdwn", "text": f"*Check*\n{inc['check']}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{inc['severity']} ({inc['priority']})"},
        {"type": "mrkdwn", "text": f"*Status*\n{inc['status']}" + (f" L{inc['level']}" if inc.get("level") else "")},
    ]
    body = {
        "text": f"{emoji} {_headline(inc, event)}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": f"{inc['id']} {event}"[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} {inc['summary']}"}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"`salt-run hx_incident.show {inc['id']}` · repeats {inc['repeats']}"}
            ]},
        ],
    }
    if channel_cfg and channel_cfg.get("channel"):
        body["channel"] = channel_cfg["channel"]
    return body


def pagerduty(inc, action, routing_key, now):
    """PagerDuty Events API v2; trigger/acknowledge/resolve share ``dedup_key`` = incident id."""
    if action not in PD_ACTIONS:
        raise ValueError(f"PagerDuty event_action must be one of {PD_ACTIONS}, got {action!r}")
    body = {"routing_key": routing_key, "event_action": action, "dedup_key": inc["id"]}
    if action == "trigger":
        body["payload"] = {
            "summary": _headline(inc, "open")[:1024],
            "source": inc["minion"],
            "severity": PD_SEVERITY[inc["severity"]],
            "timestamp": iso(inc["opened_at"]),
            "component": inc.get("resource") or inc["check"],
            "group": inc["minion"],
            "class": inc["type"],
            "custom_details": {
                "incident": inc["id"], "check": inc["check"], "priority": inc["priority"],
                "status": inc["status"], "level": inc.get("level", 0), "repeats": inc["repeats"],
                "at": iso(now),
            },
        }
    return body


def alertmanager(inc, now, resolved=False, generator_url=None, firing_ttl=3600):
    """Alertmanager API v2 body (what Prometheus POSTs to ``/api/v2/alerts``).

    A firing alert carries ``endsAt`` = now + ``firing_ttl`` (as Prometheus
    does, so a lost resolve still expires); a resolved one ends now.
    """
    return [
        {
            "labels": {
                "alertname": f"hx_{inc['type']}",
                "instance": inc["minion"],
                "check": inc["check"],
                "severity": inc["severity"],
                "priority": inc["priority"],
                "incident": inc["id"],
            },
            "annotations": {
                "summary": inc["summary"],
                "description": f"{inc['id']} is {inc['status']} (repeats {inc['repeats']}, level {inc.get('level', 0)})",
            },
            "startsAt": iso(inc["opened_at"]),
            "endsAt": iso(now if resolved else now + firing_ttl),
            "generatorURL": generator_url or f"salt://hx_incident.show/{inc['id']}",
        }
    ]


def build(channel_cfg, inc, event, now):
    """``(url, body)`` for one channel and an incident event.

    ``event``: open | escalated | acknowledged | resolved. Returns None when the
    channel has nothing to say about the event.
    """
    kind = channel_cfg["kind"]
    if kind == "slack":
        return channel_cfg["url"], slack(inc, event, channel_cfg)
    if kind == "pagerduty":
        action = {"open": "trigger", "escalated": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}[event]
        return channel_cfg["url"], pagerduty(inc, action, channel_cfg["routing_key"], now)
    url = channel_cfg["url"].rstrip("/")
    if not url.endswith("/api/v2/alerts"):
        url += "/api/v2/alerts"
    if event == "acknowledged":
        return None  # Alertmanager has no acknowledge; silences are a person's call
    return url, alertmanager(inc, now, resolved=event == "resolved",
                             generator_url=channel_cfg.get("generator_url"),
                             firing_ttl=channel_cfg.get("firing_ttl", 3600))


def parse_delivery(cfg):
    out = dict(DEFAULT_DELIVERY)
    for key, value in (cfg or {}).items():
        if key not in DEFAULT_DELIVERY:
            raise ValueError(f"hx_incident:delivery: unknown key {key!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"hx_incident:delivery:{key} must be a number >= 0")
        out[key] = value
    out["retries"] = int(out["retries"])
    return out


def _retry_after(headers):
    try:
        return float((headers or {}).get("Retry-After"))
    except (TypeError, ValueError):
        return None


def deliver(post, url, body, delivery, sleep, secrets=hx_secrets.NONE):
    """POST ``body`` as JSON; retry 429/5xx/network errors with exponential backoff.

    ``post(url, json=, timeout=)`` returns an object with ``status_code`` and
    ``headers`` (and ``text``) or raises. Returns ``{"ok", "status",
    "attempts", "error"}``; the error is made text by ``secrets``
    (:class:`hx_secrets.Secrets`), so neither the URL, nor its path, nor a
    key the receiver echoes in its answer reaches the caller.
    """
    if not isinstance(secrets, hx_secrets.Secrets):
        secrets = hx_secrets.Secrets(secrets)
    attempts, status, error = 0, None, None
    delay = delivery["backoff"]
    for attempt in range(delivery["retries"] + 1):
        attempts = attempt + 1
        retry_after = None
        try:
            resp = post(url, json=body, timeout=delivery["timeout"])
            status = resp.status_code
            if 200 <= status < 300:
                return {"ok": True, "status": status, "attempts": attempts, "error": None}
            error = secrets.response_text(resp)
            if status not in RETRY_STATUS:
                break  # 4xx: the payload or the key is wrong, retrying will not help
            retry_after = _retry_after(getattr(resp, "headers", None))
        except Exception as exc:  # pylint: disable=broad-except
            status, error = None, secrets.error(exc)
        if attempt < delivery["retries"]:
            wait = min(delivery["max_backoff"], retry_after if retry_after is not None else delay)
            sleep(wait)
            delay *= 2
    return {"ok": False, "status": status, "attempts": attempts, "error": error}
