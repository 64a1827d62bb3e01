"""hx-ops modules loaded the way a minion loads them, without a daemon.

``LoadedMinion(minion_opts(root), pillar)`` gives ``.mods`` (execution
modules) and ``.states``; a new instance is what a minion has after a restart
(only its cachedir persists).
"""
import copy
import os

import salt.config
import salt.loader

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def minion_opts(root, minion_id="hx-test-minion"):
    root = str(root)
    opts = salt.config.minion_config(None)
    opts.update(
        id=minion_id,
        file_client="local",
        cachedir=os.path.join(root, "cache"),
        sock_dir=os.path.join(root, "sock"),
        pki_dir=os.path.join(root, "pki"),
        extension_modules=os.path.join(root, "extmods"),
        module_dirs=[os.path.join(REPO, "_modules")],
        states_dirs=[os.path.join(REPO, "_states")],
        utils_dirs=[os.path.join(REPO, "_utils")],
        beacons_dirs=[os.path.join(REPO, "_beacons")],
    )
    opts["grains"] = salt.loader.grains(opts)
    return opts


class LoadedMinion:
    def __init__(self, opts, pillar=None, test=False):
        self.opts = copy.deepcopy(opts)
        self.opts["pillar"] = pillar or {}
        self.opts["test"] = test
        self.utils = salt.loader.utils(self.opts)
        self.mods = salt.loader.minion_mods(self.opts, utils=self.utils, context={})
        self._states = None

    @property
    def states(self):
        if self._states is None:
            serializers = salt.loader.serializers(self.opts)
            self._states = salt.loader.states(self.opts, self.mods, self.utils, serializers)
        return self._states
