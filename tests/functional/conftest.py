"""Fixtures of the functional tier: the hx_deploy runner on the in-memory fleet."""
import pytest

from tests.support.fakefleet import FakeFleet, app_pillar, load_runner


@pytest.fixture
def fleet():
    return FakeFleet(live="blue")


@pytest.fixture
def runner(tmp_path, fleet, monkeypatch):
    return load_runner(tmp_path, fleet, {"demo": app_pillar()}, monkeypatch)
