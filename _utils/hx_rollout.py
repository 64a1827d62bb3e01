"""The steps every rollout shares, run from the master: calls that expect all
their minions, traffic moves that are read back, phases that are recorded.

Used by the ``hx_deploy`` runner for blue-green and canary deployments.
Every phase fires ``hx/deploy/<app>/<phase>``, is written to the audit log
and saved in the deployment record (``salt.cache`` bank ``hx/deploy/runs``).
"""
import logging
import time
import uuid

import hx_analysis
import hx_apps
import hx_events
import hx_fleet
import hx_store

log = logging.getLogger(__name__)

RUNS = "hx/deploy/runs"
LOCKS = "hx/deploy/locks"
APPS = "hx/deploy/apps"
CONTROL = "hx/deploy/control"  # key <app>: {action, deployment, by, at}, read by a running canary


class StepError(Exception):
    """A rollout step failed; the message names the minions and the cause."""


def check_returns(what, outcome, allow_missing=False):
    """Raise StepError unless every targeted minion answered without error."""
    problems = []
    if outcome["missing"] and not allow_missing:
        problems.append("no answer from " + ", ".join(outcome["missing"]))
    if not outcome["expected"]:
        problems.append("no minion matched")
    for mid, data in sorted(outcome["returns"].items()):
        ret = data["ret"]
        if data.get("retcode") or isinstance(ret, str):
            problems.append(f"{mid}: {str(ret).strip()[:300]}")
    if problems:
        raise StepError(f"{what}: " + "; ".join(problems))
    return {mid: data["ret"] for mid, data in outcome["returns"].items()}


class Rollout:
    def __init__(self, opts, cfg, version, strategy, progress=None, user=None, jid=None):
        self.opts = opts
        self.cfg = cfg
        self.app = cfg["app"]
        self.store = hx_store.Store(opts)
        self.progress = progress or (lambda msg: log.info("%s", msg))
        self.started = time.time()
        self.record = {
            "id": f"{self.app}-{int(self.started * 1000)}-{uuid.uuid4().hex[:6]}",
            "app": self.app,
            "version": version,
            "strategy": strategy,
            "user": user,
            "jid": jid,
            "started": self.started,
            "phase": "created",
            "outcome": "running",
            "phases": [],
            "hosts": sorted(cfg["hosts"]),
            "lbs": list(cfg["lbs"]),
        }

    @classmethod
    def resume(cls, opts, cfg, record, progress=None, user=None, jid=None):
        """Go on with a saved deployment record (a paused canary) in this process."""
        ro = cls(opts, cfg, record.get("version"), record.get("strategy"), progress=progress, user=user, jid=jid)
        ro.record = record
        ro.started = record.get("started", ro.started)
        if user:
            # Audit lines name who acts now; the record keeps who started it.
            record.setdefault("started_by", record.get("user"))
            record["user"] = user
        record["jid"] = jid
        return ro

    # -- record, events, audit --------------------------------------------------
    def phase(self, name, **data):
        now = time.time()
        entry = {"phase": name, "at": round(now, 3), "elapsed": round(now - self.started, 2)}
        entry.update(data)
        self.record["phase"] = name
        self.record["phases"].append(entry)
        self.save()
        hx_events.fire(self.opts, f"hx/deploy/{self.app}/{name}", dict(entry, id=self.record["id"], app=self.app))
        hx_events.audit(
            self.opts,
            f"deploy.{name}",
            self.app,
            data.get("result", "ok"),
            who=self.record["user"],
            jid=self.record["jid"],
            deployment=self.record["id"],
            version=self.record["version"],
            **{k: v for k, v in data.items() if k != "result"},
        )
        return entry

    def save(self):
        self.store.put(RUNS, self.record["id"], self.record)

    def finish(self, outcome, reason=None):
        self.record.update(outcome=outcome, reason=reason, ended=time.time())
        self.record["duration"] = round(self.record["ended"] - self.started, 2)
        self.phase("done", outcome=outcome, reason=reason, result="ok" if outcome == "succeeded" else "failed")
        return self.record

    # -- fleet calls ----------------------------------------------------------
    def call(self, tgt, fun, what, arg=(), kwarg=None, timeout=60):
        outcome = hx_fleet.call(self.opts, tgt, fun, arg=arg, kwarg=kwarg, tgt_type="list", timeout=timeout)
        return check_returns(what, outcome)

    def hosts(self, fun, what, **kwargs):
        return self.call(sorted(self.cfg["hosts"]), fun, what, **kwargs)

    def lbs(self, fun, what, **kwargs):
        return self.call(self.cfg["lbs"], fun, what, **kwargs)

    # -- load balancers ---------------------------------------------------------
    def lb_weights(self):
        rets = self.lbs("hx_traffic.servers", "read load-balancer weights", arg=[self.cfg["backend"]])
        weights = {}
        for lb, ret in rets.items():
            servers = ret.get(self.cfg["backend"], ret) if isinstance(ret, dict) else {}
            weights[lb] = {name: int(row.get("weight") or 0) for name, row in servers.items()}
        return weights

    def live_color(self):
        color, problems = hx_apps.live_color(self.cfg, self.lb_weights())
        if not color:
            raise StepError("live color unknown: " + "; ".join(problems))
        return color

    def lb_stats(self):
        rets = self.lbs("hx_traffic.stats", "read load-balancer counters", arg=[self.cfg["backend"]])
        per_lb = {lb: ((ret or {}).get(self.cfg["backend"]) or {}).get("servers") or {} for lb, ret in rets.items()}
        return hx_analysis.merge_stats(per_lb)

    def wait_lb_up(self, color, timeout):
        """Wait until every LB's health checks see ``color`` UP on every host.

        Raising the weight of a server HAProxy still holds DOWN moves no
        traffic; draining the old color then would leave nothing to serve.
        """
        servers = hx_apps.servers_by_color(self.cfg)[color]
        deadline = time.monotonic() + timeout
        while True:
            rets = self.lbs("hx_traffic.servers", "read load-balancer server states", arg=[self.cfg["backend"]])
            down = sorted(
                f"{lb}:{s}={((ret or {}).get(self.cfg['backend']) or {}).get(s, {}).get('status')}"
                for lb, ret in rets.items()
                for s in servers
                if ((ret or {}).get(self.cfg["backend"]) or {}).get(s, {}).get("status") not in ("UP", "unknown")
            )
            if not down:
                return
            if time.monotonic() >= deadline:
                raise StepError(f"load balancers do not see {color} up after {timeout}s: {', '.join(down)}")
            time.sleep(0.5)

    def set_weights(self, weights, what):
        """Apply ``weights`` on every LB (raise-first order is hx_traffic's), then read back."""
        self.lbs("hx_traffic.weights", what, arg=[self.cfg["backend"], weights])
        seen = self.lb_weights()
        wrong = {
            lb: {s: w for s, w in got.items() if s in weights and w != weights[s]} for lb, got in seen.items()
        }
        wrong = {lb: diff for lb, diff in wrong.items() if diff}
        if wrong:
            raise StepError(f"{what}: weights read back differ: {wrong}")
        return seen

    def plan_weights(self, weights):
        return self.lbs("hx_traffic.plan", "plan load-balancer changes", arg=[self.cfg["backend"], weights])

    # -- app hosts ----------------------------------------------------------------
    def slot_versions(self):
        """{host: {color: {"link", "running", "health", "state", ...}}} from hx_release.versions."""
        rets = self.hosts("hx_release.versions", "read slot versions", arg=[self.app])
        return {host: ret.get("slots") or {} for host, ret in rets.items()}

    def wait_color_healthy(self, color, version, timeout):
        """Poll until every host's ``color`` slot answers healthy with ``version``."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                seen = self.slot_versions()
                bad = {
                    host: slots.get(color)
                    for host, slots in seen.items()
                    if not slot_ok(slots.get(color), version)
                }
                if not bad:
                    return seen
                last = "; ".join(f"{h}: {_slot_text(s)}" for h, s in sorted(bad.items()))
            except StepError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise StepError(f"{color} not healthy with {version} after {timeout}s: {last}")
            time.sleep(1)


def slot_ok(slot, version=None):
    """The slot's process answers its health check (with ``version``, when given)."""
    return bool(slot) and slot.get("health") == "ok" and (version is None or slot.get("running") == version)


def _slot_text(slot):
    if not slot:
        return "no such slot"
    return f"runs {slot.get('running')}, health {slot.get('health')}, service {slot.get('state')}"
