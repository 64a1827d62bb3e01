"""Shared test set-up: the pure logic in ``_utils/`` is importable as plain modules.

Salt puts the utils directories on ``sys.path`` while it loads custom modules,
which is how ``_modules``/``_states``/``_runners``/``_beacons`` import them;
the unit tests do the same here.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UTILS = os.path.join(REPO, "_utils")
# The lab's tools (loadgen, build_release) are plain scripts, imported by name.
LAB_TOOLS = os.path.join(REPO, "lab")
for path in (UTILS, LAB_TOOLS):
    if path not in sys.path:
        sys.path.insert(0, path)

import salt._logging  # noqa: E402

# Importing salt with no root log handler installs a deferred stderr handler
# that dumps every queued record at interpreter exit, after pytest closed
# stderr ("--- Logging error ---"). pytest's own handlers capture the logs.
salt._logging.shutdown_temp_handler()


# The xdist workers take test modules (``--dist loadfile``) in collection
# order; the longest go first so that no long module starts last and sets
# the wall time alone (longest-first scheduling). Seconds measured with
# ``--durations`` on the 2-core CI machine; docs/testing.md has the table.
# A module not listed sorts by tier: integration, then functional, then unit.
MODULE_COST = {
    "tests/integration/test_remediation.py": 360,
    "tests/integration/test_canary.py": 284,
    "tests/integration/test_deploy.py": 215,
    "tests/integration/test_maint_run.py": 230,
    "tests/functional/test_hx_service_supervisord.py": 104,
    "tests/integration/test_health.py": 89,
    "tests/integration/test_two_masters.py": 50,
    "tests/integration/test_services.py": 82,
    "tests/integration/test_fresh_install.py": 79,
    "tests/functional/test_hx_release.py": 40,
    "tests/integration/test_maintenance.py": 30,
    "tests/integration/test_patching.py": 15,
}
TIER_COST = {"integration": 40, "functional": 10, "unit": 0}


def _module_cost(item):
    path = os.path.relpath(str(item.path), REPO)
    tier = path.split(os.sep)[1] if path.count(os.sep) >= 2 else ""
    return MODULE_COST.get(path, TIER_COST.get(tier, 0))


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
    # sort is stable: the tests of a module keep their order.
    items.sort(key=lambda item: -_module_cost(item))
