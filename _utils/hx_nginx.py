"""Pure nginx upstream-file logic for hx_traffic's nginx driver.

The upstream file holds one or more blocks, one statement per line::

    upstream demo {
        server 127.0.0.11:8080 weight=100; # hx:app1_blue
        server 127.0.0.11:8081 down; # hx:app1_green w=0
        keepalive 16;
    }

A server is named by its ``# hx:<name>`` comment, or through a mapping
``{name: "host:port"}`` (pillar ``hx:traffic:nginx:servers``). hx's own view
of a server (its weight and its admin state) rides in that comment, because
nginx has no weight 0 and no drain: weight 0 or a state other than ready is
rendered as ``down``, and ``w=``/``state=`` remember what hx meant. Other
server parameters (``max_fails=3``, ``backup``, ...) and other directives in
the block are kept as they are.
"""

import re

import hx_haproxy

_UPSTREAM_RE = re.compile(r"^\s*upstream\s+(\S+)\s*\{\s*(#.*)?$")
_SERVER_RE = re.compile(r"^\s*server\s+([^;#]+?)\s*;\s*(#.*)?$")
_HX_RE = re.compile(r"#\s*hx:(\S+)((?:\s+\w+=\S+)*)")


def _meta(comment):
    m = _HX_RE.search(comment or "")
    if not m:
        return None, {}
    extra = dict(kv.split("=", 1) for kv in m.group(2).split())
    return m.group(1), extra


def parse(text, names=None):
    """Upstream file text -> ``{upstream: {"servers": {name: {...}}, "directives": [...]}}``.

    ``names`` maps server name -> ``host:port`` for servers without an
    ``# hx:`` comment. Each server: ``addr``, ``weight`` (hx's), ``state``
    (ready|drain|maint), ``params`` (other nginx parameters, in order).
    ValueError names the line that cannot be understood.
    """
    by_addr = {addr: name for name, addr in (names or {}).items()}
    out, current = {}, None
    for lineno, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0].strip()
        if not code and current is None:
            continue
        m = _UPSTREAM_RE.match(line)
        if m:
            if current is not None:
                raise ValueError(f"upstream file line {lineno}: nested upstream block")
            current = out.setdefault(m.group(1), {"servers": {}, "directives": []})
            continue
        if current is None:
            raise ValueError(f"upstream file line {lineno}: outside an upstream block: {line.strip()!r}")
        if code == "}":
            current = None
            continue
        if not code:
            continue
        m = _SERVER_RE.match(line)
        if not m:
            if not code.endswith(";"):
                raise ValueError(f"upstream file line {lineno}: one statement per line ending in ';': {line.strip()!r}")
            current["directives"].append(code)
            continue
        words = m.group(1).split()
        addr, params = words[0], words[1:]
        name, meta = _meta(m.group(2))
        name = name or by_addr.get(addr)
        if not name:
            raise ValueError(f"upstream file line {lineno}: server {addr} has no '# hx:<name>' comment and no "
                             "name in hx:traffic:nginx:servers")
        down = "down" in params
        weight = 1
        rest = []
        for p in params:
            if p.startswith("weight="):
                weight = int(p.split("=", 1)[1])
            elif p != "down":
                rest.append(p)
        if "w" in meta:
            weight = int(meta["w"])
        state = meta.get("state") or ("maint" if down and "w" not in meta else "ready")
        if name in current["servers"]:
            raise ValueError(f"upstream file line {lineno}: server name {name!r} used twice")
        current["servers"][name] = {"addr": addr, "weight": weight, "state": state, "params": rest}
    if current is not None:
        raise ValueError("upstream file: unterminated upstream block (missing '}')")
    return out


def render(upstreams):
    """The inverse of ``parse``: weight 0 or state != ready renders as ``down``."""
    lines = []
    for name, block in upstreams.items():
        lines.append(f"upstream {name} {{")
        for srv, s in block["servers"].items():
            params = list(s.get("params", []))
            live = s["weight"] > 0 and s["state"] == "ready"
            if s["weight"] > 0:
                params.insert(0, f"weight={s['weight']}")
            if not live:
                params.append("down")
            meta = f"# hx:{srv} w={s['weight']}"
            if s["state"] != "ready":
                meta += f" state={s['state']}"
            lines.append(f"    server {' '.join([s['addr']] + params)}; {meta}")
        for directive in block.get("directives", []):
            lines.append(f"    {directive}")
        lines.append("}")
    return "\n".join(lines) + "\n"


def effective(text):
    """What nginx sees (comments and blank space dropped): equal -> no reload needed."""
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def set_weights(upstreams, backend, weights):
    """Copy of ``upstreams`` with ``{server: weight}`` applied to ``backend``."""
    block = _block(upstreams, backend)
    unknown = sorted(set(weights) - set(block["servers"]))
    if unknown:
        raise ValueError(f"server: not in upstream {backend}: {', '.join(unknown)} "
                         f"(known: {', '.join(block['servers'])})")
    out = _copy(upstreams)
    for srv, w in weights.items():
        out[backend]["servers"][srv]["weight"] = hx_haproxy.validate_weight(w, f"weights:{srv}")
        if w > 0 and out[backend]["servers"][srv]["state"] != "ready":
            # Same rule as HAProxy's plan: weight on a drained server carries nothing.
            out[backend]["servers"][srv]["state"] = "ready"
    return out


def set_state(upstreams, backend, server, state):
    block = _block(upstreams, backend)
    if server not in block["servers"]:
        raise ValueError(f"server: {server!r} not in upstream {backend} (known: {', '.join(block['servers'])})")
    out = _copy(upstreams)
    out[backend]["servers"][server]["state"] = hx_haproxy.validate_state(state)
    return out


def _block(upstreams, backend):
    if backend not in upstreams:
        raise ValueError(f"backend: {backend!r} is not an upstream in the upstream file "
                         f"(known: {', '.join(upstreams) or 'none'})")
    return upstreams[backend]


def _copy(upstreams):
    return {
        name: {
            "servers": {srv: dict(s, params=list(s.get("params", []))) for srv, s in block["servers"].items()},
            "directives": list(block.get("directives", [])),
        }
        for name, block in upstreams.items()
    }
