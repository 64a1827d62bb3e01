"""Loader-level: which exception hx_patch raises for a bad pillar and for a bad typed argument.

A bad hx:patching pillar is a configuration error (CommandExecutionError
naming the key, which salt-call prints without the docstring); a bad typed
argument stays SaltInvocationError naming the argument. Both are raised
before pkg.* is asked anything.
"""
import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from tests.support.loader import LoadedMinion, minion_opts


@pytest.fixture(scope="module")
def opts(tmp_path_factory):
    return minion_opts(tmp_path_factory.mktemp("hx_patch"))


@pytest.fixture
def mod(opts):
    def _load(patching):
        mods = LoadedMinion(opts, {"hx": {"patching": patching}}).mods
        # This machine is Debian: hx_patch must load (a skip would hide a broken module).
        assert "hx_patch.pending" in mods, mods.missing_fun_string("hx_patch.pending")
        return _Module(mods)

    return _load


class _Module:
    def __init__(self, mods):
        self.mods = mods

    def __getattr__(self, fun):
        return self.mods[f"hx_patch.{fun}"]


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
