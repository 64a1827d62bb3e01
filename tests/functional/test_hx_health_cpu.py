"""hx_health's CPU figure: measured since the previous ask when that is recent, never a sleep in the beacon loop.

psutil does the measuring for real; the test records how it was asked and
sets when this thread last asked (hx_health keeps that in __context__).
"""
import threading
import time

import pytest

from tests.support.loader import LoadedMinion, minion_opts


@pytest.fixture
def system(tmp_path, monkeypatch):
    mods = LoadedMinion(minion_opts(tmp_path)).mods
    fun = mods["hx_health.system"]
    context = mods.pack["__context__"]
    psutil = fun.__globals__["psutil"]
    asked, real = [], psutil.cpu_percent

    def recording(interval=None, percpu=False):
        asked.append(interval)
        return real(interval=interval, percpu=percpu)

    monkeypatch.setattr(psutil, "cpu_percent", recording)

    def run(asked_ago=None):
        """Ask for the CPU figure; ``asked_ago``: pretend this thread last asked that many s ago."""
        if asked_ago is not None:
            context.setdefault("hx_health_cpu_at", {})[threading.get_ident()] = time.monotonic() - asked_ago
        value = fun()["metrics"]["cpu"]["value"]
        assert 0.0 <= value <= 100.0
        return asked[-1]

    return run


def test_first_ask_samples_then_a_recent_one_reuses_the_interval(system):
    assert system() == 0.2, "nothing to compare with: a 0.2 s sample"
    assert system(asked_ago=1.0) is None, "asked 1 s ago (the beacon's period): no sleep"
    assert system(asked_ago=0.05) == 0.2, "asked 50 ms ago: too short to mean anything, sample"
    assert system(asked_ago=30.0) == 0.2, "asked 30 s ago: too old to stand for now, sample"


def test_another_thread_has_its_own_previous_ask(system):
    system(asked_ago=1.0)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(system()))
    thread.start()
    thread.join(timeout=10)
    assert seen == [0.2], "psutil's previous sample is per thread: a new thread must sample"
