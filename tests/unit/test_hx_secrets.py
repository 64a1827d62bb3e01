"""The one redaction point: every form of a configured secret, in texts, errors, records and log lines."""
import base64
import json
import logging
import urllib.parse

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_notify
import hx_secrets as s

SLACK = "https://hooks.slack.test/services/T0ABC123/B0DEF456/Xq9sEcReTtOkEn42"
PD_KEY = "R0UT1NGKEYR0UT1NGKEYR0UT1NGKEY01"
AM = "http://hx:Am-PassW0rd@alertmanager.test:9093"
HOOK = "https://hooks.test/notify/abc?token=T0k3n-Sup3r&team=ops"
CHANNELS = hx_notify.parse_channels({
    "slack": {"kind": "slack", "url": SLACK},
    "pd": {"kind": "pagerduty", "routing_key": PD_KEY},
    "am": {"kind": "alertmanager", "url": AM},
    "hook": {"kind": "alertmanager", "url": HOOK},
})
SECRETS = s.collect(CHANNELS)
# What must never be readable, in every shape the channels above can leak it.
CORE = ["Xq9sEcReTtOkEn42", PD_KEY, "Am-PassW0rd", "T0k3n-Sup3r", "T0ABC123/B0DEF456"]


def leaks(text):
    return [c for c in CORE if c in text]


@pytest.mark.parametrize("text", [
    f"POST {SLACK} failed",
    "Max retries exceeded with url: /services/T0ABC123/B0DEF456/Xq9sEcReTtOkEn42 (Caused by ...)",
    "url: /T0ABC123/B0DEF456/Xq9sEcReTtOkEn42",  # the path cut on the left
    "B0DEF456/Xq9sEcReTtOkEn42 and Xq9sEcReTtOkEn42 alone",
    f"echo: {json.dumps({'routing_key': PD_KEY})}",
    "url: /notify/abc?token=T0k3n-Sup3r&team=ops",
    "token=T0k3n-Sup3r",
    f"GET {urllib.parse.quote(SLACK, safe='')}",
    "path %2fservices%2fT0ABC123%2fB0DEF456%2fXq9sEcReTtOkEn42",  # lowercase escapes
    f"Authorization: Basic {base64.b64encode(b'hx:Am-PassW0rd').decode()}",
    "connecting to hx:Am-PassW0rd@alertmanager.test",
])
def test_every_form_of_a_configured_secret_is_replaced(text):
    out = SECRETS.scrub(text)
    assert s.PLACEHOLDER in out
    assert not leaks(out), out
    if "Authorization" in text:
        assert base64.b64encode(b"hx:Am-PassW0rd").decode() not in out


def test_routes_and_plain_words_are_left_readable():
    text = "stopping services on app1; alerts sent to pd; api v2; notify abc"
    assert SECRETS.scrub(text) == text
    assert s.looks_secret("Xq9sEcReTtOkEn42") and s.looks_secret("T0ABC123/B0DEF456")
    assert not s.looks_secret("services") and not s.looks_secret("hooks/services") and not s.looks_secret("T0")
    assert s.looks_secret("mysecrettopicname"), "a long segment is key material even in lowercase (ntfy topics)"


def test_without_secrets_nothing_changes_and_repr_shows_no_value():
    assert s.NONE.scrub("anything /services/x") == "anything /services/x"
    assert not s.NONE and SECRETS
    assert "Xq9s" not in repr(SECRETS) and PD_KEY not in repr(SECRETS)


def test_scrub_obj_walks_records_keys_included():
    rec = {"summary": f"to {SLACK}", "timeline": [{"text": f"key {PD_KEY}"}], PD_KEY: 1, "n": 3, "t": (f"x{PD_KEY}",)}
    out = SECRETS.scrub_obj(rec)
    assert not leaks(json.dumps(out, default=str)) and out["n"] == 3 and isinstance(out["t"], tuple)
    assert rec["summary"].endswith(SLACK), "the input is not changed"


@pytest.fixture
def refused_port():
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_real_requests_connection_error_keeps_only_the_host(refused_port):
    url = f"http://127.0.0.1:{refused_port}/services/T0ABC123/B0DEF456/Xq9sEcReTtOkEn42?token=T0k3n-Sup3r"
    secrets = s.collect({"x": {"kind": "slack", "url": url}})
    with pytest.raises(requests.ConnectionError) as err:
        requests.post(url, json={}, timeout=2)
    assert "Xq9sEcReTtOkEn42" in str(err.value), "the premise: requests puts the path in its error"
    text = secrets.error(err.value)
    assert text.startswith("ConnectionError: ") and f"port={refused_port}" in text
    assert "Xq9sEcReTtOkEn42" not in text and "T0k3n-Sup3r" not in text and "T0ABC123" not in text


class Answer:
    def __init__(self, status, text):
        self.status_code, self.text = status, text


def test_an_http_error_body_echoing_the_request_is_scrubbed():
    body = json.dumps({"error": "bad", "got": {"routing_key": PD_KEY, "path": "/services/T0ABC123/B0DEF456/Xq9sEcReTtOkEn42"}})
    text = SECRETS.response_text(Answer(500, body))
    assert text.startswith("HTTP 500: ") and "bad" in text and not leaks(text)
    exc = requests.HTTPError(f"500 Server Error for url: {SLACK}", response=Answer(500, body))
    text = SECRETS.error(exc)
    assert text.startswith("HTTPError: ") and "HTTP 500" in text and not leaks(text)


def test_a_secret_is_scrubbed_before_the_text_is_cut():
    body = "x" * 190 + PD_KEY + "y" * 100
    text = SECRETS.response_text(Answer(502, body))
    assert PD_KEY[:8] not in text and len(text) <= 300
    long = SECRETS.error(RuntimeError("z" * 280 + PD_KEY))
    assert len(long) <= 300 and PD_KEY[:5] not in long


def test_url_for_a_log_line():
    assert SECRETS.url(SLACK) == "https://hooks.slack.test/***"
    assert SECRETS.url(AM + "/api/v2/alerts") == "http://alertmanager.test:9093/***"
    assert s.NONE.url("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


def test_collect_layers_takes_unvalidated_channels_of_every_layer():
    layers = [{"channels": {"a": {"kind": "slack", "url": SLACK}}}, None,
              {"channels": {"b": {"kind": "bogus", "api_token": "Zz-9-tok3n", "url": 5}}}]
    secrets = s.collect_layers(layers)
    assert secrets.scrub(f"{SLACK} Zz-9-tok3n") == "*** ***"


def test_log_scrubber_rewrites_records_of_the_named_loggers(caplog):
    name = "hx.test.urllib3"
    s.scrub_logs(SECRETS, [name])
    try:
        with caplog.at_level(logging.DEBUG, logger=name):
            logging.getLogger(name).debug('%s://%s:%s "%s %s %s" %s %s', "https", "hooks.slack.test", 443, "POST",
                                          "/services/T0ABC123/B0DEF456/Xq9sEcReTtOkEn42", "HTTP/1.1", 500, 12)
        assert caplog.records and not leaks(caplog.text), caplog.text
        assert '"POST *** HTTP/1.1" 500' in caplog.text
    finally:
        s.scrub_logs(s.NONE, [])


def test_deliver_failure_texts_hold_no_secret():
    def refuse(url, json, timeout):  # pylint: disable=redefined-outer-name,unused-argument
        raise requests.ConnectionError(f"HTTPConnectionPool(host='hooks.slack.test', port=443): Max retries exceeded "
                                       f"with url: {urllib.parse.urlsplit(url).path}")

    res = hx_notify.deliver(refuse, SLACK, {}, hx_notify.parse_delivery({"retries": 0}), lambda x: None, SECRETS)
    assert not res["ok"] and res["error"].startswith("ConnectionError: ") and not leaks(res["error"])

    def echo(url, json, timeout):  # pylint: disable=redefined-outer-name,unused-argument
        return Answer(500, __import__("json").dumps({"echo": json, "path": urllib.parse.urlsplit(url).path}))

    res = hx_notify.deliver(echo, "https://events.pagerduty.test/v2/enqueue", {"routing_key": PD_KEY},
                            hx_notify.parse_delivery({"retries": 1, "backoff": 0}), lambda x: None, SECRETS)
    assert res["attempts"] == 2 and res["error"].startswith("HTTP 500: ") and not leaks(res["error"])


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=200, deadline=None)
@given(st.text(ALPHABET, min_size=16, max_size=40), st.text(min_size=0, max_size=60), st.text(min_size=0, max_size=60))
def test_a_webhook_key_never_survives_in_any_surrounding_text(key, before, after):
    url = f"https://hooks.example.test/services/{key}"
    secrets = s.collect({"w": {"kind": "slack", "url": url}})
    for shown in (key, f"/services/{key}", url, urllib.parse.quote(url, safe="")):
        assert key not in secrets.scrub(before + shown + after).replace(s.PLACEHOLDER, "\0")
