"""Loader-level: which exception hx_patch raises for a bad pillar and for a bad typed argument.

A bad hx:patching pillar is a configuration error (CommandExecutionError
naming the key, which salt-call prints without the docstring); a bad typed
argument stays SaltInvocationError naming the argument. Both are raised
before pkg.* is asked anything.
"""
import pathlib

import pytest
import salt.config
import yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError
from saltfactories.utils.functional import Loaders

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("hx_patch")
    for sub in ("pillar", "files", "pki", "sock", "extmods", "cache"):
        (root / sub).mkdir()
    (root / "pillar" / "top.sls").write_text("base:\n  '*':\n    - hx\n", encoding="utf-8")
    (root / "pillar" / "hx.sls").write_text("{}\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def loaders(tree):
    opts = salt.config.minion_config(None)
    opts.update(
        id="hx-functional",
        file_client="local",
        cachedir=str(tree / "cache"),
        pki_dir=str(tree / "pki"),
        sock_dir=str(tree / "sock"),
        extension_modules=str(tree / "extmods"),
        log_file=str(tree / "minion.log"),
        file_roots={"base": [str(tree / "files")]},
        pillar_roots={"base": [str(tree / "pillar")]},
        module_dirs=[str(REPO / "_modules")],
        utils_dirs=[str(REPO / "_utils")],
    )
    return Loaders(opts)


@pytest.fixture
def mod(loaders, tree):
    def _set(patching):
        (tree / "pillar" / "hx.sls").write_text(yaml.safe_dump({"hx": {"patching": patching}}), encoding="utf-8")
        loaders.reload_all()
        if "hx_patch.pending" not in loaders.modules:
            pytest.skip("hx_patch does not load here (not a Debian/RedHat family minion)")
        return loaders.modules.hx_patch

    return _set


@pytest.mark.parametrize("pillar, call, key", [
    ({"hold": [1]}, "pending", "hx:patching:hold: must be a list of package names"),
    ({"exclude": {"a": 1}}, "pending", "hx:patching:exclude: must be a list of package names"),
    ({"auto_reboot": "yes"}, "reboot_policy", "hx:patching:auto_reboot: must be true or false"),
    ({"reboot_delay_minutes": -1}, "reboot_policy", "hx:patching:reboot_delay_minutes"),
])
def test_bad_pillar_is_a_configuration_error_naming_the_key(mod, pillar, call, key):
    with pytest.raises(CommandExecutionError, match=key) as exc:
        getattr(mod(pillar), call)()
    assert not isinstance(exc.value, SaltInvocationError), exc.value


@pytest.mark.parametrize("kwargs, arg", [
    ({"exclude": [1]}, "^exclude: must be a list"),
    ({"pkgs": {"a": 1}}, "^pkgs: must be a list"),
    ({"security_only": "maybe"}, "^security_only must be true or false"),
])
def test_bad_typed_argument_stays_a_usage_error_naming_it(mod, kwargs, arg):
    with pytest.raises(SaltInvocationError, match=arg):
        mod({}).pending(refresh=False, **kwargs)
