"""
Patching for hx-ops minions: what is pending, apply it (all or security only,
honouring holds and excludes), and whether a reboot is required / due.

Built on Salt's ``pkg.*``: ``pkg.list_upgrades(dist_upgrade=False)`` is the
list (what ``apt-get upgrade`` would do), ``pkg.install(only_upgrade=True)``
with the exact candidate versions applies it, ``pkg.hold`` pins pillar holds.
Pillar ``hx:patching`` (``exclude``, ``hold``, ``auto_reboot``,
``reboot_delay_minutes``); reference ``docs/reference/hx_patch.md``.
Decisions are in ``_utils/hx_patching.py``.
"""
import logging
import os
import shutil

import hx_errors
import hx_typed
import hx_patching
import salt.utils.environment
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "hx_patch"

C_ENV = {"LC_ALL": "C", "LANG": "C", "LANGUAGE": ""}
DEFAULT_REBOOT_FILE = "/var/run/reboot-required"


def __virtual__():
    family = __grains__.get("os_family")
    if family not in ("Debian", "RedHat"):
        return (False, f"hx_patch: only Debian and RedHat family minions are supported, not {family}")
    return __virtualname__


# ---------------------------------------------------------------- helpers


def _debian():
    return __grains__.get("os_family") == "Debian"


def _env():
    """The environment Salt gives its own ``pkg`` module (``system-environment:modules:pkg`` in
    minion config or pillar), so the package manager asked here is configured like the one
    ``pkg.*`` installs with (a proxy, ``APT_CONFIG``); C locale on top, for parsing."""
    pkg_module = {"__opts__": __opts__, "__pillar__": __pillar__, "__file__": "modules/pkg.py",
                  "__virtualname__": "pkg"}
    return {**salt.utils.environment.get_module_environment(pkg_module), **C_ENV}


def _pillar(key, default=None):
    return __salt__["pillar.get"](f"hx:patching:{key}", default, unmask=True)


def _names(value, where):
    """Package names typed as argument ``where``."""
    try:
        return hx_patching.name_list(value, where)
    except ValueError as exc:
        raise hx_errors.usage(exc) from None


def _pillar_names(key):
    """Package names of pillar ``hx:patching:<key>``."""
    try:
        return hx_patching.name_list(_pillar(key), f"hx:patching:{key}")
    except ValueError as exc:
        raise hx_errors.config(exc) from None


def _bool(value, key):
    try:
        return hx_typed.flag(key, value)
    except ValueError as exc:
        raise hx_errors.usage(exc) from None


def _upgrades(refresh):
    kwargs = {"refresh": refresh}
    if _debian():
        # upgrade, not dist-upgrade: never installs or removes other packages.
        kwargs["dist_upgrade"] = False
    return __salt__["pkg.list_upgrades"](**kwargs)


def _security(upgrades):
    """Names of security upgrades, or None when this system cannot tell."""
    if not upgrades:
        return set()
    if _debian():
        ret = __salt__["cmd.run_all"](
            ["apt-cache", "policy", *sorted(upgrades)], python_shell=False, env=_env(),
            output_loglevel="trace", ignore_retcode=True,
        )
        if ret["retcode"] != 0:
            log.warning("hx_patch: apt-cache policy failed: %s", ret["stderr"])
            return None
        return hx_patching.apt_security(hx_patching.parse_apt_policy(ret["stdout"]), upgrades)
    tool = "dnf" if shutil.which("dnf") else "yum"
    cmd = [tool, "-q", "updateinfo", "list", "--security"] if tool == "dnf" else [tool, "-q", "updateinfo", "list", "security"]
    ret = __salt__["cmd.run_all"](cmd, python_shell=False, env=_env(), output_loglevel="trace", ignore_retcode=True)
    if ret["retcode"] != 0:
        log.warning("hx_patch: %s updateinfo failed: %s", tool, ret["stderr"])
        return None
    return hx_patching.parse_updateinfo_security(ret["stdout"]) & set(upgrades)


def _plan(security_only, refresh, pkgs, exclude):
    security_only = _bool(security_only, "security_only")
    refresh = _bool(refresh, "refresh")
    names = _names(pkgs, "pkgs") or None
    excluded = _pillar_names("exclude") + _names(exclude, "exclude")
    held = _pillar_names("hold")
    # Select first: the security lookup then only asks apt about these.
    upgrades = hx_patching.select(_upgrades(refresh), names)
    installed = __salt__["pkg.list_pkgs"]()
    security = _security(upgrades)
    try:
        packages = hx_patching.plan(upgrades, installed, security, security_only, names, excluded, held)
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from None
    if security_only:
        packages = {n: e for n, e in packages.items() if e["security"]}
    return packages, held


# ------------------------------------------------------------ functions


def pending(security_only=False, refresh=True, pkgs=None, exclude=None):
    """
    Upgrades available now, as ``hx_patch.apply`` would see them.

    security_only
        only security updates (Debian/Ubuntu: candidate from a ``*-security``
        suite; RHEL: ``updateinfo`` security advisories)
    refresh
        refresh the package database first (``apt-get update`` of every source)
    pkgs
        only these packages (list or comma string, globs allowed)
    exclude
        also skip these (on top of pillar ``hx:patching:exclude``)

    Returns ``{count, upgrade, security_only, packages: {pkg: {current,
    candidate, security, action: upgrade|skip, why}}}``; ``security`` is None
    where the system cannot tell.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_patch.pending
        salt '*' hx_patch.pending security_only=True refresh=False
    """
    packages, _ = _plan(security_only, refresh, pkgs, exclude)
    return {
        "count": len(packages),
        "upgrade": sum(1 for e in packages.values() if e["action"] == "upgrade"),
        "security_only": _bool(security_only, "security_only"),
        "packages": packages,
    }


def apply(security_only=False, exclude=None, refresh=True, pkgs=None, test=False):
    """
    Apply pending upgrades: pillar ``hx:patching:hold`` packages are put on
    hold (``pkg.hold``) and skipped, ``hx:patching:exclude`` and ``exclude``
    are skipped, then the remaining packages are upgraded to exactly the
    candidate versions ``pending`` listed (``pkg.install only_upgrade=True``;
    RHEL: ``pkg.upgrade pkgs=...``).

    pkgs
        only these packages (names or globs); nothing else on the machine moves
    test
        show the plan, change nothing (also under ``test=True`` opts)

    Returns ``{result, changes: {pkg: {old, new}}, upgraded, skipped: {pkg:
    why}, failed: {pkg: why}, held, reboot_required, test}``.  A package that
    did not reach its candidate makes ``result`` False (retcode 1).

    CLI Example:

    .. code-block:: bash

        salt '*' hx_patch.apply
        salt '*' hx_patch.apply security_only=True
        salt '*' hx_patch.apply pkgs=openssl,libssl3 refresh=False
        salt '*' hx_patch.apply exclude='linux-image-*' test=True
    """
    test = _bool(test, "test") or bool(__opts__.get("test"))
    packages, held = _plan(security_only, refresh, pkgs, exclude)
    targets = {n: e["candidate"] for n, e in packages.items() if e["action"] == "upgrade"}
    skipped = {n: e["why"] for n, e in packages.items() if e["action"] != "upgrade"}
    ret = {"result": True, "test": test, "changes": {}, "upgraded": sorted(targets), "skipped": skipped,
           "failed": {}, "held": [], "reboot_required": None}
    installed = __salt__["pkg.list_pkgs"]()
    to_hold = [name for name in held if name in installed]
    if test:
        ret["changes"] = {n: {"old": packages[n]["current"], "new": v} for n, v in targets.items()}
        ret["held"] = to_hold
        return ret
    if to_hold:
        for name, outcome in __salt__["pkg.hold"](pkgs=to_hold).items():
            if outcome.get("result") is not False:
                ret["held"].append(name)
            else:
                log.warning("hx_patch: cannot hold %s: %s", name, outcome.get("comment"))
    if targets:
        try:
            if _debian():
                changes = __salt__["pkg.install"](
                    pkgs=[{n: v} for n, v in sorted(targets.items())], refresh=False, only_upgrade=True
                )
            else:
                changes = __salt__["pkg.upgrade"](pkgs=sorted(targets), refresh=False)
        except CommandExecutionError as exc:
            info = getattr(exc, "info", None) or {}
            raise CommandExecutionError(
                f"upgrading {', '.join(sorted(targets))} failed: {exc}", info=info
            ) from None
        ret["changes"] = changes or {}
        now = __salt__["pkg.list_pkgs"]()
        for name, candidate in targets.items():
            if now.get(name) != candidate:
                ret["failed"][name] = f"at {now.get(name)}, expected {candidate}"
    ret["result"] = not ret["failed"]
    if not ret["result"]:
        __context__["retcode"] = 1
    ret["reboot_required"] = reboot_required()["required"]
    return ret


def reboot_required():
    """
    Whether the minion needs a reboot after patching.

    Debian/Ubuntu: ``/var/run/reboot-required`` exists (packages from
    ``/var/run/reboot-required.pkgs``); the path can be changed with the
    minion option ``hx_patch.reboot_required_file``.  RHEL:
    ``needs-restarting -r`` (exit 1 = required); without it ``required`` is
    None (unknown).

    Returns ``{required: bool|None, packages, reason}``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_patch.reboot_required
    """
    if _debian():
        path = __salt__["config.get"]("hx_patch.reboot_required_file", DEFAULT_REBOOT_FILE)
        if not os.path.exists(path):
            return {"required": False, "packages": [], "reason": f"{path} absent"}
        packages = []
        try:
            with open(path + ".pkgs", encoding="utf-8") as fh:
                packages = sorted({line.strip() for line in fh if line.strip()})
        except OSError:
            pass
        return {"required": True, "packages": packages, "reason": f"{path} present"}
    tool = shutil.which("needs-restarting")
    if not tool:
        return {"required": None, "packages": [], "reason": "needs-restarting not found (install yum-utils/dnf-utils)"}
    ret = __salt__["cmd.run_all"]([tool, "-r"], python_shell=False, env=_env(), ignore_retcode=True)
    return hx_patching.parse_needs_restarting(ret["retcode"], ret["stdout"] + ret["stderr"])


def reboot_policy():
    """
    The reboot policy from pillar: ``{auto_reboot, delay_minutes}``
    (``hx:patching:auto_reboot`` default false = report only,
    ``hx:patching:reboot_delay_minutes`` default 5).

    CLI Example:

    .. code-block:: bash

        salt '*' hx_patch.reboot_policy
    """
    try:
        return hx_patching.reboot_policy(_pillar("auto_reboot", False), _pillar("reboot_delay_minutes"))
    except ValueError as exc:
        raise hx_errors.config(exc) from None


def _reboot(call):
    # The only place hx-ops reboots a machine: exactly the call the plan shows.
    log.warning("hx_patch: rebooting: %s(%s)", call["fun"], call["kwargs"])
    return __salt__[call["fun"]](**call["kwargs"])


def maybe_reboot(dry_run=False):
    """
    Reboot if one is required and the policy allows it: ``auto_reboot``
    false reports only; true runs ``system.reboot at_time=<delay>``
    (``shutdown -r +<delay>``).  ``dry_run=True`` (or ``test=True`` opts)
    returns the plan, including the exact call, without rebooting.

    Returns ``{required, packages, policy, action: none|report|reboot,
    reason, call, done, dry_run}``.

    CLI Example:

    .. code-block:: bash

        salt '*' hx_patch.maybe_reboot dry_run=True
        salt '*' hx_patch.maybe_reboot
    """
    dry_run = _bool(dry_run, "dry_run") or bool(__opts__.get("test"))
    policy = reboot_policy()
    needed = reboot_required()
    plan = hx_patching.reboot_plan(needed["required"], policy)
    ret = {
        "required": needed["required"], "packages": needed["packages"], "policy": policy,
        "action": plan["action"], "reason": plan["reason"], "call": plan["call"],
        "done": False, "dry_run": dry_run,
    }
    if plan["action"] == "reboot" and not dry_run:
        ret["output"] = _reboot(plan["call"])
        ret["done"] = True
    return ret
