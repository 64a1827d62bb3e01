"""Window maths: every edge of [start, end), midnight, DST, blackouts, parsing."""
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hx_windows as hw

UTC = datetime.timezone.utc


def cfg(windows=None, blackouts=None, enforce=True):
    return hw.validate(windows, blackouts, enforce)


def at(text):
    return hw.parse_at(text)


def is_open(config, text):
    return hw.status(config, at(text))["open"]


# ------------------------------------------------------------- default


@pytest.mark.parametrize(
    "when, expected",
    [
        ("2024-06-03T01:59:00Z", False),
        ("2024-06-03T01:59:59.999Z", False),
        ("2024-06-03T02:00:00Z", True),
        ("2024-06-03T02:08:00Z", True),
        ("2024-06-03T05:59:00Z", True),
        ("2024-06-03T05:59:59Z", True),
        ("2024-06-03T06:00:00Z", False),
        ("2024-06-03T06:30:00Z", False),  # the Ansible role allowed 06:00-06:59
        ("2024-06-03T12:00:00Z", False),
    ],
)
def test_default_window_is_0200_to_0600_utc_start_inclusive_end_exclusive(when, expected):
    config = cfg()
    assert config["default"] is True
    assert is_open(config, when) is expected


def test_default_window_status_names_window_and_close_time():
    result = hw.status(cfg(), at("2024-06-03T03:00:00Z"))
    assert result["window"] == "default"
    assert result["closes_at"] == "2024-06-03T06:00:00+00:00"
    assert result["opens_at"] == "2024-06-03T02:00:00+00:00"
    assert result["next_open"] == "2024-06-04T02:00:00+00:00"


def test_closed_status_gives_next_open_and_reason():
    result = hw.status(cfg(), at("2024-06-03T06:00:00Z"))
    assert result["open"] is False
    assert result["window"] is None
    assert result["closes_at"] is None
    assert result["next_open"] == "2024-06-04T02:00:00+00:00"
    assert "outside maintenance windows (default)" in result["reason"]
    assert "next opens 2024-06-04T02:00:00+00:00" in result["reason"]


def test_offsets_in_at_are_honoured():
    # 03:59 in +02:00 is 01:59 UTC: refused; 04:00+02:00 = 02:00 UTC: allowed
    assert is_open(cfg(), "2024-06-03T03:59:00+02:00") is False
    assert is_open(cfg(), "2024-06-03T04:00:00+02:00") is True
    # naive = UTC
    assert is_open(cfg(), "2024-06-03T02:00:00") is True


# -------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, minutes",
    [("00:00", 0), ("02:08", 128), ("09:05", 545), ("08:09", 489), ("23:59", 1439), (" 07:30 ", 450)],
)
def test_times_parse_as_base_10(text, minutes):
    assert hw.parse_hhmm(text, "w:start") == minutes


def test_24_00_allowed_only_as_end():
    assert hw.parse_hhmm("24:00", "w:end", allow_24=True) == 1440
    with pytest.raises(ValueError, match="w:start"):
        hw.parse_hhmm("24:00", "w:start")


@pytest.mark.parametrize("bad", ["25:00", "2am", "7:5", "", "7:05", "12:60", "24:01", "12-00", "1200", "::", None, 3.5])
def test_bad_times_rejected_naming_window_and_key(bad):
    with pytest.raises(ValueError, match=r"hx:maintenance:windows:nightly:start"):
        cfg([{"name": "nightly", "start": bad, "end": "06:00"}])


def test_unquoted_yaml_time_explains_base_60():
    # YAML 1.1 reads an unquoted 22:00 as 1320
    with pytest.raises(ValueError, match=r"windows:late:start: got the number 1320.*quote it"):
        cfg([{"name": "late", "start": 1320, "end": "02:00"}])


@pytest.mark.parametrize(
    "window, message",
    [
        ({"name": "w", "start": "02:00"}, r"windows:w:end: missing"),
        ({"name": "w", "end": "02:00"}, r"windows:w:start: missing"),
        ({"name": "w", "start": "02:00", "end": "02:00"}, r"windows:w:end: equals start"),
        ({"name": "w", "start": "02:00", "end": "06:00", "tz": "Mars/Base"}, r"windows:w:tz: unknown time zone"),
        ({"name": "w", "start": "02:00", "end": "06:00", "days": ["mon", "funday"]}, r"windows:w:days: unknown day 'funday'"),
        ({"name": "w", "start": "02:00", "end": "06:00", "days": []}, r"windows:w:days: must be a non-empty"),
        ({"name": "w", "start": "02:00", "end": "06:00", "strat": "x"}, r"windows:w:strat: unknown key"),
        ({"start": "02:00", "end": "06:00"}, r"windows\[0\]:name"),
        ({"name": "bad name", "start": "02:00", "end": "06:00"}, r"windows\[0\]:name"),
        ("02:00-06:00", r"windows\[0\]: must be a mapping"),
    ],
)
def test_window_config_errors_name_the_key(window, message):
    with pytest.raises(ValueError, match=message):
        cfg([window])


def test_duplicate_names_and_bad_types_rejected():
    w = {"name": "a", "start": "02:00", "end": "03:00"}
    with pytest.raises(ValueError, match="windows:a:name: used twice"):
        cfg([w, w])
    with pytest.raises(ValueError, match="hx:maintenance:windows: must be a list"):
        cfg({"a": w})
    with pytest.raises(ValueError, match="hx:maintenance:enforce"):
        cfg(None, None, "yes")
    with pytest.raises(ValueError, match="hx:maintenance:blackouts: must be a list"):
        cfg(None, "2024-12-24")


def test_days_accept_full_names_case_and_comma_string():
    config = cfg([{"name": "w", "start": "02:00", "end": "03:00", "days": "Saturday, SUN"}])
    assert config["windows"][0]["days"] == ["sat", "sun"]


@pytest.mark.parametrize("bad", ["25:00", "2am", "now", "2024-13-01T00:00:00", 12])
def test_bad_at_rejected(bad):
    with pytest.raises(ValueError, match="at:"):
        hw.parse_at(bad)


def test_at_accepts_z_datetime_and_none():
    assert hw.parse_at("2024-06-03T02:00:00Z") == datetime.datetime(2024, 6, 3, 2, tzinfo=UTC)
    moment = datetime.datetime(2024, 6, 3, 4, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    assert hw.parse_at(moment) == datetime.datetime(2024, 6, 3, 2, tzinfo=UTC)
    assert abs((hw.parse_at(None) - datetime.datetime.now(UTC)).total_seconds()) < 5


# -------------------------------------------------------- days, midnight

NIGHT = [{"name": "night", "start": "22:00", "end": "02:00", "days": ["fri"]}]


@pytest.mark.parametrize(
    "when, expected",
    [
        ("2024-06-07T21:59:00Z", False),  # Friday
        ("2024-06-07T22:00:00Z", True),
        ("2024-06-07T23:59:59Z", True),
        ("2024-06-08T00:00:00Z", True),   # Saturday morning: still Friday's window
        ("2024-06-08T01:59:00Z", True),
        ("2024-06-08T02:00:00Z", False),
        ("2024-06-08T22:30:00Z", False),  # Saturday night: no window starts on sat
        ("2024-06-07T01:00:00Z", False),  # Friday early morning belongs to Thursday's (absent) window
    ],
)
def test_window_crossing_midnight_belongs_to_its_start_day(when, expected):
    assert is_open(cfg(NIGHT), when) is expected


def test_crossing_window_close_and_next_open():
    result = hw.status(cfg(NIGHT), at("2024-06-08T01:00:00Z"))
    assert result["closes_at"] == "2024-06-08T02:00:00+00:00"
    assert result["next_open"] == "2024-06-14T22:00:00+00:00"
    assert hw.describe(cfg(NIGHT))["windows"][0]["crosses_midnight"] is True


def test_days_filter():
    config = cfg([{"name": "weekend", "start": "02:00", "end": "06:00", "days": ["sat", "sun"]}])
    assert is_open(config, "2024-06-07T03:00:00Z") is False  # Friday
    assert is_open(config, "2024-06-08T03:00:00Z") is True   # Saturday
    assert is_open(config, "2024-06-09T03:00:00Z") is True   # Sunday
    assert is_open(config, "2024-06-10T03:00:00Z") is False  # Monday


def test_whole_day_window_until_24_00():
    config = cfg([{"name": "sunday", "start": "00:00", "end": "24:00", "days": ["sun"]}])
    assert is_open(config, "2024-06-08T23:59:59Z") is False
    assert is_open(config, "2024-06-09T00:00:00Z") is True
    assert is_open(config, "2024-06-09T23:59:59Z") is True
    assert is_open(config, "2024-06-10T00:00:00Z") is False


def test_time_zone_is_the_windows_own():
    config = cfg([{"name": "berlin", "start": "02:00", "end": "06:00", "tz": "Europe/Berlin"}])
    # summer: CEST = UTC+2, so 02:00 Berlin = 00:00 UTC
    assert is_open(config, "2024-06-03T23:59:00Z") is False
    assert is_open(config, "2024-06-04T00:00:00Z") is True
    assert is_open(config, "2024-06-04T03:59:00Z") is True
    assert is_open(config, "2024-06-04T04:00:00Z") is False
    result = hw.status(config, at("2024-06-04T01:00:00Z"))
    assert result["closes_at"] == "2024-06-04T06:00:00+02:00"


# ----------------------------------------------------------------- DST

BERLIN = "Europe/Berlin"
# 2024-03-31: 02:00 CET -> 03:00 CEST (01:00 UTC).  2024-10-27: 03:00 CEST -> 02:00 CET (01:00 UTC).


def _occ(start, end, day):
    config = cfg([{"name": "w", "start": start, "end": end, "tz": BERLIN}])
    occ = hw.occurrence(config["windows"][0], datetime.date.fromisoformat(day))
    return occ and tuple(x.isoformat() for x in occ)


def test_spring_forward_window_inside_the_gap_does_not_open():
    assert _occ("02:00", "03:00", "2024-03-31") is None
    config = cfg([{"name": "w", "start": "02:00", "end": "03:00", "tz": BERLIN}])
    for when in ("2024-03-31T00:59:59Z", "2024-03-31T01:00:00Z", "2024-03-31T01:30:00Z"):
        assert is_open(config, when) is False
    # the day before and after it opens normally, and next_open skips the gap day
    assert is_open(config, "2024-03-30T01:30:00Z") is True   # 02:30 CET
    assert hw.status(config, at("2024-03-30T12:00:00Z"))["next_open"] == "2024-04-01T02:00:00+02:00"


def test_spring_forward_window_across_the_gap_is_shorter():
    # 02:00-06:00 opens at the jump (03:00 CEST) and lasts 3 real hours
    assert _occ("02:00", "06:00", "2024-03-31") == ("2024-03-31T01:00:00+00:00", "2024-03-31T04:00:00+00:00")
    # 01:30-02:30 closes at the jump: 30 minutes
    assert _occ("01:30", "02:30", "2024-03-31") == ("2024-03-31T00:30:00+00:00", "2024-03-31T01:00:00+00:00")


def test_fall_back_window_closes_at_the_first_end_time_and_does_not_reopen():
    # 01:30 CEST (23:30 UTC) until the first 02:30 (CEST, 00:30 UTC)
    assert _occ("01:30", "02:30", "2024-10-27") == ("2024-10-26T23:30:00+00:00", "2024-10-27T00:30:00+00:00")
    config = cfg([{"name": "w", "start": "01:30", "end": "02:30", "tz": BERLIN}])
    assert is_open(config, "2024-10-27T00:29:59Z") is True    # 02:29:59 CEST
    assert is_open(config, "2024-10-27T00:30:00Z") is False   # 02:30 CEST
    assert is_open(config, "2024-10-27T01:00:00Z") is False   # 02:00 CET, the repeated hour
    assert is_open(config, "2024-10-27T01:15:00Z") is False   # 02:15 CET


def test_fall_back_window_across_the_repeat_is_longer():
    # 02:00 CEST (00:00 UTC) to 06:00 CET (05:00 UTC): 5 real hours
    assert _occ("02:00", "06:00", "2024-10-27") == ("2024-10-27T00:00:00+00:00", "2024-10-27T05:00:00+00:00")


def test_first_instant_ambiguous_and_gap():
    zone = hw.zoneinfo.ZoneInfo(BERLIN)
    local = datetime.datetime(2024, 10, 27, 2, 30)
    assert hw.first_instant(local, zone) == datetime.datetime(2024, 10, 27, 0, 30, tzinfo=UTC)
    gap = datetime.datetime(2024, 3, 31, 2, 30)
    assert hw.first_instant(gap, zone) == datetime.datetime(2024, 3, 31, 1, 0, tzinfo=UTC)


# ------------------------------------------------------------ blackouts


def test_blackout_date_vetoes_the_window():
    config = cfg(None, ["2024-12-24"])
    result = hw.status(config, at("2024-12-24T03:00:00Z"))
    assert result["open"] is False
    assert "window default is vetoed by blackout 2024-12-24 (change freeze)" in result["reason"]
    assert result["next_open"] == "2024-12-25T02:00:00+00:00"
    assert is_open(config, "2024-12-23T03:00:00Z") is True


def test_blackout_accepts_yaml_dates_and_ranges_with_reason():
    config = cfg(None, [datetime.date(2024, 12, 24), {"from": "2024-12-28", "to": datetime.date(2025, 1, 2), "reason": "year-end freeze"}])
    assert is_open(config, "2024-12-27T03:00:00Z") is True
    for day in ("2024-12-28", "2024-12-31", "2025-01-02"):
        result = hw.status(config, at(f"{day}T03:00:00Z"))
        assert result["open"] is False
        assert "year-end freeze" in result["reason"]
    assert is_open(config, "2025-01-03T03:00:00Z") is True
    assert hw.status(config, at("2024-12-28T12:00:00Z"))["next_open"] == "2025-01-03T02:00:00+00:00"


def test_blackout_vetoes_a_crossing_occurrence_that_touches_it():
    config = cfg(NIGHT, ["2024-06-08"])  # Saturday: Friday 22:00-02:00 runs into it
    assert is_open(config, "2024-06-07T23:00:00Z") is False
    assert is_open(config, "2024-06-08T01:00:00Z") is False


def test_blackout_uses_the_windows_zone():
    # 2024-12-24 in Berlin starts 2024-12-23T23:00Z; a 00:30-01:00 Berlin window that night is vetoed
    config = cfg([{"name": "w", "start": "00:30", "end": "01:00", "tz": BERLIN}], ["2024-12-24"])
    assert is_open(config, "2024-12-23T23:45:00Z") is False
    assert is_open(config, "2024-12-22T23:45:00Z") is True


@pytest.mark.parametrize(
    "blackout, message",
    [
        ("24.12.2024", r"blackouts\[0\]: must be a date"),
        ({"from": "2024-12-28", "to": "2024-12-01"}, r"blackouts\[0\]:to: 2024-12-01 is before"),
        ({"to": "2024-12-01"}, r"blackouts\[0\]:from: missing"),
        ({"from": "2024-12-01", "until": "2024-12-02"}, r"blackouts\[0\]:until: unknown key"),
        ({"from": "2024-12-01", "reason": 5}, r"blackouts\[0\]:reason"),
        (datetime.datetime(2024, 12, 24, 3), r"blackouts\[0\]: must be a date"),
    ],
)
def test_blackout_errors_name_the_entry(blackout, message):
    with pytest.raises(ValueError, match=message):
        cfg(None, [blackout])


def test_no_window_within_search_horizon():
    config = cfg(None, [{"from": "2024-01-01", "to": "2026-01-01"}])
    result = hw.status(config, at("2024-06-01T03:00:00Z"))
    assert result["open"] is False
    assert result["next_open"] is None
    assert "no window opens within 400 days" in result["reason"]


# ----------------------------------------------- enforce, emergency, union


def test_not_enforced_is_always_open():
    result = hw.status(cfg(None, ["2024-06-03"], enforce=False), at("2024-06-03T12:00:00Z"))
    assert result["open"] is True
    assert "not enforced" in result["reason"]
    assert result["enforce"] is False


def test_emergency_bypasses_windows_and_blackouts():
    result = hw.status(cfg(None, ["2024-06-03"]), at("2024-06-03T12:00:00Z"), emergency=True)
    assert result["open"] is True
    assert result["emergency"] is True
    assert result["reason"].startswith("emergency bypass")
    assert result["window"] is None


def test_adjacent_windows_close_when_the_last_one_does():
    config = cfg([
        {"name": "late", "start": "22:00", "end": "24:00"},
        {"name": "early", "start": "00:00", "end": "03:00"},
    ])
    result = hw.status(config, at("2024-06-03T23:00:00Z"))
    assert result["window"] == "late"
    assert result["closes_at"] == "2024-06-04T03:00:00+00:00"


def test_windows_listing():
    described = hw.describe(cfg([{"name": "w", "start": "08:09", "end": "09:05", "tz": BERLIN, "days": ["mon"]}], ["2024-01-01"]))
    assert described["windows"] == [{"name": "w", "start": "08:09", "end": "09:05", "tz": BERLIN, "days": ["mon"], "crosses_midnight": False}]
    assert described["blackouts"] == [{"from": "2024-01-01", "to": "2024-01-01", "reason": "change freeze"}]


# ----------------------------------------------------------- properties

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
hhmm = st.integers(0, 1439).map(hw.format_minutes)
moments = st.datetimes(
    min_value=datetime.datetime(2023, 1, 1), max_value=datetime.datetime(2026, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(start=hhmm, end=hhmm, tz=st.sampled_from(ZONES), moment=moments)
def test_open_iff_local_wall_time_is_in_the_window_away_from_dst(start, end, tz, moment):
    if start == end:
        return
    config = cfg([{"name": "w", "start": start, "end": end, "tz": tz}])
    window = config["windows"][0]
    zone = window["zone"]
    # only moments whose surrounding 26 h have no offset change: the plain rule applies
    offsets = {(moment + datetime.timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(-26, 27)}
    if len(offsets) > 1:
        return
    local = moment.astimezone(zone)
    minute = local.hour * 60 + local.minute
    s, e = window["start"], window["end"]
    expected = s <= minute < e if s < e else (minute >= s or minute < e)
    assert hw.status(config, moment)["open"] is expected


@settings(max_examples=150, deadline=None)
@given(start=hhmm, end=hhmm, tz=st.sampled_from(ZONES), moment=moments)
def test_status_is_consistent_with_its_own_times(start, end, tz, moment):
    if start == end:
        return
    config = cfg([{"name": "w", "start": start, "end": end, "tz": tz}])
    result = hw.status(config, moment)
    nxt = hw.parse_at(result["next_open"])
    assert nxt > moment
    assert hw.status(config, nxt)["open"] is True
    assert hw.status(config, nxt - datetime.timedelta(seconds=1))["open"] is False
    if result["open"]:
        closes = hw.parse_at(result["closes_at"])
        opens = hw.parse_at(result["opens_at"])
        assert opens <= moment < closes
        assert hw.status(config, closes)["open"] is False
        assert hw.status(config, closes - datetime.timedelta(seconds=1))["open"] is True


# ------------------------------------------------------------- schedule


def test_schedule_default_is_cron_0300_with_splay_and_maxrunning():
    job = hw.schedule_job(None)
    assert job == {
        "function": "hx_maint.highstate", "cron": "0 3 * * *", "splay": 600, "maxrunning": 1,
        "enabled": True, "return_job": True,
    }


def test_schedule_range_with_minutes_and_test_mode():
    job = hw.schedule_job({"range": {"start": "2:00am", "end": "6:00am"}, "minutes": 30, "splay": 0, "test": True})
    assert job["range"] == {"start": "2:00am", "end": "6:00am"}
    assert job["minutes"] == 30
    assert "cron" not in job and "splay" not in job
    assert job["job_kwargs"] == {"test": True}


def test_schedule_when_and_seconds():
    assert hw.schedule_job({"when": "Sunday 3:00am"})["when"] == ["Sunday 3:00am"]
    job = hw.schedule_job({"seconds": 5, "enabled": False, "maxrunning": 2})
    assert (job["seconds"], job["enabled"], job["maxrunning"]) == (5, False, 2)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"cron": "0 3 * * *", "when": "Sunday 3am"}, "exclude each other"),
        ({"cron": "0 3 * *"}, "schedule:cron: must be a 5-field"),
        ({"range": {"start": "2am", "end": "6am"}}, "schedule:range: needs an interval"),
        ({"range": "2am-6am", "minutes": 5}, "schedule:range: must be"),
        ({"splay": -1}, "schedule:splay"),
        ({"maxrunning": 0}, "schedule:maxrunning"),
        ({"enabled": "yes"}, "schedule:enabled"),
        ({"crom": "0 3 * * *"}, "schedule:crom: unknown key"),
        ({"seconds": 0}, "schedule:seconds"),
        ("0 3 * * *", "hx:maintenance:schedule: must be a mapping"),
    ],
)
def test_schedule_errors_name_the_key(raw, message):
    with pytest.raises(ValueError, match=message):
        hw.schedule_job(raw)


def test_example_pillar_is_valid_and_equals_the_defaults():
    import os

    import yaml

    path = os.path.join(os.path.dirname(__file__), "..", "..", "pillar", "hx", "maintenance.sls")
    with open(path, encoding="utf-8") as fh:
        maintenance = yaml.safe_load(fh)["hx"]["maintenance"]
    config = hw.validate(maintenance["windows"], maintenance["blackouts"], maintenance["enforce"])
    assert hw.describe(config)["windows"] == hw.describe(hw.validate())["windows"]
    assert hw.schedule_job(maintenance["schedule"]) == hw.schedule_job(None)
