"""hx_rollout.Guard: SIGINT/SIGTERM become Interrupted, held back while traffic moves or the outcome is recorded."""
import os
import signal
import threading

import pytest

from hx_rollout import INTERRUPTS, Guard, Interrupted


def kill_self(sig=signal.SIGINT):
    os.kill(os.getpid(), sig)


@pytest.fixture(autouse=True)
def handlers_restored():
    before = {sig: signal.getsignal(sig) for sig in INTERRUPTS}
    yield
    assert {sig: signal.getsignal(sig) for sig in INTERRUPTS} == before


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_raises_interrupted_a_system_exit(sig, code):
    with pytest.raises(Interrupted) as exc:
        with Guard():
            kill_self(sig)
    assert isinstance(exc.value, SystemExit) and exc.value.code == code
    assert str(exc.value) == f"interrupted by {signal.Signals(sig).name}"


def test_held_block_finishes_then_the_signal_is_raised():
    done = []
    with pytest.raises(Interrupted):
        with Guard() as guard:
            with guard.held():
                kill_self()
                done.append("weights read back")
            done.append("never")
    assert done == ["weights read back"]


def test_an_error_in_a_held_block_goes_on_and_the_signal_waits():
    guard = Guard()
    with pytest.raises(Interrupted):
        with guard:
            with pytest.raises(RuntimeError):
                with guard.held():
                    kill_self()
                    raise RuntimeError("read back differs")
            assert guard.pending == signal.SIGINT
            with guard.held():  # the restore
                pass


def test_settling_defers_every_signal_to_the_end_of_the_run():
    done = []
    with pytest.raises(Interrupted):
        with Guard() as guard:
            with guard.settling():
                kill_self()
                with guard.held():  # a restore's weight change inside the settling: not cut short
                    kill_self(signal.SIGTERM)
                done.append("recorded")
            done.append("lease released")
    assert done == ["recorded", "lease released"]


def test_only_the_first_signal_is_raised():
    guard = Guard()
    with pytest.raises(Interrupted) as exc:
        with guard:
            try:
                kill_self()
            except Interrupted:
                with guard.settling():
                    kill_self(signal.SIGTERM)  # a second Ctrl-C while restoring: logged, ignored
                raise
    assert exc.value.signum == signal.SIGINT


def test_hold_and_let_go_raise_a_signal_that_came_between():
    with pytest.raises(Interrupted):
        with Guard() as guard:
            guard.hold()
            kill_self()
            guard.let_go()


def test_outside_the_main_thread_the_guard_installs_nothing():
    seen = {}

    def worker():
        with Guard() as guard:
            seen["installed"] = dict(guard._previous)  # pylint: disable=protected-access
            with guard.held():
                pass

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(5)
    assert seen == {"installed": {}}
