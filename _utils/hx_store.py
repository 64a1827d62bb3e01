"""Deployment records and locks in Salt's cache (``salt.cache.factory``).

localfs by default; redis/consul/etcd when the master's ``cache`` option
says so, so several masters see the same records. The cache has no
compare-and-swap, so taking a lease checks and writes under ``hx_audit.lock``:
an exclusive flock on the master (localfs), or with ``cache: redis`` a mutex
in that redis which every master sharing it honours (``hx_redis``).
"""
import logging
import os
import threading
import time

import salt.cache

import hx_audit
import hx_lease
import hx_rotation

log = logging.getLogger(__name__)


class Store:
    def __init__(self, opts):
        self.opts = opts
        self.cache = salt.cache.factory(opts)

    def get(self, bank, key, default=None):
        value = self.cache.fetch(bank, key)
        return default if value in (None, {}) else value

    def put(self, bank, key, value):
        self.cache.store(bank, key, value)

    def delete(self, bank, key):
        if self.cache.contains(bank, key):
            self.cache.flush(bank, key)

    def keys(self, bank):
        try:
            return sorted(self.cache.list(bank))
        except Exception:  # pylint: disable=broad-except
            return []

    def all(self, bank):
        return {key: self.get(bank, key) for key in self.keys(bank)}

    def acquire(self, bank, key, holder):
        """Take lock ``bank/key`` for ``holder`` (a dict); return ``(taken, current_holder)``."""
        with hx_audit.lock(self.opts, f"{bank}/{key}"):
            current = self.get(bank, key)
            if current:
                return False, current
            holder = dict(holder, since=holder.get("since", time.time()))
            self.put(bank, key, holder)
            return True, holder

    def release(self, bank, key, token=None):
        """Drop the lock; with ``token`` only when the holder's token matches."""
        with hx_audit.lock(self.opts, f"{bank}/{key}"):
            current = self.get(bank, key)
            if current and (token is None or current.get("token") == token):
                self.delete(bank, key)
                return True
            return False

    # -- leases (hx_lease holders) ----------------------------------------------

    def take(self, bank, key, holder, alive=None):
        """Take lease ``bank/key`` for ``holder``; a stale holder is replaced.

        ``alive(holder)``: True/False/None (unknown) for the holder's process.
        Returns ``(taken, current, replaced)``: ``replaced`` is the stale
        holder this call took over (its work was abandoned), else None.
        """
        with hx_audit.lock(self.opts, f"{bank}/{key}"):
            current = self.get(bank, key)
            replaced = None
            if current:
                gone, why = hx_lease.stale(current, time.time(), alive(current) if alive else None)
                if not gone:
                    return False, current, None
                replaced = dict(current, stale_reason=why)
            self.put(bank, key, holder)
            return True, holder, replaced

    def renew(self, bank, key, token):
        """Heartbeat: extend the lease while ``token`` still holds it; False when it was lost."""
        with hx_audit.lock(self.opts, f"{bank}/{key}"):
            current = self.get(bank, key)
            if not current or current.get("token") != token:
                return False
            if current.get("state") == "paused":
                return True
            self.put(bank, key, hx_lease.renewed(current, time.time()))
            return True

    def update(self, bank, key, token, **fields):
        """Change fields of the holder while ``token`` holds it; False when it was lost."""
        with hx_audit.lock(self.opts, f"{bank}/{key}"):
            current = self.get(bank, key)
            if not current or current.get("token") != token:
                return False
            self.put(bank, key, dict(current, **fields))
            return True

    def claim(self, bank, key, holder, break_lock=False, alive=None):
        """Take a lease: ``(taken, current, replaced)``.

        A stale holder is always taken over. ``break_lock=True`` says the
        caller expected a stale one (a live one refuses all the same, with
        the reason as ``current``); ``break_lock="force"`` breaks a live
        one. ``replaced``: the holders this call displaced, each with its
        ``stale_reason`` (their runs are abandoned).
        """
        replaced = []
        if break_lock:
            held = self.get(bank, key)
            gone, _ = hx_lease.stale(held, time.time(), alive(held) if alive and held else None)
            if held and not gone:
                if str(break_lock).lower() != "force":
                    return False, (f"break_lock: the lease of {hx_lease.describe(held)} is alive; it is broken "
                                   "only when stale (pass break_lock=force to take it anyway)"), []
                self.release(bank, key)
                replaced.append(dict(held, stale_reason="its lease was broken by force", forced=True))
        taken, current, stale = self.take(bank, key, holder, alive)
        if stale:
            replaced.append(stale)
        return taken, current, replaced


ROTATION = "hx/rotation"  # bank prefix of the blast-radius budget: hx/rotation/<app>, one key per slot


def take_out(store, app, host, holder, limit, observed_out=(), alive=None):
    """Ask app ``app``'s budget for ``host`` (atomic per app); a granted ask stores ``holder``.

    Returns the ``hx_rotation.decide`` answer; stale slots are dropped on the way.
    """
    bank = f"{ROTATION}/{app}"
    with hx_audit.lock(store.opts, bank):
        slots = store.all(bank)
        decision = hx_rotation.decide(host, limit, observed_out, slots, time.time(), alive, holder.get("token"))
        for key in decision["stale"]:
            store.delete(bank, key)
        if decision["granted"]:
            store.put(bank, holder["id"], dict(holder, host=host, app=app))
    return decision


class Slots:
    """The budget slots one holder (a run, a remediation) took: renewed while held, given back on exit."""

    def __init__(self, store, kind, owner, user, what):
        self.store = store
        self.kind, self.owner, self.user, self.what = kind, owner, user, what
        self.ttl = lease_ttl(store.opts)
        self.held = {}  # (app, host) -> holder
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def ask(self, app, host, limit, observed_out=()):
        """``hx_rotation.decide`` for ``host`` in ``app``; kept (and renewed) when granted."""
        if (app, host) in self.held:
            return {"granted": True, "limit": limit, "out": [], "holders": [], "stale": [], "foreign": False}
        token = os.urandom(16).hex()
        holder = hx_lease.new(token, self.kind, f"app:{app}", self.owner, self.user, self.store.opts.get("id"),
                              os.getpid(), time.time(), self.ttl, what=self.what)
        decision = take_out(self.store, app, host, holder, limit, observed_out,
                            alive=lambda h: pid_alive(self.store.opts, h))
        if decision["granted"]:
            with self._lock:
                self.held[(app, host)] = holder
            self._start()
        return decision

    def give_back(self, host=None):
        """Give back the slots of ``host`` (None: all)."""
        with self._lock:
            keys = [k for k in self.held if host is None or k[1] == host]
            gone = [(k, self.held.pop(k)) for k in keys]
        for (app, _host), holder in gone:
            self.store.release(f"{ROTATION}/{app}", holder["id"], holder["token"])

    def _start(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hx-rotation-slots", daemon=True)
            self._thread.start()

    def _run(self):
        while not self._stop.wait(hx_lease.heartbeat_every(self.ttl)):
            with self._lock:
                held = list(self.held.items())
            for (app, _host), holder in held:
                try:
                    self.store.renew(f"{ROTATION}/{app}", holder["id"], holder["token"])
                except Exception as exc:  # pylint: disable=broad-except
                    log.warning("hx rotation slot %s/%s: renewal failed: %s", app, holder["id"], exc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.give_back()
        return False


def lease_ttl(opts):
    """Seconds a lease lasts without a heartbeat: ``hx_lease:ttl`` (master opts, then the hx-ops file; default 30)."""
    opts_conf, file_conf = hx_audit.config_layers(opts, "hx_lease")
    return hx_lease.ttl_from(dict(opts_conf or {}, **(file_conf or {})))


def pid_alive(opts, holder):
    """Is a lease holder's process alive? True/False on the master that runs it, else None (unknown)."""
    if not holder or not holder.get("pid") or holder.get("master") != opts.get("id"):
        return None
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


class Heartbeat:
    """Renews a lease from a background thread while its holder works (``with Heartbeat(...)``)."""

    def __init__(self, store, bank, key, token, every):
        self.store, self.bank, self.key, self.token, self.every = store, bank, key, token, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hx-lease-{key}", daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            try:
                if not self.store.renew(self.bank, self.key, self.token):
                    self.lost = True
                    log.error("hx lease %s/%s was taken over; this run no longer holds it", self.bank, self.key)
                    return
            except Exception as exc:  # pylint: disable=broad-except
                # One failed renewal is not fatal: the ttl covers three.
                log.warning("hx lease %s/%s: renewal failed: %s", self.bank, self.key, exc)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        return False
