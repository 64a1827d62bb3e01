"""Two real salt-masters sharing one redis-server (``cache: redis``), one minion connected to both.

The masters share a key pair (Salt's multi-master set-up, docs/install.md
section 6) and run the configuration an operator installs. What must hold:
a problem the minion reports is one incident whichever master handles it,
acknowledged through the other; a deployment lease held on one master
refuses the other's deployment naming the holder, and once the holder's
lease expires (its master is gone: nothing renews it) the other master takes
it over.
"""
import os
import shutil
import time

import pytest
import yaml

import hx_audit
import hx_lease
import hx_store
from tests.support.beacon_events import fire_from, sign
from tests.support.inproc import LocalCli
from tests.support.masterconf import install_conf
from tests.support.wait import wait_for

MINION = "hx-mm1"
A, B = "hx-mm-a", "hx-mm-b"


def pillar_tree(root):
    app = {"hosts": {MINION: "127.0.0.1"}, "lbs": [MINION], "backend": "demo",
           "slots": {"blue": {"port": 18080}, "green": {"port": 18081}}, "source": "salt://nowhere/demo-{version}.tar.gz"}
    minion = {"hx": {"health": {"checks": [
        {"name": "ghost_proc", "kind": "process", "pattern": "no-such-process-hx-two-masters"}]}}}
    data = {MINION: minion, A: {"hx": {"apps": {"demo": app}}}, B: {"hx": {"apps": {"demo": app}}}}
    for mid, body in data.items():
        (root / f"{mid.replace('-', '_')}.sls").write_text(yaml.safe_dump(body))
    (root / "top.sls").write_text(yaml.safe_dump({"base": {mid: [mid.replace("-", "_")] for mid in data}}))


def master_conf(pillar_root, redis_port):
    conf = install_conf()
    conf["pillar_roots"] = {"base": [str(pillar_root)]}
    conf.update({"cache": "redis", "cache.redis.host": "127.0.0.1", "cache.redis.port": redis_port,
                 "open_mode": True, "log_level_logfile": "info"})
    return conf


@pytest.fixture(scope="module")
def two_masters(salt_factories, redis_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("mm_pillar")
    pillar_tree(root)
    first = salt_factories.salt_master_daemon(A, overrides=master_conf(root, redis_server.port))
    second = salt_factories.salt_master_daemon(B, overrides=master_conf(root, redis_server.port))
    with first.started():
        # One key pair for both, as Salt's multi-master requires.
        for name in ("master.pem", "master.pub"):
            shutil.copy(os.path.join(first.config["pki_dir"], name), os.path.join(second.config["pki_dir"], name))
        with second.started():
            minion = first.salt_minion_daemon(MINION, overrides={
                "master": [f"127.0.0.1:{first.config['ret_port']}", f"127.0.0.1:{second.config['ret_port']}"],
                "log_level_logfile": "info"})
            with minion.started():
                for master in (first, second):
                    assert master.salt_run_cli(timeout=120).run("saltutil.sync_all").returncode == 0
                    wait_for(lambda m=master: m.salt_cli(timeout=30).run("test.ping", minion_tgt=MINION).data is True,
                             60, f"{MINION} to answer {m_id(master)}")
                ret = first.salt_cli(timeout=120).run("saltutil.sync_all", minion_tgt=MINION)
                assert ret.returncode == 0, ret
                yield first, second, minion
    import redis  # pylint: disable=import-outside-toplevel

    redis.Redis(host="127.0.0.1", port=redis_server.port).flushall()


def m_id(master):
    return master.config["id"]


def test_one_problem_is_one_incident_opened_through_one_master_and_acked_through_the_other(two_masters):
    first, second, minion = two_masters
    since = time.time()
    payload = sign(minion, MINION, "ghost_proc", {"check": "ghost_proc", "status": "critical", "previous": "ok",
                                                  "ts": time.time(), "nonce": "mm1"})
    # The minion sends the report to every master it is connected to.
    fire_from(LocalCli(first.config_file), MINION,
              [{"tag": f"salt/beacon/{MINION}/hx_health/ghost_proc", "data": dict(payload, id=MINION)}])
    run_a, run_b = first.salt_run_cli(timeout=120), second.salt_run_cli(timeout=120)

    def listed(cli):
        ret = cli.run("hx_incident.list", f"minion={MINION}", f"since={since}")
        return ret.data["incidents"] if ret.returncode == 0 else None

    opened = wait_for(lambda: listed(run_a), 60, "the incident, seen through the first master")
    assert len(opened) == 1, opened
    assert [i["id"] for i in listed(run_b)] == [opened[0]["id"]]
    acked = run_b.run("hx_incident.ack", opened[0]["id"], "by=bob")
    assert acked.returncode == 0, acked.stdout
    shown = run_a.run("hx_incident.show", opened[0]["id"]).data["incident"]
    assert shown["status"] == "acknowledged", shown
    assert listed(run_b) == listed(run_a) and len(listed(run_a)) == 1
    # The minion sent the report to both masters: the first to see its nonce handled it, the other
    # rejected the second delivery as a replay (nonces are shared), so it was acted on once.
    seen = {m_id(m): [a for a in hx_audit.read(m.config) if a["ts"] >= since] for m in (first, second)}
    opens = [mid for mid, lines in seen.items() for a in lines if a["what"] == "incident.open"]
    replays = [mid for mid, lines in seen.items() for a in lines
               if a["what"] == "remediate.reject" and "replayed event: nonce 'mm1'" in a.get("reason", "")]
    assert len(opens) == 1 and replays == [m for m in (A, B) if m not in opens], seen


def test_a_lease_on_one_master_refuses_the_others_deployment_until_it_expires(two_masters):
    first, second, _ = two_masters
    store_a = hx_store.Store(dict(first.config, id=A))
    token = os.urandom(16).hex()
    # What the first master's deploying salt-run writes; it is then killed: nothing renews the lease.
    held = hx_lease.new(token, "deploy", "app:demo", "demo-on-a", "alice", A, 4242, time.time(), 3.0,
                        what="deployment demo-on-a (blue_green of 1.0.1)", deployment="demo-on-a", app="demo",
                        services=[])
    assert store_a.claim("hx/deploy/locks", "demo", held)[0]
    run_b = second.salt_run_cli(timeout=120)
    refused = run_b.run("hx_deploy.blue_green", "app=demo", "version=1.0.2", "bake=0")
    assert refused.returncode != 0 and refused.data["outcome"] == "refused", refused.stdout
    assert "deployment demo-on-a" in refused.data["comment"] and f"on {A}" in refused.data["comment"], refused.data
    assert store_a.get("hx/deploy/locks", "demo")["token"] == token  # untouched by the refusal
    wait_for(lambda: hx_lease.stale(store_a.get("hx/deploy/locks", "demo"), time.time())[0], 10,
             "the first master's lease to expire")
    after = run_b.run("hx_deploy.blue_green", "app=demo", "version=1.0.2", "bake=0")
    # It took the lease over, then stopped on this lab without a load balancer: never refused by A's lease.
    assert "took over the stale lease of demo-on-a" in after.stdout, after.stdout
    assert "deployment demo-on-a" not in (after.data or {}).get("comment", ""), after.data
    assert not store_a.get("hx/deploy/locks", "demo"), "released by the second master's run"
