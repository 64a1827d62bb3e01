"""Incident types: one registry that remediation, maintenance and deployment extend.

Each family that opens incidents registers its types here, with the
classification defaults of each (severity, escalate, a narrower default per
reported status). The table is validated once, when this module is imported:
a type registered twice, a severity that does not exist, or a default the
incident desk cannot apply fails at import, not at the first incident.

Operator rules (``hx_incident:classification``, pillar
``hx:incidents:classification``) are tried first; a type no rule matches gets
its registry default, so a rule about one type never changes the others.
"""

SEVERITIES = ("critical", "high", "medium", "low")
PRIORITY = {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4"}
FAMILIES = ("remediation", "maintenance", "deployment", "any")
FALLBACK = "unknown"  # the type of what nobody registered

_REGISTRY = {}


def register(name, family, severity, escalate, doc, by_status=None):
    """Add incident type ``name``; ValueError (naming it) for anything the desk could not apply."""
    if not isinstance(name, str) or not name or name == "*" or not name.replace("_", "").isalnum():
        raise ValueError(f"incident type {name!r}: a name of letters, digits and '_'")
    if name in _REGISTRY:
        raise ValueError(f"incident type {name!r} is registered twice ({_REGISTRY[name]['family']} and {family})")
    if family not in FAMILIES:
        raise ValueError(f"incident type {name!r}: family must be one of {', '.join(FAMILIES)}")
    entries = [(None, severity, escalate)] + [(st, d.get("severity"), d.get("escalate")) for st, d in
                                              (by_status or {}).items()]
    for status, sev, esc in entries:
        where = f"incident type {name!r}" + (f" status {status!r}" if status else "")
        if sev not in SEVERITIES:
            raise ValueError(f"{where}: severity must be one of {', '.join(SEVERITIES)}, got {sev!r}")
        if not isinstance(esc, bool):
            raise ValueError(f"{where}: escalate must be true or false")
    _REGISTRY[name] = {
        "family": family, "severity": severity, "escalate": escalate, "doc": doc,
        "by_status": {st: {"severity": d["severity"], "escalate": d["escalate"]} for st, d in (by_status or {}).items()},
    }
    return name


# -- the table ------------------------------------------------------------------------
# remediation: what hx_remediate opens from beacon events, after the master's
# re-check (the Ansible framework's table, review acceptance case 11: service
# down and disk >= 90 % page people; cpu/memory/endpoint are remediated
# without paging).
register("service_down", "remediation", "critical", True, "a declared service's process is not running")
register("disk", "remediation", "medium", False, "a mount above its disk threshold",
         by_status={"critical": {"severity": "critical", "escalate": True}})
register("process_down", "remediation", "critical", True, "a process check found too few processes")
register("endpoint_failure", "remediation", "high", False, "an http/tcp check fails while its process runs")
register("cpu", "remediation", "high", False, "cpu above its threshold")
register("memory", "remediation", "high", False, "memory above its threshold")
register("load", "remediation", "high", False, "load above its threshold")
register("disk_forecast", "remediation", "medium", False, "a mount predicted to fill within the horizon")
register("config_error", "remediation", "low", False, "the minion's hx:health configuration does not validate")
# maintenance: hx_maint opens one per host a run failed on; such a host is
# left out of rotation until a person puts it back, so someone must be paged.
register("maintenance", "maintenance", "high", True,
         "a maintenance run failed on a host and left it out of rotation")
# deployment: a release whose failure hx_deploy could not undo by itself.
register("deployment", "deployment", "high", True,
         "a deployment failed and could not restore the previous state by itself")
register(FALLBACK, "any", "medium", False, "anything no family registered")


def names():
    """Registered type names, in registration order."""
    return tuple(_REGISTRY)


def entry(name):
    """The registry entry of ``name`` (unregistered: the fallback's)."""
    return _REGISTRY.get(name) or _REGISTRY[FALLBACK]


def default(name, status=None):
    """``{"severity", "priority", "escalate"}``: the registry default of a type for a reported status."""
    found = entry(name)
    chosen = found["by_status"].get(status) or found
    return {"severity": chosen["severity"], "priority": PRIORITY[chosen["severity"]],
            "escalate": chosen["escalate"]}


def default_rules():
    """The registry as classification rules (first match wins), for docs and for configs that list them."""
    rules = []
    for name, found in _REGISTRY.items():
        if name == FALLBACK:
            continue
        for status, d in found["by_status"].items():
            rules.append({"type": name, "status": status, "severity": d["severity"], "escalate": d["escalate"]})
        rules.append({"type": name, "severity": found["severity"], "escalate": found["escalate"]})
    fb = _REGISTRY[FALLBACK]
    rules.append({"type": "*", "severity": fb["severity"], "escalate": fb["escalate"]})
    return rules


def table():
    """Rows ``{type, family, status, severity, priority, escalate, doc}`` (docs/reference/hx_incident.md)."""
    rows = []
    for name, found in _REGISTRY.items():
        for status, d in found["by_status"].items():
            rows.append({"type": name, "family": found["family"], "status": status, "severity": d["severity"],
                         "priority": PRIORITY[d["severity"]], "escalate": d["escalate"], "doc": found["doc"]})
        rows.append({"type": name, "family": found["family"], "status": "any", "severity": found["severity"],
                     "priority": PRIORITY[found["severity"]], "escalate": found["escalate"], "doc": found["doc"]})
    return rows
