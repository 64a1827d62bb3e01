"""Deployment records and locks in Salt's cache (``salt.cache.factory``).

localfs by default; redis/consul/etcd when the master's ``cache`` option
says so, so several masters see the same records. The cache has no
compare-and-swap, so taking a lock checks and writes under an exclusive flock
on the master: atomic between runners of one master. Masters sharing a cache
driver should run deployments from one of them (documented limitation).
"""
import logging
import os
import threading
import time

import salt.cache

import hx_audit
import hx_lease

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
