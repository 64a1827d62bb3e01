#!/usr/bin/env python3
"""Service lifecycle figures on real processes (supervisord + the demo app).

1. SIGKILL -> healthy again through ``hx_service.recover`` (median of N runs):
   the module is called as a minion would, with an HTTP health check.
2. CPU time of one ``hx_service.discover`` over 10 managed services.

    .venv/bin/python bench/bench_services.py [--runs 7]
"""
import argparse
import os
import resource
import signal
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.support.httpserver import free_port  # noqa: E402
from tests.support.loader import LoadedMinion, minion_opts  # noqa: E402
from tests.support.supervisor import Supervisor, demo_command  # noqa: E402

VENV = os.path.dirname(os.path.dirname(sys.executable))


def pillar(sup, ports):
    return {
        "hx": {
            "supervisord": {"conf": sup.conf, "bin_env": VENV},
            "services": {name: {"provider": "supervisord", "health": [f"{name}_http"]} for name in ports},
            "health": {
                "checks": [
                    {"name": f"{name}_http", "kind": "http", "url": f"http://127.0.0.1:{port}/health", "timeout": 1}
                    for name, port in ports.items()
                ]
            },
        }
    }


def cpu_seconds(who=resource.RUSAGE_SELF):
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hx-bench-") as tmp:
        ports = {f"svc{n:02d}": free_port() for n in range(10)}
        sup = Supervisor(tmp, {name: {"command": demo_command(port)} for name, port in ports.items()}).start()
        try:
            for name in ports:
                sup.ctl("start", name)
            minion = LoadedMinion(minion_opts(os.path.join(tmp, "minion")), pillar(sup, ports))
            recover = minion.mods["hx_service.recover"]
            release = minion.mods["hx_service.release"]
            kill_to_healthy, reported = [], []
            for _ in range(args.runs):
                release("svc00")  # a fresh budget each run: the bench measures recovery, not quarantine
                pid = sup.pid("svc00")
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                ret = recover("svc00")
                kill_to_healthy.append((time.monotonic() - killed) * 1000)
                reported.append(ret["time_to_recover_ms"])
                assert ret["outcome"] == "recovered", ret
            discover = minion.mods["hx_service.discover"]
            discover()  # warm the loader and the HTTP session once
            samples = []
            for _ in range(5):
                before, kids, wall = cpu_seconds(), cpu_seconds(resource.RUSAGE_CHILDREN), time.monotonic()
                found = discover()
                samples.append(
                    (cpu_seconds() - before, time.monotonic() - wall, cpu_seconds(resource.RUSAGE_CHILDREN) - kids)
                )
                assert len(found) == 10
        finally:
            sup.stop()
    print(f"recover: SIGKILL -> healthy, median of {args.runs}: {statistics.median(kill_to_healthy):.0f} ms "
          f"(min {min(kill_to_healthy):.0f}, max {max(kill_to_healthy):.0f}); "
          f"hx's own time_to_recover_ms median {statistics.median(reported):.0f} ms")
    print("  (supervisord startsecs=1 is part of it: supervisorctl start returns once the process has lived 1 s)")
    cpu = statistics.median(s[0] for s in samples) * 1000
    wall = statistics.median(s[1] for s in samples) * 1000
    kids = statistics.median(s[2] for s in samples) * 1000
    print(f"discover over 10 services (median of 5): CPU {cpu:.0f} ms in the module + {kids:.0f} ms in the "
          f"supervisorctl processes it runs = {cpu + kids:.0f} ms; wall {wall:.0f} ms")


if __name__ == "__main__":
    main()
