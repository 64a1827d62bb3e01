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


def _packages():
    """{command: Debian package} from scripts/system-packages.txt, the list scripts/sysdeps installs."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "scripts", "system-packages.txt")
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            words = line.split("#", 1)[0].split()
            if len(words) == 2:
                out[words[0]] = words[1]
    return out


def require_binary(name, package=None):
    """Path of command ``name``; missing: a skip, or under CI=true a failure naming its package.

    ``package`` defaults to the one scripts/system-packages.txt lists for
    ``name`` (what ``make test`` installs).
    """
    path = shutil.which(name) or (os.path.exists(f"/usr/sbin/{name}") and f"/usr/sbin/{name}")
    if path:
        return path
    package = package or _packages().get(name, name)
    return _missing(f"{name} not found: install the {package} package (make test does this as root)")
