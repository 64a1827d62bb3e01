"""The master configuration an operator installs (conf/master.d/hx.conf), pointed at this checkout."""
import os

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def install_conf():
    with open(os.path.join(REPO, "conf", "master.d", "hx.conf"), encoding="utf-8") as fh:
        return yaml.safe_load(fh.read().replace("/srv/hx-ops", REPO))
