"""Validation of pillar hx:health:checks and the http/tcp classification."""
import copy

import hx_checks
import pytest
from hypothesis import given
from hypothesis import strategies as st

GOOD = [
    {"name": "system", "kind": "system"},
    {
        "name": "app_http",
        "kind": "http",
        "url": "http://127.0.0.1:8080/health",
        "timeout": 2,
        "expect_status": 200,
        "body_match": '"status": "ok"',
        "warning_ms": 1000,
        "critical_ms": 2000,
    },
    {"name": "master_port", "kind": "tcp", "host": "127.0.0.1", "port": 4506, "timeout": 2},
    {"name": "sshd", "kind": "process", "pattern": "sshd", "min_count": 1},
]


def test_good_config_normalises_with_defaults():
    checks = hx_checks.normalize(copy.deepcopy(GOOD))
    assert [c["name"] for c in checks] == ["system", "app_http", "master_port", "sshd"]
    http = checks[1]
    assert http["expect_status"] == [200]
    assert http["verify_ssl"] is True
    assert checks[3] == {
        "name": "sshd",
        "kind": "process",
        "on_demand": False,
        "process_name": None,
        "pattern": "sshd",
        "min_count": 1,
    }


def test_http_defaults():
    (check,) = hx_checks.normalize([{"name": "h", "kind": "http", "url": "https://x/"}])
    assert check["timeout"] == 3
    assert check["expect_status"] == [200]
    assert check["warning_ms"] is None
    assert check["critical_ms"] == 2000
    assert check["body_match"] is None


def test_http_latency_defaults_come_from_response_time_thresholds():
    (check,) = hx_checks.normalize(
        [{"name": "h", "kind": "http", "url": "http://x/"}],
        {"warning": 500.0, "critical": 1500.0},
    )
    assert (check["warning_ms"], check["critical_ms"]) == (500.0, 1500.0)


@pytest.mark.parametrize("raw", [None, []])
def test_empty_config_is_an_empty_list(raw):
    assert hx_checks.normalize(raw) == []


def _with(index, **changes):
    checks = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is KeyError:
            checks[index].pop(key)
        else:
            checks[index][key] = value
    return checks


BAD = [
    ({"checks": "system"}, "hx:health:checks: must be a list of checks, got str"),
    ({"checks": {"name": "x"}}, "must be a list of checks, got dict"),
    ({"checks": ["system"]}, "hx:health:checks[0]: must be a mapping, got str"),
    (_with(1, timout=2), "hx:health:checks[1] (app_http): key 'timout' is not allowed for kind http"),
    (_with(0, name=KeyError), "hx:health:checks[0]: key 'name' is required"),
    (_with(0, name=""), "hx:health:checks[0]: key 'name' must be a non-empty string"),
    (_with(0, name=5), "hx:health:checks[0]: key 'name' must be a non-empty string, got 5"),
    (_with(0, name="sys:tem"), "key 'name' may only contain"),
    (_with(0, name="a/b"), "key 'name' may only contain"),
    (_with(2, name="app_http"), "hx:health:checks[2] (app_http): key 'name' duplicates hx:health:checks[1]"),
    (_with(0, kind="disk"), "hx:health:checks[0] (system): key 'kind' must be one of system, http, tcp, process, got 'disk'"),
    (_with(0, kind=KeyError), "hx:health:checks[0] (system): key 'kind' must be one of"),
    (_with(0, thresholds={"cpux": {"critical": 1}}), "hx:health:checks[0] (system).thresholds: unknown metric 'cpux'"),
    (_with(0, url="http://x"), "(system): key 'url' is not allowed for kind system"),
    (_with(1, url=KeyError), "(app_http): key 'url' is required"),
    (_with(1, url="ftp://x/"), "(app_http): key 'url' must be an http:// or https:// URL"),
    (_with(1, url="http:///health"), "(app_http): key 'url' must be an http:// or https:// URL"),
    (_with(1, url="127.0.0.1:8080/health"), "(app_http): key 'url'"),
    (_with(1, timeout=0), "(app_http): key 'timeout' must be in (0, 60], got 0"),
    (_with(1, timeout=-1), "(app_http): key 'timeout' must be in (0, 60]"),
    (_with(1, timeout=60.001), "(app_http): key 'timeout' must be in (0, 60]"),
    (_with(1, timeout="2"), "(app_http): key 'timeout' must be a number, got '2'"),
    (_with(1, timeout=True), "(app_http): key 'timeout' must be a number"),
    (_with(1, expect_status="200"), "(app_http): key 'expect_status' must be an HTTP status code"),
    (_with(1, expect_status=[200, 99]), "(app_http): key 'expect_status'"),
    (_with(1, expect_status=600), "(app_http): key 'expect_status'"),
    (_with(1, expect_status=[]), "(app_http): key 'expect_status' must not be an empty list"),
    (_with(1, body_match="(unclosed"), "(app_http): key 'body_match' is not a valid regular expression"),
    (_with(1, warning_ms=3000), "(app_http): key 'warning_ms' (3000) is greater than critical_ms (2000)"),
    (_with(1, critical_ms=0), "(app_http): key 'critical_ms' must be in (0, 600000], got 0"),
    (_with(1, critical_ms=float("inf")), "(app_http): key 'critical_ms' must be a number, got inf"),
    (_with(1, timeout=float("nan")), "(app_http): key 'timeout' must be a number, got nan"),
    (_with(1, verify_ssl="no"), "(app_http): key 'verify_ssl' must be true or false"),
    (_with(2, port=0), "hx:health:checks[2] (master_port): key 'port' must be between 1 and 65535, got 0"),
    (_with(2, port=65536), "(master_port): key 'port' must be between 1 and 65535, got 65536"),
    (_with(2, port="4506"), "(master_port): key 'port' must be an integer, got '4506'"),
    (_with(2, port=KeyError), "(master_port): key 'port' is required"),
    (_with(2, host=KeyError), "(master_port): key 'host' is required"),
    (_with(2, url="http://x/"), "(master_port): key 'url' is not allowed for kind tcp"),
    (_with(3, pattern=KeyError), "hx:health:checks[3] (sshd): kind process needs exactly one of"),
    (_with(3, process_name="sshd"), "(sshd): kind process needs exactly one of"),
    (_with(3, min_count=0), "(sshd): key 'min_count' must be between 1 and"),
    (_with(3, min_count=1.5), "(sshd): key 'min_count' must be an integer"),
    (_with(3, pattern="[a-"), "(sshd): key 'pattern' is not a valid regular expression"),
]


@pytest.mark.parametrize("checks,message", BAD)
def test_bad_config_names_check_and_key(checks, message):
    if isinstance(checks, dict):
        checks = checks["checks"]
    with pytest.raises(ValueError) as exc:
        hx_checks.normalize(checks)
    assert message in str(exc.value)


def test_port_edges_accepted():
    for port in (1, 65535):
        assert hx_checks.normalize(_with(2, port=port))[2]["port"] == port


def test_timeout_upper_edge_accepted():
    assert hx_checks.normalize(_with(1, timeout=60))[1]["timeout"] == 60


def test_select_by_name_and_unknown_name():
    checks = hx_checks.normalize(copy.deepcopy(GOOD))
    assert [c["name"] for c in hx_checks.select(checks, ["sshd", "system"])] == ["system", "sshd"]
    assert hx_checks.select(checks, None) == checks
    with pytest.raises(ValueError, match="unknown check name\\(s\\): nope"):
        hx_checks.select(checks, ["sshd", "nope"])


# --- classification


HTTP = [
    # (facts, status, error)
    (dict(http_status=200, latency_ms=10), "ok", None),
    (dict(http_status=200, latency_ms=999.9, warning_ms=1000), "ok", None),
    (dict(http_status=200, latency_ms=1000, warning_ms=1000), "warning", None),
    (dict(http_status=200, latency_ms=1999.9, warning_ms=1000), "warning", None),
    (dict(http_status=200, latency_ms=2000, warning_ms=1000), "critical", None),
    (dict(http_status=200, latency_ms=1999.9), "ok", None),
    (dict(http_status=200, latency_ms=2000), "critical", None),
    (dict(http_status=500, latency_ms=5), "critical", "http_5xx"),
    (dict(http_status=503, latency_ms=5), "critical", "http_5xx"),
    (dict(http_status=404, latency_ms=5), "critical", "http_status"),
    (dict(http_status=499, latency_ms=5), "critical", "http_status"),
    (dict(http_status=204, latency_ms=5, expect_status=[200, 204]), "ok", None),
    (dict(http_status=503, latency_ms=5, expect_status=[503]), "ok", None),
    (dict(http_status=200, latency_ms=5, body_matched=False), "critical", "body_mismatch"),
    (dict(http_status=200, latency_ms=5, body_matched=True), "ok", None),
    (dict(error="refused"), "critical", "refused"),
    (dict(error="timeout"), "critical", "timeout"),
    (dict(error="dns"), "critical", "dns"),
    (dict(error="connection"), "critical", "connection"),
]


@pytest.mark.parametrize("facts,status,error", HTTP)
def test_classify_http(facts, status, error):
    result = hx_checks.classify_http(**facts)
    assert (result["status"], result["error"]) == (status, error)
    assert set(result) == {"status", "value", "threshold", "message", "http_status", "error"}
    assert result["message"]


def test_classify_http_transport_error_has_no_latency_value():
    result = hx_checks.classify_http(error="timeout", latency_ms=3000, detail="u after 3 s")
    assert result["value"] is None
    assert "timed out: u after 3 s" == result["message"]


def test_classify_http_rejects_impossible_facts():
    with pytest.raises(ValueError):
        hx_checks.classify_http(error="http_5xx")
    with pytest.raises(ValueError):
        hx_checks.classify_http()


@pytest.mark.parametrize(
    "error,status", [(None, "ok"), ("refused", "critical"), ("timeout", "critical"), ("dns", "critical"), ("connection", "critical")]
)
def test_classify_tcp(error, status):
    result = hx_checks.classify_tcp(error=error, latency_ms=1.23, host="h", port=1)
    assert (result["status"], result["error"]) == (status, error)
    assert "h:1" in result["message"]
    assert (result["value"] is None) == (error is not None)


@given(latency=st.floats(min_value=0, max_value=1e5), code=st.integers(100, 599))
def test_http_never_ok_unless_expected_status_and_fast(latency, code):
    result = hx_checks.classify_http(http_status=code, latency_ms=latency)
    if result["status"] == "ok":
        assert code == 200 and latency < 2000
    if code >= 500:
        assert result["error"] == "http_5xx"


def test_on_demand_checks_run_only_when_named():
    checks = hx_checks.normalize(
        [{"name": "live", "kind": "tcp", "host": "h", "port": 1}, {"name": "idle", "kind": "tcp", "host": "h", "port": 2, "on_demand": True}]
    )
    assert [c["name"] for c in hx_checks.select(checks, None)] == ["live"]
    assert [c["name"] for c in hx_checks.select(checks, ["idle"])] == ["idle"]


def test_on_demand_must_be_boolean():
    with pytest.raises(ValueError, match=r"\(idle\): key 'on_demand'"):
        hx_checks.normalize([{"name": "idle", "kind": "tcp", "host": "h", "port": 2, "on_demand": "yes"}])
