"""Patching decisions, pure: which upgrades to apply, security origin, reboot policy.

Parsers take the text of ``apt-cache policy``, ``yum/dnf updateinfo list
security`` and ``needs-restarting -r``; the ``hx_patch`` module runs those
commands (with ``LC_ALL=C``) and applies the plan with Salt's ``pkg.*``.
"""
import fnmatch
import re

DEFAULT_REBOOT_DELAY = 5
_VERSION_LINE = re.compile(r"^ (?:\*\*\*|   ) (\S+) (-?\d+)$")
RPM_ARCHES = ("x86_64", "noarch", "aarch64", "i686", "i386", "ppc64le", "s390x", "armv7hl", "src")


# ---------------------------------------------------------------- pillar


def name_list(value, where):
    """A list of package names/globs (or a comma string) -> list of str."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: must be a list of package names, got {value!r}")
    return list(value)


def reboot_policy(auto_reboot=False, delay=None):
    """Pillar ``hx:patching:auto_reboot`` / ``reboot_delay_minutes`` -> policy."""
    if auto_reboot is None:
        auto_reboot = False
    if not isinstance(auto_reboot, bool):
        raise ValueError(f"hx:patching:auto_reboot: must be true or false, got {auto_reboot!r}")
    if delay is None:
        delay = DEFAULT_REBOOT_DELAY
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise ValueError(f"hx:patching:reboot_delay_minutes: must be a non-negative integer, got {delay!r}")
    return {"auto_reboot": auto_reboot, "delay_minutes": delay}


# -------------------------------------------------------------- parsing


def parse_apt_policy(text):
    """``apt-cache policy pkg...`` (LC_ALL=C) -> {pkg: {installed, candidate, versions: {ver: [sources]}}}.

    A source is ``{priority, uri, dist}``; ``dist`` is ``bookworm-security/main``
    style (``./`` for flat repositories, None for the dpkg status file).
    """
    packages, current, version = {}, None, None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" ") and line.rstrip().endswith(":"):
            current = {"installed": None, "candidate": None, "versions": {}}
            packages[line.rstrip()[:-1]] = current
            version = None
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("Installed:"):
            current["installed"] = _none(stripped.split(":", 1)[1].strip())
        elif stripped.startswith("Candidate:"):
            current["candidate"] = _none(stripped.split(":", 1)[1].strip())
        elif stripped.startswith("Version table:"):
            continue
        elif _VERSION_LINE.match(line):
            version = _VERSION_LINE.match(line).group(1)
            current["versions"].setdefault(version, [])
        elif version is not None:
            tokens = stripped.split()
            if len(tokens) >= 2 and re.fullmatch(r"-?\d+", tokens[0]):
                dist = tokens[2] if len(tokens) >= 4 else None
                current["versions"][version].append(
                    {"priority": int(tokens[0]), "uri": tokens[1], "dist": dist}
                )
    return packages


def _none(value):
    return None if value in ("(none)", "") else value


def is_security_source(source):
    """A Debian/Ubuntu source carries security updates.

    ``<codename>-security`` suites (Debian >= 11, every Ubuntu) or a
    ``security.*`` host (Debian <= 10 ``buster/updates`` on security.debian.org).
    """
    dist = (source.get("dist") or "").split("/")[0]
    host = re.sub(r"^[a-z+]+://", "", source.get("uri") or "").split("/")[0]
    return dist.endswith("-security") or host.startswith("security.")


def apt_security(policy, upgrades):
    """Names among ``upgrades`` ({pkg: candidate}) whose candidate comes from a security source."""
    found = set()
    for name, candidate in upgrades.items():
        entry = policy.get(name) or policy.get(name.split(":")[0])
        if not entry:
            continue
        sources = entry["versions"].get(candidate, [])
        if any(is_security_source(s) for s in sources):
            found.add(name)
    return found


def rpm_name(nevra):
    """``openssl-libs-1:3.0.7-6.el9_2.x86_64`` -> ``openssl-libs``."""
    base = nevra
    head, _, arch = base.rpartition(".")
    if head and arch in RPM_ARCHES:
        base = head
    parts = base.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else base


def parse_updateinfo_security(text):
    """``yum updateinfo list security`` / ``dnf updateinfo list --security`` -> package names."""
    names = set()
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) == 3 and ("/Sec." in tokens[1] or tokens[1].lower() in ("security", "unknown/sec.")):
            names.add(rpm_name(tokens[2]))
    return names


def parse_needs_restarting(retcode, text):
    """``needs-restarting -r``: exit 1 = reboot needed, 0 = not; anything else unknown."""
    packages = [m.group(1) for m in re.finditer(r"(?m)^\s*\*\s+(\S+)", text or "")]
    if retcode == 1:
        return {"required": True, "packages": packages, "reason": "needs-restarting -r: reboot required"}
    if retcode == 0:
        return {"required": False, "packages": [], "reason": "needs-restarting -r: no reboot needed"}
    return {"required": None, "packages": [], "reason": f"needs-restarting -r failed (exit {retcode}): {text.strip()[:200]}"}


# ------------------------------------------------------------ decisions


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name.split(":")[0], p) for p in patterns)


def select(upgrades, names):
    """Only the upgrades whose name matches ``names`` (globs); None = all."""
    if names is None:
        return dict(upgrades)
    return {n: v for n, v in upgrades.items() if _matches(n, names)}


def plan(upgrades, installed, security=None, security_only=False, names=None, exclude=(), hold=()):
    """Decide, for every available upgrade, what ``hx_patch.apply`` does with it.

    upgrades
        ``{pkg: candidate}`` (``pkg.list_upgrades``)
    installed
        ``{pkg: current}``
    security
        names whose candidate is a security update, or None when unknown
    names
        only these packages (names or globs); None = all.  Others are left
        out of the plan entirely.

    Returns ``{pkg: {current, candidate, security, action, why}}`` with action
    ``upgrade`` or ``skip``.
    """
    if security_only and security is None:
        raise ValueError("security_only: cannot tell security updates apart on this system")
    out = {}
    for name in sorted(upgrades):
        entry = {
            "current": installed.get(name),
            "candidate": upgrades[name],
            "security": None if security is None else name in security,
            "action": "upgrade",
            "why": None,
        }
        if names is not None and not _matches(name, names):
            continue
        if _matches(name, hold):
            entry.update(action="skip", why="held (hx:patching:hold)")
        elif _matches(name, exclude):
            entry.update(action="skip", why="excluded (hx:patching:exclude / exclude)")
        elif security_only and not entry["security"]:
            entry.update(action="skip", why="not a security update")
        out[name] = entry
    return out


def reboot_plan(required, policy):
    """What ``hx_patch.maybe_reboot`` does: the one place the reboot call is built.

    Returns ``{action: none|report|reboot, reason, call}``; ``call`` is
    ``{fun: system.reboot, kwargs: {at_time: minutes}}`` only for ``reboot``.
    """
    if required is None:
        return {"action": "report", "reason": "cannot tell whether a reboot is required; not rebooting", "call": None}
    if not required:
        return {"action": "none", "reason": "no reboot required", "call": None}
    if not policy["auto_reboot"]:
        return {"action": "report", "reason": "reboot required; hx:patching:auto_reboot is false: report only",
                "call": None}
    delay = policy["delay_minutes"]
    when = f"in {delay} minute(s)" if delay else "now"
    return {
        "action": "reboot",
        "reason": f"reboot required; auto_reboot: rebooting {when}",
        "call": {"fun": "system.reboot", "kwargs": {"at_time": delay}},
    }
