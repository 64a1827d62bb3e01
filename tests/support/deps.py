"""Missing dependencies: a skip on a developer's machine, a failure in CI."""
import os
import shutil

import pytest


def require_binary(name, package):
    path = shutil.which(name) or (os.path.exists(f"/usr/sbin/{name}") and f"/usr/sbin/{name}")
    if path:
        return path
    message = f"{name} not found: install the {package} package (make test does this as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)
