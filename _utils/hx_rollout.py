"""The steps every rollout shares, run from the master: calls that expect all
their minions, traffic moves that are read back, phases that are recorded.

Used by the ``hx_deploy`` runner for blue-green and canary deployments.
Every phase fires ``hx/deploy/<app>/<phase>``, is written to the audit log
and saved in the deployment record (``salt.cache`` bank ``hx/deploy/runs``).
"""
import contextlib
import logging
import signal
import threading
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


class Interrupted(SystemExit):
    """SIGINT (an operator's Ctrl-C) or SIGTERM reached a rollout.

    A ``SystemExit``, as salt-run's own handlers raise: Salt's runner client
    reports it as the job's failure instead of losing the job's return.
    """

    def __init__(self, signum):
        super().__init__(128 + int(signum))
        self.signum = int(signum)
        self.signame = signal.Signals(signum).name

    def __str__(self):
        return f"interrupted by {self.signame}"


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class Guard:
    """SIGINT/SIGTERM as :class:`Interrupted` while a rollout runs, held back while traffic moves.

    ``with guard:`` installs the handlers (only in the main thread: signals
    reach no other) and puts the previous ones back at the end.

    ``with guard.held():`` around a weight change and its read back: a
    signal waits until the block is done, then is raised, so traffic is
    never left half-moved (the minion would go on applying the weights
    while a restore ran beside it).

    ``with guard.settling():`` once the run knows its outcome (restoring
    traffic, recording the result, releasing the lease): from then on a
    signal no longer interrupts anything; it is raised when the run leaves
    ``with guard:``, after the outcome is recorded and the lease released.

    Only the first signal is raised; the run is then on its way out,
    restoring what it moved, and later ones are logged and ignored.
    """

    def __init__(self):
        self.pending = None
        self.raised = None
        self.settled = False
        self._depth = 0
        self._previous = {}

    def _handler(self, signum, _frame):
        if self._depth or self.raised or self.settled:
            self.pending = self.pending or signum
            log.warning("hx_rollout: %s held back until traffic is settled", signal.Signals(signum).name)
            return
        self._raise(signum)

    def _raise(self, signum):
        self.pending = None
        self.raised = signum
        raise Interrupted(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in INTERRUPTS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, exc_type, *_exc):
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}
        if exc_type is None and self.pending and not self.raised:
            self._raise(self.pending)
        return False

    def hold(self):
        self._depth += 1

    def let_go(self):
        """End one ``hold``; a signal that came meanwhile is raised now (unless the run is settling)."""
        self._depth -= 1
        if self._depth == 0 and self.pending and not self.raised and not self.settled:
            self._raise(self.pending)

    @contextlib.contextmanager
    def held(self):
        self.hold()
        try:
            yield self
        except BaseException:
            # The block's own exception goes on; a pending signal waits
            # for the next let_go or the end of the run.
            self._depth -= 1
            raise
        self.let_go()

    @contextlib.contextmanager
    def settling(self):
        self.settled = True
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1


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
    def __init__(self, opts, cfg, version, strategy, progress=None, user=None, jid=None, guard=None):
        self.opts = opts
        self.guard = guard or Guard()
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
    def resume(cls, opts, cfg, record, progress=None, user=None, jid=None, guard=None):
        """Go on with a saved deployment record (a paused canary) in this process."""
        ro = cls(opts, cfg, record.get("version"), record.get("strategy"), progress=progress, user=user, jid=jid,
                 guard=guard)
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
        """Apply ``weights`` on every LB (raise-first order is hx_traffic's), then read back.

        A signal waits until the weights are read back: interrupted half-way,
        the minion would go on applying them while the restore ran beside it.
        """
        with self.guard.held():
            return self._set_weights(weights, what)

    def _set_weights(self, weights, what):
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
