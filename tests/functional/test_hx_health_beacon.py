"""The hx_health beacon at loader level: hysteresis and repeats of a failure that holds.

The watched condition is real: a ``process`` check on a marker process this
test starts and kills (and reaps). Only the beacon's clock is the test's, so
a 60 s repeat interval is crossed without waiting for it.
"""
import os
import subprocess
import sys
import uuid

import pytest
import salt.loader
import yaml

from tests.support.loader import REPO, LoadedMinion, minion_opts


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def time(self):
        return self.now


class Marker:
    """A process whose command line carries a unique marker, started and reaped here."""

    def __init__(self):
        self.tag = f"hx-beacon-marker-{uuid.uuid4().hex[:12]}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-c", "import time; time.sleep(600)", self.tag])
        return self

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self):
        if self.proc is not None:
            self.kill()


@pytest.fixture
def marker():
    mark = Marker().start()
    yield mark
    mark.stop()


@pytest.fixture
def beacon(tmp_path, marker, monkeypatch):
    pillar = {"hx": {"health": {"checks": [{"name": "marker", "kind": "process", "pattern": marker.tag}]}}}
    loaded = LoadedMinion(minion_opts(tmp_path), pillar)
    beacons = salt.loader.beacons(loaded.opts, loaded.mods)
    fun = beacons["hx_health.beacon"]
    clock = Clock()
    monkeypatch.setitem(fun.__globals__, "time", clock)

    def run(*config, advance=1.0):
        clock.now += advance
        conf = [{"for_cycles": 2}, {"horizon": 0}, {"sign": False}, {"checks": ["marker"]}, *config]
        valid, why = beacons["hx_health.validate"](conf)
        assert valid, why
        return fun(conf)

    run.validate = beacons["hx_health.validate"]
    run.clock = clock
    return run


def test_failure_is_reported_after_hysteresis_then_repeated_while_it_holds(beacon, marker):
    assert beacon() == []
    marker.kill()
    assert beacon() == [], "one bad run is not enough with for_cycles 2"
    first = beacon()
    assert [(e["tag"], e["status"], e["previous"]) for e in first] == [("marker", "critical", "ok")]
    assert "repeat" not in first[0]

    assert beacon(advance=30) == [], "a repeat before repeat_every (60 s) is due"
    again = beacon(advance=31)
    assert [(e["status"], e["previous"], e["repeat"]) for e in again] == [("critical", "critical", 1)]
    assert again[0]["since"] == first[0]["since"], "a repeat keeps when the failure was first seen"
    assert beacon(advance=60) == [], "the second repeat waits twice as long"
    assert [e["repeat"] for e in beacon(advance=61)] == [2]

    marker.start()
    assert beacon() == []
    back = beacon()
    assert [(e["status"], e["previous"]) for e in back] == [("ok", "critical")]
    assert "repeat" not in back[0]
    assert beacon(advance=600) == [], "ok is never repeated"


def test_repeat_every_zero_reports_transitions_only(beacon, marker):
    marker.kill()
    beacon({"repeat_every": 0})
    assert [e["status"] for e in beacon({"repeat_every": 0})] == ["critical"]
    assert beacon({"repeat_every": 0}, advance=3600) == []


def test_a_repeat_follows_a_changed_repeat_every(beacon, marker):
    marker.kill()
    beacon({"repeat_every": 5})
    assert [e["status"] for e in beacon({"repeat_every": 5})] == ["critical"]
    assert [e["repeat"] for e in beacon({"repeat_every": 5}, advance=5)] == [1]


def test_repeats_double_up_to_repeat_max(beacon, marker):
    conf = ({"repeat_every": 10}, {"repeat_max": 30})
    marker.kill()
    beacon(*conf)
    assert [e["status"] for e in beacon(*conf)] == ["critical"]
    gaps, waited = [], 0.0
    while len(gaps) < 5:
        waited += 1
        if beacon(*conf):
            gaps.append(waited)
            waited = 0.0
    assert gaps == [10, 20, 30, 30, 30]


@pytest.mark.parametrize("key", ["repeat_every", "repeat_max"])
@pytest.mark.parametrize("value", [-1, True, "often", None])
def test_bad_repeat_settings_are_refused_by_validate(beacon, key, value):
    valid, why = beacon.validate([{key: value}])
    assert not valid
    assert key in why


def test_the_example_pillar_beacon_config_is_valid(beacon):
    with open(os.path.join(REPO, "pillar", "hx", "remediation.sls"), encoding="utf-8") as fh:
        example = yaml.safe_load(fh)
    valid, why = beacon.validate(example["beacons"]["hx_health"])
    assert valid, why
