"""Pure HAProxy logic: real captured runtime API replies, switch-plan order, config weights, validation."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_haproxy

# Captured from haproxy 2.6.12 (tests/support/haproxy.py, demo apps) after 6
# requests, then `set server demo/app2_blue state drain`,
# `set weight demo/app1_green 50`, `set server demo/app1_green state maint`.
SHOW_STAT = (
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,\n'
    'fe_main,FRONTEND,,,0,2,9978,7,618,984,0,0,1,,,,,OPEN,,,,,,,,,1,2,0,,,,0,7,0,7,,,,0,6,0,1,0,0,,7,7,7,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,7,7,7,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,7,6,714,1335,0,0,\n'
    'demo,app1_blue,0,0,0,1,,3,309,492,,0,,0,0,0,0,UP,100,1,0,0,0,0,0,,1,3,1,,3,,2,3,,3,L7OK,200,2,0,3,0,0,0,0,,,,3,0,0,,,,,0,,,0,0,2,2,,,,Layer7 check passed,,1,2,2,,,,127.0.0.1:34447,,http,,,,,,,,0,3,0,,,1,,0,0,2,2,0,1,0,0,1,100,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'demo,app1_green,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,50,1,0,0,1,0,0,,1,3,2,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:49489,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,50,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'demo,app2_blue,0,0,0,1,,3,309,492,,0,,0,0,0,0,DRAIN 1/2,100,1,0,0,0,0,0,,1,3,3,,3,,2,3,,3,INI,,,0,3,0,0,0,0,,,,3,0,0,,,,,0,,,0,0,4,5,,,,Initializing,,1,2,1,,,,127.0.0.1:38379,,http,,,,,,,,0,3,0,,,1,,0,0,6,8,0,1,0,0,1,100,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n'
    'demo,BACKEND,0,0,0,2,998,6,618,984,0,0,,0,0,0,0,UP,100,1,0,,0,0,0,,1,3,0,,6,,1,6,,6,,,,0,6,0,0,0,0,,,,6,0,0,0,0,0,0,0,,,0,0,3,4,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,6,0,0,0,,,0,0,6,8,0,,,,,100,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,0,7,7,1272,624,0,0,\n'
    '\n'
)

SHOW_SERVERS_STATE = (
    '1\n'
    '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n'
    '3 demo 1 app1_blue 127.0.0.1 2 0 100 100 0 15 3 2 6 0 0 0 - 34447 - 0 0 - - 0\n'
    '3 demo 2 app1_green 127.0.0.1 0 1 50 0 0 1 0 0 14 0 0 0 - 49489 - 0 0 - - 0\n'
    '3 demo 3 app2_blue 127.0.0.1 2 8 100 100 0 1 0 1 6 0 0 0 - 38379 - 0 0 - - 0\n'
    '\n'
)


# --------------------------------------------------------------------------
# show stat


def test_parse_stat_real_sample_servers():
    parsed = hx_haproxy.parse_stat(SHOW_STAT)
    assert set(parsed["servers"]) == {"demo"} and "fe_main" not in parsed["servers"]
    srv = parsed["servers"]["demo"]
    assert list(srv) == ["app1_blue", "app1_green", "app2_blue"]
    blue = srv["app1_blue"]
    assert blue["status"] == "UP" and blue["weight"] == 100 and blue["scur"] == 0
    assert blue["stot"] == 3 and blue["hrsp_2xx"] == 3 and blue["hrsp_5xx"] == 0 and blue["req_tot"] == 3
    assert blue["check_status"] == "L7OK" and blue["check_code"] == 200
    assert blue["addr"] == "127.0.0.1:34447" and blue["rtime"] == 2 and blue["ttime"] == 2
    assert srv["app1_green"]["status"] == "MAINT" and srv["app1_green"]["weight"] == 50
    assert srv["app1_green"]["check_status"] is None  # empty CSV cell -> None
    assert srv["app2_blue"]["status"] == "DRAIN 1/2"


def test_parse_stat_real_sample_backend_and_totals():
    parsed = hx_haproxy.parse_stat(SHOW_STAT)
    be = parsed["backends"]["demo"]
    assert be["stot"] == 6 and be["hrsp_2xx"] == 6 and be["req_tot"] == 6 and be["status"] == "UP"
    totals = hx_haproxy.stat_totals(parsed["servers"]["demo"])
    assert totals["stot"] == 6 and totals["hrsp_2xx"] == 6 and totals["hrsp_5xx"] == 0 and totals["req_tot"] == 6


@pytest.mark.parametrize("reply", ["", "Unknown command, but maybe...\n", "Permission denied\n", None])
def test_parse_stat_rejects_non_csv(reply):
    with pytest.raises(ValueError, match="show stat: not a stat CSV"):
        hx_haproxy.parse_stat(reply)


# --------------------------------------------------------------------------
# show servers state


def test_parse_servers_state_real_sample():
    state = hx_haproxy.parse_servers_state(SHOW_SERVERS_STATE)["demo"]
    assert state["app1_blue"] == {"addr": "127.0.0.1", "port": 34447, "op_state": "UP", "admin": "ready",
                                  "admin_bits": 0, "weight": 100, "initial_weight": 100}
    assert state["app1_green"]["admin"] == "maint" and state["app1_green"]["op_state"] == "DOWN"
    assert state["app1_green"]["weight"] == 50 and state["app1_green"]["initial_weight"] == 0
    assert state["app2_blue"]["admin"] == "drain" and state["app2_blue"]["admin_bits"] == 8


@pytest.mark.parametrize("bits, expected", [
    (0, "ready"), (0x01, "maint"), (0x02, "maint"), (0x04, "maint"), (0x08, "drain"), (0x10, "drain"),
    (0x20, "maint"), (0x40, "maint"), (0x08 | 0x01, "maint"),  # maint wins over drain
])
def test_admin_state_bits(bits, expected):
    assert hx_haproxy.admin_state(bits) == expected


@pytest.mark.parametrize("reply", ["Can't find backend.\n\n", "", "2\n# x\n"])
def test_parse_servers_state_rejects_errors(reply):
    with pytest.raises(ValueError, match="show servers state: unexpected reply"):
        hx_haproxy.parse_servers_state(reply)


def test_reply_error_and_info():
    assert hx_haproxy.reply_error("\n") is None
    assert hx_haproxy.reply_error("No such server.\n\n") == "No such server."
    assert hx_haproxy.parse_info("Name: HAProxy\nPid: 42\n")["Pid"] == "42"


# --------------------------------------------------------------------------
# switch plan

BLUE = {"app1_blue": 100, "app2_blue": 100, "app1_green": 0, "app2_green": 0}
GREEN = {"app1_blue": 0, "app2_blue": 0, "app1_green": 100, "app2_green": 100}


def _summary(steps):
    return [(s["step"], s["action"], s["server"], s["from"], s["to"]) for s in steps]


@pytest.mark.parametrize("current, desired, admin, expected", [
    # blue -> green: both raises before both lowers
    (BLUE, GREEN, None, [(1, "raise", "app1_green", 0, 100), (2, "raise", "app2_green", 0, 100),
                         (3, "lower", "app1_blue", 100, 0), (4, "lower", "app2_blue", 100, 0)]),
    # rollback is a switch too: same order
    (GREEN, BLUE, None, [(1, "raise", "app1_blue", 0, 100), (2, "raise", "app2_blue", 0, 100),
                         (3, "lower", "app1_green", 100, 0), (4, "lower", "app2_green", 100, 0)]),
    # canary 10 %: one raise, one lower; unlisted servers untouched
    ({"a": 100, "b": 0}, {"a": 90, "b": 10}, None, [(1, "raise", "b", 0, 10), (2, "lower", "a", 100, 90)]),
    # already there: nothing
    (BLUE, BLUE, None, []),
    ({"a": 5}, {"a": 5}, {"a": "ready"}, []),
    # a drained/maint server that will carry weight is made ready first, right before its raise
    ({"a": 100, "b": 0}, {"a": 0, "b": 100}, {"b": "maint"},
     [(1, "set_state", "b", "maint", "ready"), (2, "raise", "b", 0, 100), (3, "lower", "a", 100, 0)]),
    # ... even when its weight does not change
    ({"a": 100, "b": 100}, {"b": 100}, {"b": "drain"}, [(1, "set_state", "b", "drain", "ready")]),
    # a server going to 0 keeps its admin state (no ready for it)
    ({"a": 100, "b": 100}, {"a": 0}, {"a": "maint"}, [(1, "lower", "a", 100, 0)]),
])
def test_switch_plan_table(current, desired, admin, expected):
    assert _summary(hx_haproxy.switch_plan(current, desired, admin)) == expected


def test_switch_plan_unknown_server_names_it():
    with pytest.raises(ValueError, match=r"server: not in backend: app3_green, zz \(known: a\)"):
        hx_haproxy.switch_plan({"a": 1}, {"zz": 1, "app3_green": 2})


weights_st = st.integers(min_value=0, max_value=256)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.tuples(weights_st, weights_st), min_size=1))
def test_switch_plan_properties(pairs):
    current = {k: v[0] for k, v in pairs.items()}
    desired = {k: v[1] for k, v in pairs.items()}
    steps = hx_haproxy.switch_plan(current, desired)
    kinds = [s["action"] for s in steps]
    # every raise before every lower
    assert kinds == sorted(kinds, key=lambda k: k != "raise")
    # the plan reaches the target, one step per changed server
    assert hx_haproxy.apply_plan(current, steps) == desired
    assert len(steps) == sum(1 for k in desired if desired[k] != current[k])
    # total weight never dips below min(before, after) at any point
    w = dict(current)
    floor = min(sum(current.values()), sum(desired.values()))
    for s in steps:
        w[s["server"]] = s["to"]
        assert sum(w.values()) >= floor


@pytest.mark.parametrize("weights, ops, admin, expected", [
    ({"a": 100, "b": 0}, None, None, 100),
    ({"a": 100, "b": 50}, {"a": "DOWN"}, None, 50),
    ({"a": 100, "b": 50}, None, {"b": "maint"}, 100),
    ({"a": 0, "b": 0}, None, None, 0),
    ({"a": 100}, {"a": "STARTING"}, {"a": "ready"}, 100),
])
def test_live_weight(weights, ops, admin, expected):
    assert hx_haproxy.live_weight(weights, ops, admin) == expected


# --------------------------------------------------------------------------
# validation


@pytest.mark.parametrize("value, expected", [(0, 0), (256, 256), ("100", 100), (" 7 ", 7), (3.0, 3)])
def test_validate_weight_ok(value, expected):
    assert hx_haproxy.validate_weight(value) == expected


@pytest.mark.parametrize("value", [-1, 257, 1000, "ten", "", None, True, False, 2.5, [1], "1e2"])
def test_validate_weight_rejects(value):
    with pytest.raises(ValueError, match=r"^weights:s1: must be an integer 0\.\.256"):
        hx_haproxy.validate_weight(value, "weights:s1")


@pytest.mark.parametrize("name", ["demo", "app1_blue", "be-1.x:2", "A" * 100])
def test_validate_name_ok(name):
    assert hx_haproxy.validate_name("server", name) == name


@pytest.mark.parametrize("name", ["", "a b", "a;shutdown sessions", "a\nset weight", "x/y", "A" * 101, None, 5])
def test_validate_name_rejects_with_kind(name):
    with pytest.raises(ValueError, match=r"^backend: invalid name"):
        hx_haproxy.validate_name("backend", name)


@pytest.mark.parametrize("backend, weights, match", [
    ("demo", {}, "weights: must be a non-empty mapping"),
    ("demo", [("a", 1)], "weights: must be a non-empty mapping"),
    ("demo", {"a b": 1}, "server: invalid name"),
    ("demo", {"a": 999}, "weights:a: must be an integer"),
    ("de mo", {"a": 1}, "backend: invalid name"),
])
def test_validate_weights_names_the_bad_key(backend, weights, match):
    with pytest.raises(ValueError, match=match):
        hx_haproxy.validate_weights(backend, weights)


@pytest.mark.parametrize("state", ["up", "DRAIN", "", None, "shutdown"])
def test_validate_state_rejects(state):
    with pytest.raises(ValueError, match="state: must be one of ready, drain, maint"):
        hx_haproxy.validate_state(state)


# --------------------------------------------------------------------------
# haproxy.cfg weights

CONFIG = """\
global
    stats socket /run/haproxy/admin.sock mode 600 level admin
    server-state-file /var/lib/haproxy/server-state

defaults
    mode http
    default-server inter 2s weight 7
    load-server-state-from-file global

frontend fe_main
    bind :80
    default_backend demo

backend demo
    balance roundrobin
    option httpchk GET /health
    server app1_blue 10.0.0.11:8080 check weight 100   # live color
    server app1_green 10.0.0.11:8081 check weight 0
    server app2_blue 10.0.0.12:8080 check
  server app2_green 10.0.0.12:8081 check weight 0

backend api
    default-server weight 3
    server app1_blue 10.0.0.11:9080 check
    server app1_green 10.0.0.11:9081 check weight 0

listen stats
    bind :8404
    server local 127.0.0.1:9000 weight 1
"""


def test_config_weights_reads_every_backend_with_defaults():
    assert hx_haproxy.config_weights(CONFIG) == {
        "demo": {"app1_blue": 100, "app1_green": 0, "app2_blue": 7, "app2_green": 0},
        "api": {"app1_blue": 3, "app1_green": 0},
        "stats": {"local": 1},
    }


def test_config_weights_plain_default_is_one():
    assert hx_haproxy.config_weights("backend b\n    server s 1.2.3.4:80\n") == {"b": {"s": 1}}


def test_set_config_weights_rewrites_only_that_backend():
    new = hx_haproxy.set_config_weights(CONFIG, "demo", {"app1_blue": 0, "app1_green": 100, "app2_blue": 0})
    assert hx_haproxy.config_weights(new)["demo"] == {"app1_blue": 0, "app1_green": 100, "app2_blue": 0,
                                                      "app2_green": 0}
    assert hx_haproxy.config_weights(new)["api"] == {"app1_blue": 3, "app1_green": 0}  # same names, other backend
    lines = new.splitlines()
    assert "    server app1_blue 10.0.0.11:8080 check weight 0   # live color" in lines  # comment kept
    assert "    server app2_blue 10.0.0.12:8080 check weight 0" in lines  # weight added
    changed = [a for a, b in zip(CONFIG.splitlines(), lines) if a != b]
    assert len(changed) == 3 and len(lines) == len(CONFIG.splitlines())


def test_set_config_weights_keeps_indentation_and_crlf():
    text = "backend b\r\n  server s 1.2.3.4:80 weight 5 check\r\n"
    assert hx_haproxy.set_config_weights(text, "b", {"s": 9}) == "backend b\r\n  server s 1.2.3.4:80 weight 9 check\r\n"


def test_set_config_weights_comment_only_hash_not_a_weight():
    text = "backend b\n    server s 1.2.3.4:80 check # weight 5 was too much\n"
    assert hx_haproxy.set_config_weights(text, "b", {"s": 9}) == \
        "backend b\n    server s 1.2.3.4:80 check weight 9 # weight 5 was too much\n"


def test_set_config_weights_same_value_is_identity():
    assert hx_haproxy.set_config_weights(CONFIG, "demo", {"app1_blue": 100}) == CONFIG


@pytest.mark.parametrize("backend, weights, match", [
    ("nope", {"app1_blue": 1}, "backend: 'nope' not found in the haproxy config"),
    ("demo", {"app9": 1}, "server: app9 not found in backend 'demo'"),
    ("fe_main", {"x": 1}, "backend: 'fe_main' not found"),
    ("demo", {"app1_blue": 300}, "weights:app1_blue: must be an integer"),
])
def test_set_config_weights_errors(backend, weights, match):
    with pytest.raises(ValueError, match=match):
        hx_haproxy.set_config_weights(CONFIG, backend, weights)


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({}, optional={s: weights_st for s in ("app1_blue", "app1_green", "app2_blue",
                                                                 "app2_green")}))
def test_set_then_read_round_trips(weights):
    if not weights:
        return
    new = hx_haproxy.set_config_weights(CONFIG, "demo", weights)
    got = hx_haproxy.config_weights(new)["demo"]
    assert {k: got[k] for k in weights} == weights
