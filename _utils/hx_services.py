"""Pure validation of the ``hx:services`` pillar (and ``hx:supervisord``, ``hx:recovery``).

Every error is a ValueError whose message names the service and the key, so
an operator can fix pillar from the message alone. Validation happens before
hx_service touches anything.
"""

import re

import hx_budget
import hx_deps
import hx_numbers

PROVIDERS = ("supervisord", "systemd")
DEFAULT_STOP_TIMEOUT = 10.0
DEFAULT_START_TIMEOUT = 30.0
# Service names travel in comma lists and event tags: keep them tag-safe.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")

_STR_KEYS = ("provider", "program", "unit", "supervisor_conf", "bin_env", "reload_signal")
_NUM_KEYS = ("stop_timeout", "start_timeout")
_LIST_KEYS = ("requires", "health")
_KNOWN = set(_STR_KEYS) | set(_NUM_KEYS) | set(_LIST_KEYS) | {"traffic", "budget", "flap"}


def _err(name, key, msg):
    return ValueError(f"hx:services:{name}:{key}: {msg}")


def _str_list(name, key, value):
    if value is None:
        return []
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(name, key, f"must be a list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise _err(name, key, f"lists a name twice: {value!r}")
    return list(value)


def validate_service(name, raw):
    """One service entry -> normalised dict with defaults filled in."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"hx:services: bad service name {name!r} (letters, digits, _ . @ -)")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"hx:services:{name}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise _err(name, unknown[0], f"unknown key (known: {', '.join(sorted(_KNOWN))})")
    svc = {"name": name}
    for key in _STR_KEYS:
        val = raw.get(key)
        if val is not None and (not isinstance(val, str) or not val):
            raise _err(name, key, f"must be a non-empty string, got {val!r}")
        svc[key] = val
    if svc["provider"] is not None and svc["provider"] not in PROVIDERS:
        raise _err(name, "provider", f"must be one of {PROVIDERS}, got {svc['provider']!r}")
    svc["program"] = svc["program"] or name
    svc["unit"] = svc["unit"] or name
    for key, default in (("stop_timeout", DEFAULT_STOP_TIMEOUT), ("start_timeout", DEFAULT_START_TIMEOUT)):
        val = raw.get(key, default)
        if not hx_numbers.is_finite(val) or val <= 0:
            raise _err(name, key, f"must be a number of seconds > 0, got {val!r}")
        svc[key] = float(val)
    for key in _LIST_KEYS:
        svc[key] = _str_list(name, key, raw.get(key))
    if name in svc["requires"]:
        raise _err(name, "requires", "a service cannot require itself")
    traffic = raw.get("traffic")
    if traffic is not None:
        if not isinstance(traffic, dict):
            raise _err(name, "traffic", f"must be a mapping {{backend, server}}, got {traffic!r}")
        extra = sorted(set(traffic) - {"backend", "server"})
        if extra:
            raise _err(name, f"traffic:{extra[0]}", "unknown key (known: backend, server)")
        for key in ("backend", "server"):
            if not isinstance(traffic.get(key), str) or not traffic.get(key):
                raise _err(name, f"traffic:{key}", f"must be a non-empty string, got {traffic.get(key)!r}")
        traffic = {"backend": traffic["backend"], "server": traffic["server"]}
    svc["traffic"] = traffic
    for key, parser in (("budget", hx_budget.parse_budget), ("flap", hx_budget.parse_flap)):
        # None means "inherit hx:recovery"; the module resolves it.
        svc[key] = None if raw.get(key) is None else parser(raw[key], what=f"hx:services:{name}:{key}")
    return svc


def validate_services(raw):
    """The whole ``hx:services`` mapping -> ``{name: service}``.

    Also checks that every ``requires`` names a declared service and that
    there is no cycle, naming the service/key (or the cycle) on failure.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"hx:services must be a mapping of service name to settings, got {type(raw).__name__}")
    services = {name: validate_service(name, raw[name]) for name in raw}
    for name, svc in services.items():
        for req in svc["requires"]:
            if req not in services:
                raise _err(name, "requires", f"names unknown service '{req}'")
    graph = {name: svc["requires"] for name, svc in services.items()}
    cycle = hx_deps.find_cycle(graph)
    if cycle:
        raise ValueError("hx:services: dependency cycle: " + " -> ".join(cycle))
    return services


def validate_supervisord(raw):
    """``hx:supervisord: {conf, bin_env, include_dir, log_dir}`` (paths, all optional).

    ``include_dir``/``log_dir`` are where salt://hx/app writes slot programs
    and their logs.
    """
    keys = ("conf", "bin_env", "include_dir", "log_dir")
    if raw is None:
        return dict.fromkeys(keys)
    if not isinstance(raw, dict):
        raise ValueError(f"hx:supervisord must be a mapping, got {type(raw).__name__}")
    extra = sorted(set(raw) - set(keys))
    if extra:
        raise ValueError(f"hx:supervisord:{extra[0]}: unknown key (known: {', '.join(sorted(keys))})")
    out = {}
    for key in keys:
        val = raw.get(key)
        if val is not None and (not isinstance(val, str) or not val):
            raise ValueError(f"hx:supervisord:{key}: must be a non-empty string, got {val!r}")
        out[key] = val
    return out


def validate_recovery(raw):
    """``hx:recovery: {budget: {max, window}, flap: {count, window}}``, defaults filled."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"hx:recovery must be a mapping, got {type(raw).__name__}")
    extra = sorted(set(raw) - {"budget", "flap"})
    if extra:
        raise ValueError(f"hx:recovery:{extra[0]}: unknown key (known: budget, flap)")
    return {
        "budget": hx_budget.parse_budget(raw.get("budget"), what="hx:recovery:budget"),
        "flap": hx_budget.parse_flap(raw.get("flap"), what="hx:recovery:flap"),
    }


def parse_names(value):
    """``"a,b"`` / ``["a", "b"]`` -> ``["a", "b"]`` (order kept, duplicates dropped)."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [v.strip() if isinstance(v, str) else v for v in value]
    else:
        raise ValueError(f"service names must be a comma list or a list, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"empty or non-string service name in {value!r}")
    return list(dict.fromkeys(items))
