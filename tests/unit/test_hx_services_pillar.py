"""hx:services pillar validation: every error names the service and the key."""

import pytest

import hx_services as v


def test_minimal_service_gets_defaults():
    svc = v.validate_services({"demo-blue": None})["demo-blue"]
    assert svc == {
        "name": "demo-blue", "provider": None, "program": "demo-blue", "unit": "demo-blue",
        "supervisor_conf": None, "bin_env": None, "reload_signal": None,
        "stop_timeout": 10.0, "start_timeout": 30.0, "requires": [], "health": [],
        "traffic": None, "budget": None, "flap": None,
    }


def test_full_service():
    out = v.validate_services({
        "db": {"provider": "systemd", "unit": "postgresql"},
        "demo-blue": {
            "provider": "supervisord", "program": "demo_blue", "supervisor_conf": "/etc/sv.conf",
            "requires": ["db"], "health": "blue_http, blue_tcp", "stop_timeout": 20,
            "traffic": {"backend": "app", "server": "blue"},
            "budget": {"max": 5, "window": 600}, "flap": {"count": 2, "window": 30},
        },
    })
    blue = out["demo-blue"]
    assert blue["program"] == "demo_blue" and blue["requires"] == ["db"]
    assert blue["health"] == ["blue_http", "blue_tcp"]
    assert blue["budget"] == {"max": 5, "window": 600.0}
    assert blue["flap"] == {"count": 2, "window": 30.0}
    assert out["db"]["unit"] == "postgresql"


@pytest.mark.parametrize(
    "pillar, match",
    [
        ([], r"hx:services must be a mapping"),
        ({"a": []}, r"hx:services:a: must be a mapping"),
        ({"a b": {}}, r"bad service name 'a b'"),
        ({"a,b": {}}, r"bad service name 'a,b'"),
        ({"a": {"stop_timout": 3}}, r"hx:services:a:stop_timout: unknown key"),
        ({"a": {"provider": "upstart"}}, r"hx:services:a:provider: must be one of"),
        ({"a": {"provider": 1}}, r"hx:services:a:provider: must be a non-empty string"),
        ({"a": {"program": ""}}, r"hx:services:a:program: must be a non-empty string"),
        ({"a": {"stop_timeout": "10"}}, r"hx:services:a:stop_timeout: must be a number"),
        ({"a": {"stop_timeout": 0}}, r"hx:services:a:stop_timeout: must be a number of seconds > 0"),
        ({"a": {"start_timeout": True}}, r"hx:services:a:start_timeout"),
        ({"a": {"requires": [1]}}, r"hx:services:a:requires: must be a list of names"),
        ({"a": {"requires": {"b": 1}}}, r"hx:services:a:requires: must be a list"),
        ({"a": {"requires": ["a"]}}, r"hx:services:a:requires: a service cannot require itself"),
        ({"a": {"requires": ["b"]}}, r"hx:services:a:requires: names unknown service 'b'"),
        ({"a": {"health": ["x", "x"]}}, r"hx:services:a:health: lists a name twice"),
        ({"a": {"traffic": "lb"}}, r"hx:services:a:traffic: must be a mapping"),
        ({"a": {"traffic": {"backend": "b"}}}, r"hx:services:a:traffic:server: must be a non-empty string"),
        ({"a": {"traffic": {"backend": "b", "server": "s", "w": 1}}}, r"hx:services:a:traffic:w: unknown key"),
        ({"a": {"budget": {"max": 0}}}, r"hx:services:a:budget.max must be > 0"),
        ({"a": {"budget": 3}}, r"hx:services:a:budget must be a mapping"),
        ({"a": {"flap": {"count": "2"}}}, r"hx:services:a:flap.count must be a number"),
        ({"a": {"requires": ["b"]}, "b": {"requires": ["a"]}}, r"dependency cycle: a -> b -> a"),
    ],
)
def test_errors_name_service_and_key(pillar, match):
    with pytest.raises(ValueError, match=match):
        v.validate_services(pillar)


def test_empty_pillar_is_no_services():
    assert v.validate_services(None) == {}
    assert v.validate_services({}) == {}


@pytest.mark.parametrize(
    "raw, expected",
    [
        (None, {"conf": None, "bin_env": None, "include_dir": None, "log_dir": None}),
        (
            {"conf": "/etc/supervisord.conf", "include_dir": "/etc/supervisor/conf.d"},
            {"conf": "/etc/supervisord.conf", "bin_env": None, "include_dir": "/etc/supervisor/conf.d", "log_dir": None},
        ),
    ],
)
def test_supervisord(raw, expected):
    assert v.validate_supervisord(raw) == expected


@pytest.mark.parametrize(
    "raw, match",
    [("x", "must be a mapping"), ({"cnf": "/x"}, r"hx:supervisord:cnf: unknown key"), ({"conf": ""}, "non-empty")],
)
def test_supervisord_errors(raw, match):
    with pytest.raises(ValueError, match=match):
        v.validate_supervisord(raw)


def test_recovery_defaults_and_errors():
    assert v.validate_recovery(None)["budget"] == {"max": 3, "window": 900.0}
    assert v.validate_recovery({"budget": {"max": 5}})["budget"] == {"max": 5, "window": 900.0}
    with pytest.raises(ValueError, match=r"hx:recovery:budget.window must be > 0"):
        v.validate_recovery({"budget": {"window": 0}})
    with pytest.raises(ValueError, match=r"hx:recovery:retries: unknown key"):
        v.validate_recovery({"retries": 3})


@pytest.mark.parametrize(
    "value, expected",
    [("a", ["a"]), ("a, b,a", ["a", "b"]), (["b", "a"], ["b", "a"]), (None, [])],
)
def test_parse_names(value, expected):
    assert v.parse_names(value) == expected


@pytest.mark.parametrize("value", ["a,,b", ["a", ""], ["a", 3], 7])
def test_parse_names_rejects(value):
    with pytest.raises(ValueError):
        v.parse_names(value)
