"""The blast-radius budget: how many of an app's hosts may be out of rotation at once.

One budget per app (pillar ``hx:apps:<app>:max_out``), shared by every
automation that takes a host out or works on it while it serves: a
maintenance drain, a remediation action, an operator's ``hx_traffic.drain``.
Each asks before it acts and is refused with who holds the rest.

A host counts as out when it holds a slot (a lease holder of the
``hx_lease`` schema with its ``host``, taken atomically by the store) or
when the load balancer shows none of its servers live (drained by hand,
DOWN, failed maintenance left it out). Asking for a host that is out
already is always granted: it takes nothing more away, and bringing a host
back must never wait for the budget.

Pure: the caller passes the clock, the slots and what the load balancer shows.
"""
import math

import hx_lease

DEFAULT_MAX_OUT = "50%"


def max_out(app, value, hosts):
    """``hx:apps:<app>:max_out`` as a number of hosts (``hosts``: how many the app has).

    An integer >= 1, or a share ``"N%"`` (0 < N <= 100) of the app's hosts,
    rounded down and at least 1 (one host may always be worked on).
    """
    key = f"hx:apps:{app}: max_out"
    value = DEFAULT_MAX_OUT if value is None else value
    if isinstance(value, bool):
        raise ValueError(f"{key}: must be a number of hosts or a share like '50%', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{key}: must be at least 1 host, got {value}")
        return value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1])
        except ValueError:
            share = float("nan")
        if not 0 < share <= 100:
            raise ValueError(f"{key}: a share must be in (0, 100] %, got {value!r}")
        return max(1, int(math.floor(hosts * share / 100.0 + 1e-9)))
    raise ValueError(f"{key}: must be a number of hosts or a share like '50%', got {value!r}")


def live(row):
    """A server that takes traffic now: weight > 0, admin ready, not DOWN."""
    return (
        bool(row)
        and int(row.get("weight") or 0) > 0
        and row.get("admin", "ready") == "ready"
        and row.get("status") in ("UP", "unknown", None)
    )


def host_servers(cfg, host):
    """The server names of ``host`` in the app's backend, one per color."""
    return [cfg["server"].format(host=host, color=color) for color in ("blue", "green")]


def hosts_out(cfg, rows):
    """Hosts of the app with no live server in ``rows`` (``{server: row}`` of its backend on one LB).

    A host the LB does not list at all is not counted: the LB cannot say.
    """
    out = []
    for host in sorted(cfg["hosts"]):
        mine = [rows[s] for s in host_servers(cfg, host) if s in rows]
        if mine and not any(live(r) for r in mine):
            out.append(host)
    return out


def host_of(cfg, server):
    """The app host a backend server belongs to, else None."""
    for host in cfg["hosts"]:
        if server in host_servers(cfg, host):
            return host
    return None


def apps_of(apps, host):
    """Names of the validated apps (``{name: cfg}``) ``host`` serves."""
    return sorted(name for name, cfg in apps.items() if host in cfg["hosts"])


def decide(host, limit, observed_out, slots, now, alive=None, token=None):
    """May ``host`` be taken out (or worked on) now?

    ``slots``: ``{key: holder}`` of the app's budget; ``observed_out``: hosts
    the LB shows out; ``alive(holder)``: True/False/None for its process;
    ``token``: the asker's own token (its slots are not someone else's).

    Returns ``{"granted", "limit", "out", "holders", "stale", "foreign"}``:
    ``out`` the hosts out now (without ``host``), ``holders`` one line per
    host out saying who holds it, ``stale`` the slot keys nobody holds any
    more (the store drops them), ``foreign`` whether a live slot of another
    holder is among them (worth waiting for; the LB's view alone is not).
    """
    held, stale = {}, []
    for key, holder in sorted((slots or {}).items()):
        if not isinstance(holder, dict) or hx_lease.stale(holder, now, alive(holder) if alive else None)[0]:
            stale.append(key)
            continue
        held.setdefault(holder.get("host"), []).append(holder)
    out = set(observed_out or ()) | {h for h in held if h}
    mine = {h for h, hs in held.items() if all(x.get("token") == token for x in hs)} if token else set()
    granted = host in out or len(out - {host}) + 1 <= limit
    holders = []
    for other in sorted(out - {host}):
        if other in held:
            holders.append(f"{other}: " + "; ".join(hx_lease.describe(x, now) for x in held[other]))
        else:
            holders.append(f"{other}: out of rotation on the load balancer")
    foreign = any(h != host and h not in mine for h in held)
    return {"granted": granted, "limit": limit, "out": sorted(out - {host}), "holders": holders,
            "stale": stale, "foreign": foreign}


def held(slots, now, alive=None):
    """The budget's slots as an operator reads them, by host: who holds each and whether it is stale.

    ``slots`` and ``alive`` as for :func:`decide`; the token never appears.
    Returns ``[{"host", "id", "kind", "owner", "what", "lease", "stale"}]``
    (``stale``: why nobody holds it any more, else None; the next ask drops it).
    """
    rows = []
    for holder in (slots or {}).values():
        if not isinstance(holder, dict):
            continue
        gone, why = hx_lease.stale(holder, now, alive(holder) if alive else None)
        rows.append({"host": holder.get("host"), "id": holder.get("id"), "kind": holder.get("kind"),
                     "owner": holder.get("owner"), "what": holder.get("what"),
                     "lease": hx_lease.describe(holder, now), "stale": why if gone else None})
    return sorted(rows, key=lambda r: (str(r["host"]), str(r["id"])))


def refusal(app, host, decision):
    """The line an operator reads when ``host`` may not be taken out."""
    return (f"blast radius: app {app} allows {decision['limit']} host(s) out of rotation at once "
            f"(hx:apps:{app}:max_out) and {len(decision['out'])} already are, so {host} stays in: "
            + "; ".join(decision["holders"]))


def app_budget(app, raw):
    """What the budget needs of ``hx:apps:<app>`` (hosts, server template, backend, max_out), checked.

    A load balancer's or app host's pillar may carry only part of the app's
    definition, so this reads no more than the budget uses.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"hx:apps:{app}: must be a mapping")
    hosts = raw.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise ValueError(f"hx:apps:{app}: hosts: must map each app host's minion id to its address")
    server = raw.get("server", "{host}_{color}")
    if not isinstance(server, str) or "{host}" not in server or "{color}" not in server:
        raise ValueError(f"hx:apps:{app}: server: template must contain {{host}} and {{color}}")
    return {"app": app, "hosts": dict(hosts), "server": server, "backend": raw.get("backend", app),
            "max_out": max_out(app, raw.get("max_out"), len(hosts))}


def batch_too_big(apps, batch):
    """Why a batch takes more hosts of one app out at once than its ``max_out`` allows, else None."""
    for app in sorted({a for h in batch for a in apps_of(apps, h)}):
        mine = [h for h in batch if h in apps[app]["hosts"]]
        if len(mine) > apps[app]["max_out"]:
            return (f"batch {', '.join(batch)} takes {len(mine)} host(s) of app {app} out at once; "
                    f"hx:apps:{app}:max_out allows {apps[app]['max_out']}: use a smaller batch")
    return None
