"""Which Salt exception an hx-ops error becomes: a configuration's, or what the user typed.

Salt's ``SaltInvocationError`` is a ``TypeError``: ``salt-call`` and
``salt-run`` answer it with "Passed invalid arguments" and the function's
whole docstring, which is right for a wrong argument and wrong for a wrong
pillar or master setting (no other argument would help). So:

- :class:`ConfigError` (a ``CommandExecutionError``): a value of the pillar,
  the master opts or hx_ops.yaml is wrong; the message names its key
  (``hx:health:checks[0] (app): ...``). ``salt-call`` prints
  ``Error running 'hx_health.check': <message>``, ``salt`` prints
  ``ERROR: <message>``; no docstring.
- ``SaltInvocationError``: an argument the user typed is wrong; the message
  names the argument.

:class:`ConfigError` is its own class so that a caller (a state polling a
gate) can tell a configuration that will not fix itself from an operational
failure that may (both are ``CommandExecutionError``).
"""
from salt.exceptions import CommandExecutionError, SaltInvocationError


class ConfigError(CommandExecutionError):
    """A configuration (pillar, opts) value is wrong; the message names its key."""


def config(exc):
    """A :class:`ConfigError` with the text of ``exc`` (a ValueError naming the key)."""
    return ConfigError(str(exc))


def usage(exc):
    """A ``SaltInvocationError`` with the text of ``exc`` (a ValueError naming the argument)."""
    return SaltInvocationError(str(exc))
