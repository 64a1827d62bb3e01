"""Deployment records and locks in Salt's cache (``salt.cache.factory``).

localfs by default; redis/consul/etcd when the master's ``cache`` option
says so, so several masters see the same records. The cache has no
compare-and-swap, so taking a lock checks and writes under an exclusive flock
on the master: atomic between runners of one master. Masters sharing a cache
driver should run deployments from one of them (documented limitation).
"""
import time

import salt.cache

import hx_audit


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
