"""Pure HAProxy logic for hx_traffic: runtime API replies, switch plans, config weights.

Nothing here talks to a socket or touches a file: it parses what HAProxy
printed, validates what an operator typed, decides the order of weight
changes and rewrites config text. Every validation error is a ValueError
that names the bad argument.

The switch order is the one measured safe (docs/architecture.md, measured traps): every
weight that goes **up** is applied before any weight that goes **down**.
Lowering the old color first leaves a moment where the backend's live weight
is smaller than it will be, and HAProxy answered 503 in that moment.
"""

import csv
import io
import re

MAX_WEIGHT = 256
STATES = ("ready", "drain", "maint")
# HAProxy proxy/server names: letters, digits, and - _ . : (cfgparse's
# invalid_char rule). Names travel inside runtime API command lines, so this
# also keeps ';' and newlines (command separators) out.
NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

# show servers state: srv_op_state
OP_STATES = {0: "DOWN", 1: "STARTING", 2: "UP", 3: "STOPPING"}
# show servers state: srv_admin_state bits (HAProxy's SRV_ADMF_*)
ADMIN_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # FMAINT IMAINT CMAINT RMAINT HMAINT
ADMIN_DRAIN_BITS = 0x08 | 0x10  # FDRAIN IDRAIN

# show stat columns kept per server / backend (converted to int when numeric)
STAT_FIELDS = (
    "status", "weight", "uweight", "scur", "smax", "stot", "qcur",
    "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
    "req_tot", "econ", "eresp", "wretr", "wredis", "cli_abrt", "srv_abrt",
    "qtime", "ctime", "rtime", "ttime", "rtime_max",
    "check_status", "check_code", "check_duration", "lastchg", "downtime", "chkfail", "chkdown",
    "lbtot", "addr", "act", "bck",
)
_TEXT_FIELDS = {"status", "check_status", "addr"}
_TOTAL_FIELDS = ("scur", "stot", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
                 "req_tot", "econ", "eresp")


# --------------------------------------------------------------------------
# validation


def validate_name(kind, value):
    """A backend or server name, or ValueError naming ``kind``."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(f"{kind}: invalid name {value!r} (1-100 of letters, digits, - _ . :)")
    return value


def validate_weight(value, what="weight"):
    """An int 0..256 (digit strings accepted: CLI arguments), or ValueError naming ``what``."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: must be an integer 0..{MAX_WEIGHT}, got {value!r}")
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_WEIGHT:
        raise ValueError(f"{what}: must be an integer 0..{MAX_WEIGHT}, got {value!r}")
    return value


def validate_state(value):
    if value not in STATES:
        raise ValueError(f"state: must be one of {', '.join(STATES)}, got {value!r}")
    return value


def validate_weights(backend, weights):
    """``{server: weight}`` -> validated dict (same order); names the bad key."""
    validate_name("backend", backend)
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"weights: must be a non-empty mapping of server -> weight, got {weights!r}")
    out = {}
    for server, weight in weights.items():
        validate_name("server", server)
        out[server] = validate_weight(weight, f"weights:{server}")
    return out


# --------------------------------------------------------------------------
# runtime API replies


def reply_error(reply):
    """For commands that answer nothing on success: the error text, or None."""
    text = (reply or "").strip()
    return text or None


def _num(value):
    if value in ("", None):
        return None
    try:
        return int(value)
    except ValueError:
        return value


def parse_stat(text):
    """``show stat`` CSV -> ``{"servers": {be: {srv: {...}}}, "backends": {be: {...}}}``.

    Server rows keep STAT_FIELDS (numbers as ints, missing as None); backend
    rows the same fields as HAProxy aggregates them. Frontends are skipped.
    """
    if not text or not text.startswith("# "):
        raise ValueError(f"show stat: not a stat CSV: {(text or '')[:200]!r}")
    reader = csv.reader(io.StringIO(text[2:]))
    header = next(reader)
    servers, backends = {}, {}
    for row in reader:
        if not row or not row[0]:
            continue
        rec = dict(zip(header, row))
        pxname, svname = rec.get("pxname"), rec.get("svname")
        if svname == "FRONTEND":
            continue
        out = {}
        for key in STAT_FIELDS:
            raw = rec.get(key, "")
            out[key] = (raw or None) if key in _TEXT_FIELDS else _num(raw)
        if svname == "BACKEND":
            backends[pxname] = out
        else:
            servers.setdefault(pxname, {})[svname] = out
    return {"servers": servers, "backends": backends}


def stat_totals(servers):
    """Sum of the counters in ``_TOTAL_FIELDS`` over ``{srv: row}``."""
    return {key: sum((row.get(key) or 0) for row in servers.values()) for key in _TOTAL_FIELDS}


def admin_state(bits):
    """srv_admin_state bit field -> ready | drain | maint (maint wins)."""
    if bits & ADMIN_MAINT_BITS:
        return "maint"
    if bits & ADMIN_DRAIN_BITS:
        return "drain"
    return "ready"


def parse_servers_state(text):
    """``show servers state`` -> ``{be: {srv: {addr, port, op_state, admin, admin_bits, weight, initial_weight}}}``."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("#"):
        raise ValueError(f"show servers state: unexpected reply {(text or '')[:200]!r}")
    header = lines[1][1:].split()
    out = {}
    for line in lines[2:]:
        rec = dict(zip(header, line.split()))
        if "srv_name" not in rec:
            continue
        op = int(rec["srv_op_state"])
        bits = int(rec["srv_admin_state"])
        port = rec.get("srv_port")
        out.setdefault(rec["be_name"], {})[rec["srv_name"]] = {
            "addr": rec["srv_addr"],
            "port": int(port) if port and port.isdigit() else None,
            "op_state": OP_STATES.get(op, str(op)),
            "admin": admin_state(bits),
            "admin_bits": bits,
            "weight": int(rec["srv_uweight"]),
            "initial_weight": int(rec["srv_iweight"]),
        }
    return out


def parse_info(text):
    """``show info`` -> ``{key: value}`` (strings)."""
    info = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


# --------------------------------------------------------------------------
# switch plan


def switch_plan(current, desired, admin=None):
    """Ordered steps that move ``current`` ``{srv: weight}`` to ``desired``.

    1. ``ready`` for a server that will carry weight but is in drain/maint
       (weight on a drained server carries nothing), then its raise;
    2. every ``raise`` (weight up), in name order;
    3. every ``lower`` (weight down), in name order.

    A server going to weight 0 stays in state ready: roundrobin sends it no
    new request, its in-flight requests finish and its health checks go on.
    Unknown servers in ``desired`` are a ValueError naming them.
    """
    admin = admin or {}
    unknown = sorted(set(desired) - set(current))
    if unknown:
        raise ValueError(f"server: not in backend: {', '.join(unknown)} (known: {', '.join(sorted(current))})")
    raises, lowers = [], []
    for server in sorted(desired):
        old, new = current[server], desired[server]
        state = admin.get(server, "ready")
        if new > 0 and state != "ready":
            raises.append({"server": server, "action": "set_state", "from": state, "to": "ready"})
        if new > old:
            raises.append({"server": server, "action": "raise", "from": old, "to": new})
        elif new < old:
            lowers.append({"server": server, "action": "lower", "from": old, "to": new})
    return [{"step": i, **step} for i, step in enumerate(raises + lowers, 1)]


def apply_plan(current, steps):
    """The weights after ``steps`` (what verification must read back)."""
    out = dict(current)
    for step in steps:
        if step["action"] in ("raise", "lower"):
            out[step["server"]] = step["to"]
    return out


def live_weight(weights, op_states=None, admin=None):
    """Weight that can take traffic: servers UP (or unchecked) and ready."""
    op_states = op_states or {}
    admin = admin or {}
    return sum(
        w for srv, w in weights.items()
        if op_states.get(srv, "UP") in ("UP", "STARTING") and admin.get(srv, "ready") == "ready"
    )


# --------------------------------------------------------------------------
# haproxy.cfg weights

_SECTION_RE = re.compile(
    r"^(global|defaults|frontend|backend|listen|peers|resolvers|userlist|mailers|program|http-errors|ring|cache"
    r"|fcgi-app|crt-store)(?:\s+(\S+)|\s*$)"
)
_WEIGHT_RE = re.compile(r"(\sweight\s+)(\d+)")


def _split_comment(line):
    """(code, comment) of one config line; '#' starts a comment unless escaped/quoted."""
    quote = None
    for i, ch in enumerate(line):
        if ch in "\"'" and (i == 0 or line[i - 1] != "\\"):
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None and (i == 0 or line[i - 1] != "\\"):
            return line[:i], line[i:]
    return line, ""


def _sections(lines):
    """Yield (index, kind, name, code) for every line; kind/name of its section.

    HAProxy starts a section wherever a line's first word is a section
    keyword, indented or not.
    """
    kind, name = None, None
    for i, line in enumerate(lines):
        code, _ = _split_comment(line)
        m = _SECTION_RE.match(code.strip())
        if m:
            kind, name = m.group(1), m.group(2) or None
        yield i, kind, name, code


def config_weights(text):
    """``{backend: {server: weight}}`` of every backend/listen section.

    A server without ``weight`` takes its section's ``default-server weight``,
    else the ``defaults`` section's, else HAProxy's default 1.
    """
    out = {}
    default_weight = {}
    global_default = 1
    for _, kind, name, code in _sections(text.splitlines()):
        words = code.split()
        if not words or kind not in ("backend", "listen", "defaults"):
            continue
        if words[0] == "default-server":
            m = _WEIGHT_RE.search(" " + code)
            if m:
                if kind == "defaults":
                    global_default = int(m.group(2))
                else:
                    default_weight[name] = int(m.group(2))
            continue
        if kind == "defaults" or words[0] != "server" or len(words) < 3:
            if kind in ("backend", "listen") and name:
                out.setdefault(name, {})
            continue
        m = _WEIGHT_RE.search(" " + code)
        weight = int(m.group(2)) if m else default_weight.get(name, global_default)
        out.setdefault(name, {})[words[1]] = weight
    return out


def set_config_weights(text, backend, weights):
    """Config ``text`` with ``weight N`` of each ``server`` in ``backend`` set (added if missing).

    Only ``server`` lines inside that backend/listen section change; comments,
    indentation and every other line are kept. ValueError naming the backend
    or server when it is not in the config.
    """
    lines = text.splitlines(keepends=True)
    pending = dict(weights)
    seen_backend = False
    for i, kind, name, code in _sections([line.rstrip("\r\n") for line in lines]):
        if kind not in ("backend", "listen") or name != backend:
            continue
        seen_backend = True
        words = code.split()
        if len(words) < 3 or words[0] != "server" or words[1] not in pending:
            continue
        weight = validate_weight(pending.pop(words[1]), f"weights:{words[1]}")
        line = lines[i]
        ending = line[len(line.rstrip("\r\n")):]
        body = line[: len(line) - len(ending)]
        code_part, comment = _split_comment(body)
        if _WEIGHT_RE.search(code_part):
            code_part = _WEIGHT_RE.sub(lambda m: f"{m.group(1)}{weight}", code_part, count=1)
        else:
            stripped = code_part.rstrip()
            code_part = f"{stripped} weight {weight}" + (code_part[len(stripped):] if comment else "")
        lines[i] = code_part + comment + ending
    if not seen_backend:
        raise ValueError(f"backend: {backend!r} not found in the haproxy config")
    if pending:
        raise ValueError(f"server: {', '.join(sorted(pending))} not found in backend {backend!r} of the haproxy config")
    return "".join(lines)
