"""Loader-level tests of hx_maint: execution module, state gate and beacon,
driven by real pillar files rendered through Salt's pillar compiler."""
import datetime
import json
import pathlib

import pytest
import salt.config
import salt.loader
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError
from saltfactories.utils.functional import Loaders

REPO = pathlib.Path(__file__).resolve().parents[2]
UTC = datetime.timezone.utc

ALL_DAY = [{"name": "allday", "start": "00:00", "end": "24:00"}]


def today_blackout():
    """Blackouts covering today in UTC whatever the clock does during the test."""
    today = datetime.datetime.now(UTC).date()
    return [{"from": (today - datetime.timedelta(days=1)).isoformat(),
             "to": (today + datetime.timedelta(days=1)).isoformat(), "reason": "test freeze"}]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("hx_maint")
    for sub in ("pillar", "files", "pki", "sock", "extmods", "cache"):
        (root / sub).mkdir()
    (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - hx\n", encoding="utf-8")
    (root / "pillar" / "hx.sls").write_text("{}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def loaders(tree):
    opts = salt.config.minion_config(None)
    opts.update(
        id="hx-functional",
        file_client="local",
        cachedir=str(tree / "cache"),
        pki_dir=str(tree / "pki"),
        sock_dir=str(tree / "sock"),
        extension_modules=str(tree / "extmods"),
        log_file=str(tree / "minion.log"),
        file_roots={"base": [str(tree / "files")]},
        pillar_roots={"base": [str(tree / "pillar")]},
        module_dirs=[str(REPO / "_modules")],
        states_dirs=[str(REPO / "_states")],
        beacons_dirs=[str(REPO / "_beacons")],
        utils_dirs=[str(REPO / "_utils")],
    )
    return Loaders(opts)


@pytest.fixture
def set_pillar(loaders, tree):
    def _set(maintenance):
        (tree / "pillar" / "hx.sls").write_text(
            yaml.safe_dump({"hx": {"maintenance": maintenance}}), encoding="utf-8"
        )
        # reload_all() wipes the cachedir; a real pillar refresh keeps it (the
        # beacon's last-seen state and the audit log live there).
        hx_dir = pathlib.Path(loaders.opts["cachedir"]) / "hx"
        kept = {p.name: p.read_bytes() for p in hx_dir.glob("*")} if hx_dir.is_dir() else {}
        loaders.reload_all()
        hx_dir.mkdir(parents=True, exist_ok=True)
        for name, data in kept.items():
            (hx_dir / name).write_bytes(data)

    yield _set
    _set({})


@pytest.fixture(autouse=True)
def reset(loaders):
    try:
        yield
    finally:
        loaders.reset_state()  # clears __context__ and the cachedir (beacon state, audit log)


class _Current:
    """The hx_maint module of the loader as it is now (set_pillar rebuilds loaders)."""

    def __init__(self, loaders):
        self._loaders = loaders

    def __getattr__(self, name):
        return getattr(self._loaders.modules.hx_maint, name)


@pytest.fixture
def mod(loaders):
    return _Current(loaders)


# ------------------------------------------------------------ module


def test_windows_default_when_nothing_configured(mod):
    assert mod.windows() == {
        "enforce": True, "default": True,
        "windows": [{"name": "default", "start": "02:00", "end": "06:00", "tz": "UTC",
                     "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "crosses_midnight": False}],
        "blackouts": [],
    }


@pytest.mark.parametrize("when, expected", [
    ("2024-06-03T01:59:00Z", False), ("2024-06-03T02:00:00Z", True),
    ("2024-06-03T05:59:00Z", True), ("2024-06-03T06:00:00Z", False),
])
def test_window_open_at_default_edges(mod, when, expected):
    assert mod.window_open(at=when)["open"] is expected


def test_pillar_windows_with_08_09_times_and_blackout(mod, set_pillar):
    # the Ansible scheduler died on $((08*60)): base 10 here
    set_pillar({"windows": [{"name": "morning", "start": "08:09", "end": "09:05", "tz": "Europe/Berlin",
                             "days": ["mon"]}],
                "blackouts": ["2024-06-10"]})
    assert mod.window_open(at="2024-06-03T08:08:59+02:00")["open"] is False
    inside = mod.window_open(at="2024-06-03T08:09:00+02:00")
    assert inside["open"] is True and inside["window"] == "morning"
    assert inside["closes_at"] == "2024-06-03T09:05:00+02:00"
    assert mod.window_open(at="2024-06-03T09:05:00+02:00")["open"] is False
    vetoed = mod.window_open(at="2024-06-10T08:30:00+02:00")
    assert vetoed["open"] is False and "blackout 2024-06-10" in vetoed["reason"]
    assert mod.next_window(at="2024-06-03T12:00:00Z") == {
        "window": "morning", "opens_at": "2024-06-17T08:09:00+02:00", "closes_at": "2024-06-17T09:05:00+02:00"}


def test_bad_pillar_names_window_and_key(mod, set_pillar):
    set_pillar({"windows": [{"name": "nightly", "start": "2am", "end": "06:00"}]})
    # A configuration error (no "Passed invalid arguments" and docstring), not a usage error.
    for call in (mod.window_open, mod.windows):
        with pytest.raises(CommandExecutionError, match="hx:maintenance:windows:nightly:start") as exc:
            call()
        assert not isinstance(exc.value, SaltInvocationError), exc.value


def test_bad_at_is_an_invocation_error(mod):
    with pytest.raises(SaltInvocationError, match="at: must be an ISO-8601"):
        mod.window_open(at="tomorrow")


def test_emergency_bypass_is_open_and_recorded(mod, loaders, set_pillar):
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    assert mod.window_open()["open"] is False
    result = mod.window_open(emergency=True)
    assert result["open"] is True
    assert result["emergency"] is True
    assert result["reason"].startswith("emergency bypass")
    audit = pathlib.Path(loaders.opts["cachedir"]) / "hx" / "maint_audit.jsonl"
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert entries[-1]["event"] == "emergency_bypass"
    assert entries[-1]["minion"] == "hx-functional"


def test_enforce_false_opens_the_gate(mod, set_pillar):
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout(), "enforce": False})
    result = mod.window_open()
    assert result["open"] is True and "not enforced" in result["reason"]


def test_run_if_open_runs_inside_and_skips_outside(mod, set_pillar):
    set_pillar({"windows": ALL_DAY})
    ran = mod.run_if_open("test.echo", "hello")
    assert ran["ran"] is True and ran["return"] == "hello" and ran["window"] == "allday"
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    skipped = mod.run_if_open("test.echo", "hello")
    assert skipped["ran"] is False and skipped["skipped"] is True
    assert "test freeze" in skipped["reason"]
    forced = mod.run_if_open("test.echo", "hello", emergency=True)
    assert forced["ran"] is True and forced["return"] == "hello"
    with pytest.raises(SaltInvocationError, match="no.such"):
        mod.run_if_open("no.such")


def test_highstate_is_skipped_outside_the_window(mod, set_pillar):
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    result = mod.highstate()
    assert result["ran"] is False and result["fun"] == "state.highstate"


def test_schedule_job_from_pillar(mod, set_pillar):
    assert mod.schedule_job()["cron"] == "0 3 * * *"
    set_pillar({"schedule": {"range": {"start": "2:00am", "end": "6:00am"}, "minutes": 20, "splay": 120}})
    job = mod.schedule_job()
    assert job["range"] == {"start": "2:00am", "end": "6:00am"}
    assert (job["minutes"], job["splay"], job["function"]) == (20, 120, "hx_maint.highstate")
    set_pillar({"schedule": {"cron": "0 3 * * *", "minutes": 5}})
    with pytest.raises(CommandExecutionError, match="hx:maintenance:schedule.*exclude each other") as exc:
        mod.schedule_job()
    assert not isinstance(exc.value, SaltInvocationError), exc.value


# ------------------------------------------------------------- state


def test_state_gate_passes_inside_fails_outside(loaders, set_pillar):
    set_pillar({"windows": ALL_DAY})
    ret = loaders.states.hx_maint.window("gate")
    assert ret["result"] is True and ret["changes"] == {}
    assert "inside maintenance window allday" in ret["comment"]
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    ret = loaders.states.hx_maint.window("gate")
    assert ret["result"] is False
    assert "Maintenance not allowed" in ret["comment"] and "test freeze" in ret["comment"]
    ret = loaders.states.hx_maint.window("gate", emergency=True)
    assert ret["result"] is True and "emergency bypass" in ret["comment"]


def test_state_gate_under_test_is_none_and_says_would(loaders, set_pillar):
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    loaders.opts["test"] = True
    try:
        ret = loaders.states.hx_maint.window("gate")
    finally:
        loaders.opts["test"] = False
    assert ret["result"] is None
    assert ret["comment"].startswith("Would fail.")


def test_state_gate_bad_pillar_fails_with_key(loaders, set_pillar):
    set_pillar({"windows": [{"name": "w", "start": "25:00", "end": "06:00"}]})
    ret = loaders.states.hx_maint.window("gate")
    assert ret["result"] is False and "hx:maintenance:windows:w:start" in ret["comment"]


def test_gate_requisite_blocks_dependent_states(loaders, set_pillar, tmp_path):
    target = tmp_path / "changed"
    high = {
        "gate": {"hx_maint": ["window"], "__sls__": "t", "__env__": "base"},
        str(target): {"file": ["managed", {"contents": "x"}, {"require": [{"hx_maint": "gate"}]}],
                      "__sls__": "t", "__env__": "base"},
    }
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    ret = loaders.modules.state.high(high).raw
    assert not target.exists()
    assert any("requisite failed" in r["comment"].lower() for r in ret.values() if not r["result"]), ret
    set_pillar({"windows": ALL_DAY})
    ret = loaders.modules.state.high(high).raw
    assert all(r["result"] for r in ret.values()), ret
    assert target.read_text().strip() == "x"


# ------------------------------------------------------------ beacon


@pytest.fixture
def beacon(loaders):
    def run(config=None):
        beacons = salt.loader.beacons(loaders.opts, loaders.modules)
        config = config if config is not None else [{"interval": 30}]
        valid, message = beacons["hx_maint.validate"](config)
        assert valid, message
        return beacons["hx_maint.beacon"](config)
    return run


def test_beacon_validate_rejects_unknown_keys(loaders):
    beacons = salt.loader.beacons(loaders.opts, loaders.modules)
    assert beacons["hx_maint.validate"]([{"interval": 30}])[0] is True
    valid, message = beacons["hx_maint.validate"]([{"windows": []}])
    assert valid is False and "windows" in message
    assert beacons["hx_maint.validate"]({"interval": 30})[0] is False


def test_beacon_fires_on_transitions_only(beacon, set_pillar):
    set_pillar({"windows": ALL_DAY})
    assert beacon() == []          # first observation: recorded, no event
    assert beacon() == []          # still open: nothing
    set_pillar({"windows": ALL_DAY, "blackouts": today_blackout()})
    events = beacon()
    assert len(events) == 1
    assert events[0]["tag"] == "window/close"
    assert events[0]["open"] is False and events[0]["window"] == "allday"
    assert events[0]["next_open"] and "test freeze" in events[0]["reason"]
    assert beacon() == []
    set_pillar({"windows": ALL_DAY})
    events = beacon()
    assert [e["tag"] for e in events] == ["window/open"]
    assert events[0]["window"] == "allday" and events[0]["closes_at"]


def test_beacon_reports_bad_config_once_and_never_raises(beacon, set_pillar):
    set_pillar({"windows": ALL_DAY})
    assert beacon() == []
    set_pillar({"windows": [{"name": "w", "start": "7:5", "end": "06:00"}]})
    events = beacon()
    assert [e["tag"] for e in events] == ["window/error"]
    assert "hx:maintenance:windows:w:start" in events[0]["error"]
    assert beacon() == []          # same error: reported once
    set_pillar({"windows": ALL_DAY})
    assert beacon() == []          # fixed, still open: no transition
