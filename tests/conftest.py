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
