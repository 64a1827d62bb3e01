"""Deployment records and locks in Salt's cache (``salt.cache.factory``).

localfs by default; redis/consul/etcd when the master's ``cache`` option
says so, so several masters see the same records. The cache has no
compare-and-swap, so taking a lock checks and writes under an exclusive flock
on the master: atomic between runners of one master. Masters sharing a cache
driver should run deployments from one of them (documented limitation).
"""
import contextlib
import fcntl
import os
import time

import salt.cache


class Store:
    def __init__(self, opts):
        self.opts = opts
        self.cache = salt.cache.factory(opts)
        self.lockdir = os.path.join(opts["cachedir"], "hx", "locks")

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

    @contextlib.contextmanager
    def _flock(self, name):
        os.makedirs(self.lockdir, exist_ok=True)
        with open(os.path.join(self.lockdir, name.replace("/", "_") + ".lock"), "a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def acquire(self, bank, key, holder):
        """Take lock ``bank/key`` for ``holder`` (a dict); return ``(taken, current_holder)``."""
        with self._flock(f"{bank}/{key}"):
            current = self.get(bank, key)
            if current:
                return False, current
            holder = dict(holder, since=holder.get("since", time.time()))
            self.put(bank, key, holder)
            return True, holder

    def release(self, bank, key, token=None):
        """Drop the lock; with ``token`` only when the holder's token matches."""
        with self._flock(f"{bank}/{key}"):
            current = self.get(bank, key)
            if current and (token is None or current.get("token") == token):
                self.delete(bank, key)
                return True
            return False
