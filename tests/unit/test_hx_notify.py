"""Notification payloads and delivery (retry, backoff, redaction) without a network."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_incidents as h
import hx_notify as n

T0 = 1_700_000_000.0


def inc(status="open", severity="critical"):
    rule = [{"type": "*", "severity": severity}]
    rec = h.new_incident("INC-1700000000-web1", "web1", "app_http", "app", h.classify("service_down", "critical", rule),
                         T0, "service down on web1: app", status="critical")
    rec["status"] = status
    return rec


class Resp:
    def __init__(self, status, headers=None):
        self.status_code = status
        self.headers = headers or {}


def poster(*answers):
    calls = []

    def post(url, json, timeout):
        calls.append({"url": url, "json": json, "timeout": timeout})
        answer = answers[min(len(calls), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return Resp(*answer) if isinstance(answer, tuple) else Resp(answer)

    return post, calls


DELIVERY = n.parse_delivery({"retries": 3, "backoff": 0.5})


# -- payloads -------------------------------------------------------------------


def test_pagerduty_trigger_ack_resolve_share_the_dedup_key():
    trig = n.pagerduty(inc(), "trigger", "RK", T0)
    assert trig["event_action"] == "trigger" and trig["dedup_key"] == "INC-1700000000-web1"
    assert trig["routing_key"] == "RK"
    p = trig["payload"]
    assert (p["severity"], p["source"], p["timestamp"]) == ("critical", "web1", "2023-11-14T22:13:20.000Z")
    assert len(p["summary"]) <= 1024
    for action in ("acknowledge", "resolve"):
        body = n.pagerduty(inc(), action, "RK", T0)
        assert body == {"routing_key": "RK", "event_action": action, "dedup_key": "INC-1700000000-web1"}
    with pytest.raises(ValueError):
        n.pagerduty(inc(), "snooze", "RK", T0)


@pytest.mark.parametrize("severity, pd", [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info")])
def test_pagerduty_severity_mapping(severity, pd):
    assert n.pagerduty(inc(severity=severity), "trigger", "RK", T0)["payload"]["severity"] == pd


def test_alertmanager_v2_body():
    firing = n.alertmanager(inc(), T0 + 10)
    assert isinstance(firing, list) and len(firing) == 1
    alert = firing[0]
    assert set(alert) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert alert["labels"]["alertname"] == "hx_service_down" and alert["labels"]["incident"] == "INC-1700000000-web1"
    assert alert["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert alert["endsAt"] == n.iso(T0 + 10 + 3600)  # firing: expires unless refreshed
    resolved = n.alertmanager(inc("resolved"), T0 + 20, resolved=True)[0]
    assert resolved["endsAt"] == n.iso(T0 + 20)


def test_build_routes_each_event_per_channel():
    chans = n.parse_channels({
        "pd": {"kind": "pagerduty", "routing_key": "RK"},
        "am": {"kind": "alertmanager", "url": "http://am:9093"},
        "sl": {"kind": "slack", "url": "https://hooks.slack.test/services/T/B/X", "channel": "#ops"},
    })
    assert chans["pd"]["url"] == n.PD_DEFAULT_URL
    assert n.build(chans["pd"], inc(), "open", T0)[1]["event_action"] == "trigger"
    assert n.build(chans["pd"], inc(), "escalated", T0)[1]["event_action"] == "trigger"
    assert n.build(chans["pd"], inc(), "resolved", T0)[1]["event_action"] == "resolve"
    url, body = n.build(chans["am"], inc(), "open", T0)
    assert url == "http://am:9093/api/v2/alerts"
    assert n.build(chans["am"], inc(), "acknowledged", T0) is None
    url, body = n.build(chans["sl"], inc(), "escalated", T0)
    assert body["channel"] == "#ops" and body["blocks"][0]["type"] == "header"
    assert "INC-1700000000-web1" in body["text"]


@pytest.mark.parametrize(
    "channels, match",
    [
        ({"x": {"kind": "email", "url": "http://a"}}, "kind must be one of"),
        ({"pd": {"kind": "pagerduty"}}, "routing_key is required"),
        ({"am": {"kind": "alertmanager", "url": "ftp://x"}}, "url must be an http"),
        ({"sl": {"kind": "slack", "url": "https://h", "token": "t"}}, "unknown key 'token'"),
    ],
)
def test_bad_channels_name_channel_and_key(channels, match):
    with pytest.raises(ValueError, match=match):
        n.parse_channels(channels)


# -- delivery ----------------------------------------------------------------------


def test_retries_5xx_and_429_with_exponential_backoff():
    post, calls = poster(500, 429, 202)
    sleeps = []
    res = n.deliver(post, "http://x", {"a": 1}, DELIVERY, sleeps.append)
    assert res == {"ok": True, "status": 202, "attempts": 3, "error": None}
    assert sleeps == [0.5, 1.0] and all(c["timeout"] == 5.0 for c in calls)


def test_retry_after_is_honoured_and_capped():
    post, _ = poster((429, {"Retry-After": "3"}), (429, {"Retry-After": "999"}), 200)
    sleeps = []
    n.deliver(post, "u", {}, DELIVERY, sleeps.append)
    assert sleeps == [3.0, DELIVERY["max_backoff"]]


def test_4xx_is_not_retried():
    post, calls = poster(400)
    res = n.deliver(post, "u", {}, DELIVERY, lambda s: None)
    assert (res["ok"], res["attempts"], res["error"]) == (False, 1, "HTTP 400") and len(calls) == 1


def test_network_errors_are_retried_then_reported_without_secrets():
    post, calls = poster(ConnectionError("POST https://hooks.slack.test/services/T/B/SECRET refused; key=RK-123"))
    res = n.deliver(post, "u", {}, DELIVERY, lambda s: None, secrets=["https://hooks.slack.test/services/T/B/SECRET", "RK-123"])
    assert not res["ok"] and res["attempts"] == 4 and len(calls) == 4
    assert "SECRET" not in res["error"] and "RK-123" not in res["error"] and "***" in res["error"]


def test_secrets_of_channels():
    chans = n.parse_channels({"pd": {"kind": "pagerduty", "routing_key": "RK-0123456", "url": "https://pd.test/v2"},
                              "sl": {"kind": "slack", "url": "https://hooks/T0/SECRETHOOK1"}})
    secrets = n.secrets_of(chans)
    text = secrets.scrub("key RK-0123456 at https://pd.test/v2, url: /T0/SECRETHOOK1 or SECRETHOOK1")
    assert text == "key *** at ***, url: *** or ***"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([200, 202, 400, 429, 500, 503]), min_size=1, max_size=6), st.integers(0, 4))
def test_attempts_never_exceed_retries_plus_one(answers, retries):
    post, calls = poster(*answers)
    res = n.deliver(post, "u", {}, n.parse_delivery({"retries": retries, "backoff": 0}), lambda s: None)
    assert 1 <= res["attempts"] == len(calls) <= retries + 1
    if res["ok"]:
        assert 200 <= res["status"] < 300
