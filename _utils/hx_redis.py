"""A lock every master sharing one redis-server honours (``cache: redis``).

hx-ops keeps its records in Salt's cache. With ``cache: localfs`` one master
owns them and an ``flock`` on that master makes a read-check-write atomic.
With ``cache: redis`` several masters read and write the same records, and
an ``flock`` on one of them means nothing to the others, so every atomic
section (taking, renewing and releasing a lease, a blast-radius slot, an
incident's dedupe, a nonce, a budget) runs under this mutex instead:

* take: ``SET hx:mutex:<name> <token> NX PX <ms>``, polled until it succeeds
  or ``timeout`` passes (``TimeoutError`` naming the lock);
* release: compare-and-delete in one script: only the token that took it
  deletes it, so a holder that outlived its ``PX`` never frees someone else's;
* a master that dies inside a section frees it when ``PX`` runs out.

Connection settings are Salt's own (``cache.redis.host``, ``.port``,
``.unix_socket_path``, ``.db``, ``.password``), read from the master opts.
"""
import contextlib
import logging
import os
import time

try:
    import redis
except ImportError:  # pragma: no cover - only needed with cache: redis
    redis = None

log = logging.getLogger(__name__)

MUTEX_MS = 30000  # sections hold it for milliseconds; this only frees the lock of a dead master
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end"
_CLIENTS = {}


def shared(opts):
    """Do several masters share these records (``cache: redis``)?"""
    return (opts or {}).get("cache") == "redis"


def client(opts):
    """One client per connection setting and process (redis-py pools its connections)."""
    if redis is None:
        raise RuntimeError("cache: redis needs the Python package redis on the master")
    conf = (opts.get("cache.redis.host", "localhost"), int(opts.get("cache.redis.port", 6379)),
            opts.get("cache.redis.unix_socket_path"), int(opts.get("cache.redis.db", 0) or 0),
            opts.get("cache.redis.password") or None)
    key = (os.getpid(), conf)
    if key not in _CLIENTS:
        host, port, unix, db, password = conf
        _CLIENTS[key] = redis.Redis(host=host, port=port, unix_socket_path=unix, db=db, password=password,
                                    socket_timeout=10)
    return _CLIENTS[key]


@contextlib.contextmanager
def mutex(opts, name, timeout=60.0):
    """Exclusive across every master on this redis; ``TimeoutError`` after ``timeout`` s."""
    conn = client(opts)
    key = f"hx:mutex:{name}"
    token = os.urandom(16).hex()
    deadline = time.monotonic() + timeout
    pause = 0.002
    while not conn.set(key, token, nx=True, px=MUTEX_MS):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"hx lock {name!r} still held after {timeout:g} s (redis {key})")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    try:
        yield
    finally:
        try:
            conn.eval(_RELEASE, 1, key, token)
        except Exception as exc:  # pylint: disable=broad-except
            # Not fatal: the lock frees itself after MUTEX_MS.
            log.warning("hx lock %s: release failed (%s); it expires by itself", name, exc)
