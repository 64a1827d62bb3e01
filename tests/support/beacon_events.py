"""Beacon events as a minion sends them: signed with its own key, fired on its own master channel."""
import os

import salt.crypt

import hx_remediation


def sign(minion_factory, minion_id, check, payload):
    """``payload`` with the ``sig`` the minion's ``hx_health`` beacon would add (its own key)."""
    msg = hx_remediation.signed_message(minion_id, "hx_health", check, payload)
    key = os.path.join(minion_factory.config["pki_dir"], "minion.pem")
    return dict(payload, sig=hx_remediation.encode_sig(
        salt.crypt.sign_message(key, msg, algorithm=salt.crypt.PKCS1v15_SHA224)))


def fire_from(cli, sender, events):
    """Make minion ``sender`` send ``events`` to the master as a beacon batch (the minion's
    own ``fire_master`` path: whatever tag and data it likes)."""
    load = {"data": None, "tag": None, "pretag": None, "events": events}
    # The load as a dict, as the salt command line sends it once it has parsed its JSON argument.
    ret = cli.run("event.fire", load, "fire_master", minion_tgt=sender)
    assert ret.returncode == 0, ret
