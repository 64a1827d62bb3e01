"""What tests ask of a minion or a service to know where things stand."""
import requests


def beacon_running(salt_cli, minion, since):
    """The beacon's checks write health samples: one newer than ``since`` proves it runs."""
    ret = salt_cli.run("hx_health.history", "limit=1", minion_tgt=minion)
    samples = (ret.data or {}).get("samples") if isinstance(ret.data, dict) else None
    return bool(samples) and samples[-1]["t"] > since


def healthy(port, host="127.0.0.1"):
    """Does the demo app on ``port`` answer /health with 200?"""
    try:
        return requests.get(f"http://{host}:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
