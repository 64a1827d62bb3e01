"""Pure nginx upstream-file logic: parse/render round trip, weight 0 as down, names, errors."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_nginx

FILE = """\
upstream demo {
    server 127.0.0.11:8080 weight=100 max_fails=3; # hx:app1_blue
    server 127.0.0.11:8081 down; # hx:app1_green w=0
    server 127.0.0.12:8080 weight=100;
    server 127.0.0.12:8081 weight=5 down; # hx:app2_green w=5 state=drain
    keepalive 16;
}

upstream api {
    server 127.0.0.11:9080;   # hx:api1
}
"""
NAMES = {"app2_blue": "127.0.0.12:8080"}


def test_parse_names_weights_states_params():
    up = hx_nginx.parse(FILE, NAMES)
    demo = up["demo"]["servers"]
    assert list(demo) == ["app1_blue", "app1_green", "app2_blue", "app2_green"]
    assert demo["app1_blue"] == {"addr": "127.0.0.11:8080", "weight": 100, "state": "ready", "params": ["max_fails=3"]}
    assert demo["app1_green"]["weight"] == 0 and demo["app1_green"]["state"] == "ready"
    assert demo["app2_blue"]["weight"] == 100  # named through the pillar mapping
    assert demo["app2_green"] == {"addr": "127.0.0.12:8081", "weight": 5, "state": "drain", "params": []}
    assert up["demo"]["directives"] == ["keepalive 16;"]
    assert up["api"]["servers"]["api1"]["weight"] == 1  # nginx's default weight


def test_down_without_hx_comment_is_maint():
    up = hx_nginx.parse("upstream u {\n server 1.2.3.4:80 weight=3 down;\n}\n", {"s": "1.2.3.4:80"})
    assert up["u"]["servers"]["s"] == {"addr": "1.2.3.4:80", "weight": 3, "state": "maint", "params": []}


def test_render_weight_zero_and_not_ready_as_down():
    up = hx_nginx.parse(FILE, NAMES)
    text = hx_nginx.render(up)
    lines = text.splitlines()
    assert "    server 127.0.0.11:8080 weight=100 max_fails=3; # hx:app1_blue w=100" in lines
    assert "    server 127.0.0.11:8081 down; # hx:app1_green w=0" in lines  # nginx has no weight=0
    assert "    server 127.0.0.12:8081 weight=5 down; # hx:app2_green w=5 state=drain" in lines
    assert "    keepalive 16;" in lines
    assert hx_nginx.parse(text) == up  # round trip, names now in the comments


def test_set_weights_and_state():
    up = hx_nginx.parse(FILE, NAMES)
    new = hx_nginx.set_weights(up, "demo", {"app1_blue": 0, "app1_green": 100, "app2_green": 50})
    srv = new["demo"]["servers"]
    assert srv["app1_blue"]["weight"] == 0 and srv["app1_green"]["weight"] == 100
    assert srv["app2_green"]["state"] == "ready"  # weight on a drained server would carry nothing
    assert up["demo"]["servers"]["app1_blue"]["weight"] == 100  # input untouched
    drained = hx_nginx.set_state(new, "demo", "app1_green", "maint")
    assert "weight=100 down; # hx:app1_green w=100 state=maint" in hx_nginx.render(drained)


def test_effective_ignores_comments_only():
    up = hx_nginx.parse(FILE, NAMES)
    a = hx_nginx.render(hx_nginx.set_state(up, "demo", "app1_green", "drain"))
    b = hx_nginx.render(hx_nginx.set_state(up, "demo", "app1_green", "maint"))
    assert a != b and hx_nginx.effective(a) == hx_nginx.effective(b)
    assert hx_nginx.effective(a) != hx_nginx.effective(hx_nginx.render(up).replace("weight=100 max", "weight=9 max"))


@pytest.mark.parametrize("text, match", [
    ("upstream u {\n server 1.2.3.4:80;\n}\n", "line 2: server 1.2.3.4:80 has no '# hx:<name>' comment"),
    ("server 1.2.3.4:80; # hx:a\n", "line 1: outside an upstream block"),
    ("upstream u {\n server 1.2.3.4:80; # hx:a\n", "unterminated upstream block"),
    ("upstream u {\n upstream v {\n", "line 2: nested upstream block"),
    ("upstream u {\n keepalive 16\n}\n", "line 2: one statement per line"),
    ("upstream u {\n server 1.2.3.4:80; # hx:a\n server 1.2.3.5:80; # hx:a\n}\n", "line 3: server name 'a' used twice"),
])
def test_parse_errors_name_the_line(text, match):
    with pytest.raises(ValueError, match=match):
        hx_nginx.parse(text)


@pytest.mark.parametrize("call, match", [
    (lambda up: hx_nginx.set_weights(up, "nope", {"a": 1}), "backend: 'nope' is not an upstream"),
    (lambda up: hx_nginx.set_weights(up, "demo", {"zz": 1}), "server: not in upstream demo: zz"),
    (lambda up: hx_nginx.set_weights(up, "demo", {"app1_blue": 257}), "weights:app1_blue"),
    (lambda up: hx_nginx.set_state(up, "demo", "zz", "drain"), "server: 'zz' not in upstream demo"),
    (lambda up: hx_nginx.set_state(up, "demo", "app1_blue", "off"), "state: must be one of"),
])
def test_change_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(hx_nginx.parse(FILE, NAMES))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["s1", "s2", "s3"]),
                       st.tuples(st.integers(0, 256), st.sampled_from(["ready", "drain", "maint"])), min_size=1))
def test_round_trip_property(servers):
    up = {"u": {"servers": {name: {"addr": f"127.0.0.{i + 1}:80", "weight": w, "state": s, "params": []}
                            for i, (name, (w, s)) in enumerate(servers.items())},
                "directives": []}}
    text = hx_nginx.render(up)
    assert hx_nginx.parse(text) == up
    for line in text.splitlines():
        if "server " in line:
            assert "weight=0" not in line  # nginx rejects it
