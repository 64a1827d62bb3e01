"""Missing dependencies: a skip on a developer's machine, a failure in CI."""
import os
import shutil

import pytest


def _missing(message):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_root(reason):
    """Tests that change the system (apt, packages) need root; CI runs as root."""
    if os.geteuid() != 0:
        _missing(f"needs root: {reason}")


def require_binary(name, package):
    path = shutil.which(name) or (os.path.exists(f"/usr/sbin/{name}") and f"/usr/sbin/{name}")
    if path:
        return path
    _missing(f"{name} not found: install the {package} package (make test does this as root)")
