"""Two masters sharing one real redis-server (``cache: redis``) act as one.

Each "master" here is a set of master opts with its own id and its own
cachedir, as two salt-masters on two machines have: a master-local flock
would not exclude the other one, so only the mutex in redis can make these
tests pass. They run the hx-ops code the runners run (``hx_store``,
``hx_incidents``) in threads, which is where a race would show.
"""
import os
import threading
import time

import pytest

import salt.config

import hx_incidents
import hx_lease
import hx_store

THREADS = 10  # per master


def master_opts(tmp_path, mid, port):
    o = salt.config.master_config(None)
    o.update(id=mid, cachedir=str(tmp_path / mid / "cache"), sock_dir=str(tmp_path / mid / "sock"),
             conf_file=str(tmp_path / mid / "master"), pki_dir=str(tmp_path / mid / "pki"),
             cache="redis", **{"cache.redis.host": "127.0.0.1", "cache.redis.port": port})
    os.makedirs(o["cachedir"], exist_ok=True)
    return o


@pytest.fixture
def masters(tmp_path, redis_server):
    yield master_opts(tmp_path, "salt-a", redis_server.port), master_opts(tmp_path, "salt-b", redis_server.port)
    import redis  # pylint: disable=import-outside-toplevel

    redis.Redis(host="127.0.0.1", port=redis_server.port).flushall()


def holder(opts, owner, ttl=30.0):
    token = os.urandom(16).hex()
    return hx_lease.new(token, "deploy", "app:demo", owner, "alice", opts["id"], os.getpid(), time.time(), ttl,
                        deployment=owner)


def together(calls):
    """Run ``calls`` at once (released by one barrier) and return their results in order."""
    barrier = threading.Barrier(len(calls))
    out = [None] * len(calls)

    def run(i, call):
        barrier.wait(10)
        out[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def test_a_lease_asked_for_on_both_masters_at_once_goes_to_exactly_one(masters):
    a, b = masters
    stores = {o["id"]: hx_store.Store(o) for o in masters}
    calls = [(lambda o=o, n=n: (o["id"], hx_store.Store(o).claim("hx/deploy/locks", "demo", holder(o, f"{o['id']}-{n}"))))
             for o in (a, b) for n in range(THREADS)]
    results = together(calls)
    won = [(mid, current) for mid, (taken, current, _) in results if taken]
    assert len(won) == 1, won
    winner = won[0][1]
    # Both masters read the same holder, and every refusal named it.
    assert stores["salt-a"].get("hx/deploy/locks", "demo") == stores["salt-b"].get("hx/deploy/locks", "demo") == winner
    assert all(current["token"] == winner["token"] for _, (taken, current, _) in results if not taken)


def test_a_dead_masters_lease_expires_and_the_other_master_takes_it_over(masters):
    a, b = masters
    store_a, store_b = hx_store.Store(a), hx_store.Store(b)
    first = holder(a, "demo-on-a", ttl=3.0)  # master A is killed now: nothing renews it
    assert store_a.claim("hx/deploy/locks", "demo", first)[0]
    taken, current, _ = store_b.claim("hx/deploy/locks", "demo", holder(b, "demo-on-b"))
    assert not taken and current["master"] == "salt-a"
    assert "on salt-a" in hx_lease.describe(current)
    # B cannot know whether A's process lives: only the expiry frees the lease.
    assert hx_store.pid_alive(b, current) is None
    deadline = time.monotonic() + first["ttl"] + 5
    while True:
        taken, current, replaced = store_b.claim("hx/deploy/locks", "demo", holder(b, "demo-on-b"))
        if taken or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert taken and current["master"] == "salt-b", current
    assert replaced and replaced[0]["owner"] == "demo-on-a" and "its lease expired" in replaced[0]["stale_reason"]
    # A, come back, learns at its next heartbeat that it lost the lease, and cannot release B's.
    assert store_a.renew("hx/deploy/locks", "demo", first["token"]) is False
    assert store_a.release("hx/deploy/locks", "demo", first["token"]) is False
    assert store_b.get("hx/deploy/locks", "demo")["token"] == current["token"]


def test_the_blast_radius_budget_is_one_across_masters(masters):
    a, b = masters
    with hx_store.Slots(hx_store.Store(a), "maint", "maint-a", "alice", "maintenance run maint-a") as on_a:
        assert on_a.ask("demo", "app1", 1)["granted"]
        with hx_store.Slots(hx_store.Store(b), "remediate", "INC-1", "hx", "remediation of app2") as on_b:
            refused = on_b.ask("demo", "app2", 1)
            assert not refused["granted"] and refused["foreign"]
            assert refused["holders"][0].startswith("app1: maintenance run maint-a by alice") and "on salt-a" in refused["holders"][0]
        on_a.give_back("app1")
        with hx_store.Slots(hx_store.Store(b), "remediate", "INC-1", "hx", "remediation of app2") as on_b:
            assert on_b.ask("demo", "app2", 1)["granted"]
    assert hx_store.Store(b).all(f"{hx_store.ROTATION}/demo") == {}


def test_one_incident_for_a_problem_reported_to_both_masters_and_acked_through_the_other(masters):
    desks = [hx_incidents.make_desk(o, fire=lambda tag, data: None) for o in masters]
    key = hx_incidents.dedupe_key("web1", "app_http", "app")

    def report(desk):
        with desk.locked(key):
            active = desk.store.active_for(key)
            if active:
                desk.store.put(hx_incidents.note_repeat(active, time.time()))
                return None
            now = time.time()
            inc = hx_incidents.new_incident(
                hx_incidents.make_id(now, "web1", set(desk.store.ids())), "web1", "app_http", "app",
                hx_incidents.classify("service_down", "critical"), now, "service down on web1: app", status="critical")
            desk.create(inc)
            return inc["id"]

    results = together([lambda d=d: report(d) for d in desks for _ in range(THREADS)])
    created = [r for r in results if r]
    assert len(created) == 1, results
    through_b = desks[1].acknowledge(created[0], "bob")
    assert through_b["status"] == "acknowledged"
    rec = desks[0].store.get(created[0])
    assert rec["status"] == "acknowledged" and rec["repeats"] == 2 * THREADS - 1, rec
