"""Waiting for a condition with a bound, instead of sleeping and hoping."""
import time


def wait_for(cond, timeout, what, interval=0.1):
    """Poll ``cond`` until it returns something truthy and return that; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        val = cond()
        if val:
            return val
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
