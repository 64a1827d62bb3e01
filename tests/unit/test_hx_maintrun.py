"""hx_maintrun: batches, the failure threshold, settings, backups, log scan, drain safety, compliance, CSV."""
import calendar
import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hx_maintrun as m

NOW = calendar.timegm((2024, 6, 1, 12, 0, 0))


# -- batches ------------------------------------------------------------------


@pytest.mark.parametrize("batch, total, size", [
    (1, 2, 1), ("1", 2, 1), (2, 5, 2), (10, 3, 3), ("50%", 2, 1), ("50%", 3, 2), ("25%", 10, 3),
    ("1%", 10, 1), ("100%", 7, 7), (" 3 ", 5, 3), ("33%", 3, 1), ("34%", 3, 2), (1, 0, 0),
])
def test_batch_size(batch, total, size):
    assert m.batch_size(batch, total) == size


@pytest.mark.parametrize("batch", [0, "0", "0%", "101%", "-1", "1.5", "abc", "%", "", None, True, "5 %"])
def test_bad_batch_names_the_argument(batch):
    with pytest.raises(ValueError, match=r"^batch: "):
        m.batch_size(batch, 4)


def test_batches_are_sorted_and_cover_every_host_once():
    assert m.batches(["c", "a", "b"], 2) == [["a", "b"], ["c"]]
    assert m.batches(["a"], "50%") == [["a"]]
    assert m.batches([], 1) == []


@given(st.lists(st.text("abcdef", min_size=1, max_size=4), unique=True, max_size=30), st.integers(1, 100))
def test_batches_property(hosts, pct):
    got = m.batches(hosts, f"{pct}%")
    assert [h for b in got for h in b] == sorted(hosts)
    if hosts:
        size = m.batch_size(f"{pct}%", len(hosts))
        assert all(len(b) == size for b in got[:-1]) and 1 <= len(got[-1]) <= size
        assert size >= len(hosts) * pct / 100


# -- max_fail_percentage ---------------------------------------------------------


@pytest.mark.parametrize("failed, total, pct, stop", [
    (0, 2, 0, False),      # nothing failed
    (1, 2, 0, True),       # default: the first failure stops
    (1, 100, 0, True),
    (1, 2, 50, False),     # exactly the allowed share: go on
    (2, 4, 50, False),
    (3, 4, 50, True),      # more than the share
    (1, 3, 33, True),      # 33.3 % > 33
    (1, 3, 34, False),
    (5, 5, 100, False),    # 100 never stops
    (1, 10, 9.99, True),
    (1, 10, 10, False),
])
def test_fail_exceeded(failed, total, pct, stop):
    assert m.fail_exceeded(failed, total, pct) is stop


@pytest.mark.parametrize("value, number", [(0, 0), ("0", 0), ("25%", 25), (100, 100), (12.5, 12.5)])
def test_max_fail_parses(value, number):
    assert m.max_fail(value) == number


@pytest.mark.parametrize("value", [-1, 101, "x", True, None, "nan"])
def test_max_fail_refuses(value):
    with pytest.raises(ValueError, match="max_fail_percentage"):
        m.max_fail(value)


# -- settings ---------------------------------------------------------------------


def test_defaults_and_window_keys_pass_through():
    cfg = m.settings({"windows": [{"name": "x"}], "enforce": False, "schedule": {}, "blackouts": []})
    assert cfg["backup"] is None and cfg["stop_services"] == [] and cfg["critical_services"] is None
    assert cfg["cleanup"] == m.CLEANUP_DEFAULTS and cfg["patch"] == m.PATCH_DEFAULTS
    assert cfg["log_window_minutes"] == 10 and cfg["health_ok"] == ["ok", "warning"]


def test_full_settings():
    cfg = m.settings({
        "backup": {"path": "/srv/backup"},
        "stop_services": "a, b",
        "critical_services": ["c"],
        "app_logs": ["/var/log/app.log"],
        "cleanup": {"tmp_dirs": ["/tmp/app"], "max_age_days": 3, "pkg_cache": True},
        "patch": {"security_only": True, "pkgs": ["openssl"]},
    })
    assert cfg["backup"] == {"path": "/srv/backup", "pattern": "*.tar.gz", "max_age_hours": 24}
    assert cfg["stop_services"] == ["a", "b"]
    assert cfg["cleanup"]["tmp_dirs"] == ["/tmp/app"] and cfg["cleanup"]["logrotate"] is None
    assert cfg["patch"] == {"security_only": True, "pkgs": ["openssl"], "exclude": [], "refresh": True}


@pytest.mark.parametrize("raw, message", [
    ({"stop_servics": []}, r"hx:maintenance:stop_servics: unknown key"),
    ({"backup": {"path": "relative"}}, r"hx:maintenance:backup:path: must be an absolute path"),
    ({"backup": {"path": "/b", "max_age": 3}}, r"hx:maintenance:backup:max_age: unknown key"),
    ({"backup": {"path": "/b", "max_age_hours": "1d"}}, r"backup:max_age_hours: must be a number"),
    ({"app_logs": ["app.log"]}, r"hx:maintenance:app_logs: 'app.log' must be an absolute path"),
    ({"cleanup": {"tmp_dirs": ["/"]}}, r"hx:maintenance:cleanup:tmp_dirs: '/' is not a cleanup directory"),
    ({"cleanup": {"tmp_dirs": ["/etc/"]}}, r"hx:maintenance:cleanup:tmp_dirs: '/etc/' is not a cleanup directory"),
    ({"cleanup": {"tmp_dirs": ["/var/lib"]}}, r"hx:maintenance:cleanup:tmp_dirs: '/var/lib' is not a cleanup"),
    ({"cleanup": {"tmp_dirs": ["/tmp/../etc"]}}, r"hx:maintenance:cleanup:tmp_dirs: '/tmp/../etc' holds '..'"),
    ({"cleanup": {"max_age_days": 0}}, r"hx:maintenance:cleanup:max_age_days: must be a number from 1 to 3660 days, got 0"),
    ({"cleanup": {"pkg_cache": "yes"}}, r"cleanup:pkg_cache: must be true or false"),
    ({"patch": {"refresh": 1}}, r"patch:refresh: must be true or false"),
    ({"health_ok": ["fine"]}, r"health_ok: must list statuses"),
    ({"log_tz": "Mars/Base"}, r"log_tz: unknown time zone"),
    ({"stop_services": [1]}, r"stop_services: must be a list of names"),
    ("nope", r"hx:maintenance: must be a mapping"),
])
def test_bad_settings_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        m.settings(raw)


# -- backups --------------------------------------------------------------------------


@pytest.mark.parametrize("entries, fresh, path", [
    ([], False, None),
    ([["/b/x.tar.gz", NOW - 3600]], True, "/b/x.tar.gz"),
    ([["/b/old.tar.gz", NOW - 30 * 3600], ["/b/new.tar.gz", NOW - 600]], True, "/b/new.tar.gz"),
    ([["/b/old.tar.gz", NOW - 25 * 3600]], False, "/b/old.tar.gz"),
    ([["/b/edge.tar.gz", NOW - 24 * 3600]], False, "/b/edge.tar.gz"),       # exactly 24 h: stale
    ([["/b/edge.tar.gz", NOW - 24 * 3600 + 1]], True, "/b/edge.tar.gz"),
    (["garbage", ["/b/x", "notime"]], False, None),
])
def test_newest_backup(entries, fresh, path):
    got = m.newest_backup(entries, NOW, 24)
    assert (got["fresh"], got["path"]) == (fresh, path)
    assert got["reason"]


# -- log scan ----------------------------------------------------------------------------


@pytest.mark.parametrize("line, expected", [
    ("2024-06-01 11:55:00,123 ERROR app: boom", NOW - 300 + 0.123),
    ("2024-06-01T11:55:00Z ERROR x", NOW - 300),
    ("2024-06-01T13:55:00+02:00 ERROR x", NOW - 300),
    ("[2024-06-01 11:55:00] ERROR x", NOW - 300),
    ('127.0.0.1 - - [01/Jun/2024:11:55:00 +0000] "GET / HTTP/1.1" 500', NOW - 300),
    ("Jun  1 11:55:00 host app[1]: ERROR x", NOW - 300),
    ("Traceback (most recent call last):", None),
    ("2024-13-01 00:00:00 bad month", None),
])
def test_parse_timestamp(line, expected):
    got = m.parse_timestamp(line, "UTC", NOW)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_timestamp_without_offset_is_read_in_log_tz():
    assert m.parse_timestamp("2024-06-01 13:55:00 ERROR", "Europe/Berlin", NOW) == NOW - 300


def test_syslog_in_january_about_december_is_last_year():
    jan = calendar.timegm((2025, 1, 1, 0, 5, 0))
    assert m.parse_timestamp("Dec 31 23:59:00 h x", "UTC", jan) == calendar.timegm((2024, 12, 31, 23, 59, 0))


def scan(text, **kw):
    return m.scan_log(text, NOW, 600, **kw)


def test_recent_error_found_old_error_ignored():
    text = (
        "2024-06-01 11:40:00 ERROR old failure\n"
        "2024-06-01 11:55:00 INFO fine\n"
        "2024-06-01 11:56:00 ERROR new failure\n"
    )
    got = scan(text)
    assert [x["line"] for x in got["matches"]] == ["2024-06-01 11:56:00 ERROR new failure"]
    assert got["source"] == "line"


def test_window_edges():
    assert scan("2024-06-01 11:50:00 ERROR at the edge")["matches"]           # exactly 10 min: inside
    assert not scan("2024-06-01 11:49:59 ERROR just before")["matches"]


@pytest.mark.parametrize("line", [
    "2024-06-01 11:59:00 INFO 0 errors",
    "2024-06-01 11:59:00 INFO error rate fine",
    "2024-06-01 11:59:00 INFO ERRORS_TOTAL=0",
    "2024-06-01 11:59:00 WARNING slow",
])
def test_no_false_positives(line):
    assert not scan(line)["matches"]


@pytest.mark.parametrize("level", ["ERROR", "CRITICAL", "FATAL"])
def test_every_level(level):
    assert scan(f"2024-06-01 11:59:00 {level} x")["matches"]


def test_continuation_lines_inherit_the_entry_time():
    text = "2024-06-01 11:00:00 INFO old\n  ERROR inside an old traceback\n2024-06-01 11:59:00 INFO new\n  FATAL new\n"
    assert [x["line"] for x in scan(text)["matches"]] == ["  FATAL new"]


def test_lines_before_the_first_timestamp_take_it():
    text = "ERROR cut-off head of an entry\n2024-06-01 11:59:00 INFO x\n"
    assert scan(text)["matches"]
    text = "ERROR cut-off head of an entry\n2024-06-01 10:00:00 INFO x\n"
    assert not scan(text)["matches"]


def test_mtime_fallback_without_timestamps():
    text = "starting\nERROR no time on this line\n"
    recent = scan(text, mtime=NOW - 60)
    assert recent["source"] == "mtime" and len(recent["matches"]) == 1
    assert not scan(text, mtime=NOW - 3600)["matches"]
    assert not scan(text, mtime=None)["matches"]


def test_empty_log():
    assert scan("")["matches"] == [] and scan("", mtime=NOW)["scanned"] == 0


# -- load balancers -----------------------------------------------------------------------


def row(weight=100, admin="ready", status="UP"):
    return {"weight": weight, "admin": admin, "status": status}


def test_remaining_live():
    rows = {"a_blue": row(), "a_green": row(0), "b_blue": row(), "b_green": row(0)}
    assert m.remaining_live(rows, ["a_blue", "a_green"]) == ["b_blue"]
    assert m.remaining_live(rows, ["a_blue", "a_green", "b_blue", "b_green"]) == []
    rows["b_blue"] = row(status="DOWN")
    assert m.remaining_live(rows, ["a_blue", "a_green"]) == []
    rows["b_blue"] = row(admin="maint")
    assert m.remaining_live(rows, ["a_blue"]) == []
    rows["b_blue"] = row(status="unknown")  # nginx cannot tell
    assert m.remaining_live(rows, ["a_blue"]) == ["b_blue"]


@pytest.mark.parametrize("before, now, change", [
    (row(), row(admin="maint"), {"state": "ready"}),
    (row(0), row(0, admin="maint"), {"state": "ready"}),
    (row(admin="drain"), row(admin="maint"), {"state": "drain"}),
    (row(admin="maint"), row(admin="maint"), {}),
    (row(50), row(100, admin="maint"), {"state": "ready", "weight": 50}),
    (row(), None, {"state": "ready", "weight": 100}),
])
def test_restore_changes(before, now, change):
    assert m.restore_changes(before, now) == change


def test_host_servers():
    apps = {
        "demo": {"hosts": {"h1": "a", "h2": "b"}, "lbs": ["lb1", "lb2"], "backend": "be", "server": "{host}_{color}"},
        "other": {"hosts": {"h2": "b"}, "lbs": ["lb1"], "backend": "o", "server": "{color}-{host}"},
    }
    assert m.host_servers(apps, "h1") == [
        ("demo", "lb1", "be", "h1_blue"), ("demo", "lb1", "be", "h1_green"),
        ("demo", "lb2", "be", "h1_blue"), ("demo", "lb2", "be", "h1_green"),
    ]
    assert ("other", "lb1", "o", "blue-h2") in m.host_servers(apps, "h2")
    assert m.host_servers(apps, "h3") == []


# -- compliance and the CSV ------------------------------------------------------------------


def host_rec(outcome="ok", passed=True):
    return {"outcome": outcome, "verification": {"passed": passed}, "started": NOW - 120, "ended": NOW,
            "services_started": ["demo-blue"], "patch": {"changes": {"openssl": {}}}, "reboot": {"required": False}}


def record(**over):
    rec = {
        "targets": ["h1", "h2"],
        "emergency": False,
        "window": {"h1": {"open": True, "emergency": False}, "h2": {"open": True, "emergency": False}},
        "backup": {"h1": {"fresh": True}, "h2": {"fresh": True}},
        "hosts": {"h1": host_rec(), "h2": host_rec()},
    }
    rec.update(over)
    return rec


def test_compliance_all_good():
    assert m.compliance(record()) == {"emergency": False, "window_respected": True, "backup_verified": True,
                                      "verification_passed": True}


@pytest.mark.parametrize("over, field", [
    ({"emergency": True}, "window_respected"),
    ({"window": {"h1": {"open": True, "emergency": True}, "h2": {"open": True}}}, "window_respected"),
    ({"window": {"h1": {"open": True}}}, "window_respected"),                       # h2 never asked
    ({"backup": {"h1": {"fresh": True}, "h2": {"fresh": False}}}, "backup_verified"),
    ({"backup": {}}, "backup_verified"),
    ({"hosts": {"h1": host_rec(), "h2": host_rec("failed", False)}}, "verification_passed"),
    ({"hosts": {"h1": host_rec()}}, "verification_passed"),                           # h2 skipped
    ({"hosts": {"h1": host_rec(), "h2": host_rec("ok", None)}}, "verification_passed"),
    ({"targets": [], "hosts": {}}, "verification_passed"),
])
def test_compliance_is_computed_not_claimed(over, field):
    assert m.compliance(record(**over))[field] is False


def test_csv_header_and_row():
    text = m.csv_lines([m.csv_row("h1", host_rec())], header=True)
    lines = text.splitlines()
    assert lines[0] == "date,hostname,duration_minutes,services_restarted,patches_applied,verification_passed,reboot_required"
    got = next(csv.DictReader(io.StringIO(text)))
    assert got == {"date": "2024-06-01T12:00:00Z", "hostname": "h1", "duration_minutes": "2.00",
                   "services_restarted": "1", "patches_applied": "1", "verification_passed": "true",
                   "reboot_required": "false"}


def test_csv_row_failed_host_and_unknown_reboot():
    rec = dict(host_rec("failed", False), reboot={}, patch=None, services_started=None)
    got = m.csv_row("h2", rec)
    assert (got["verification_passed"], got["reboot_required"], got["patches_applied"], got["services_restarted"]) == (
        "false", "unknown", 0, 0)


def test_a_weight_someone_else_changed_since_the_drain_is_theirs():
    before = {"weight": 100, "admin": "ready"}
    left = {"weight": 100, "admin": "maint"}
    # a deployment switched colors while the host was out: weight 0 now is the deployment's
    now = {"weight": 0, "admin": "maint"}
    assert m.foreign_weight(now, left)
    assert m.restore_changes(before, now, left) == {"state": "ready"}
    # nobody touched it: put back exactly as it was
    assert m.restore_changes(before, {"weight": 100, "admin": "maint"}, left) == {"state": "ready"}
    drained_to_zero = {"weight": 0, "admin": "maint"}
    assert m.restore_changes(before, drained_to_zero, drained_to_zero) == {"state": "ready", "weight": 100}
    # a record from before ``left`` was kept: restore as before
    assert m.restore_changes(before, now) == {"state": "ready", "weight": 100}
