"""``salt`` and ``salt-run`` without a new process, for the reads and set-ups a test repeats.

A ``salt`` or ``salt-run`` command line costs about 0.5 s of CPU before it
sends anything (a Python interpreter importing Salt); polling a condition
with it, or refreshing pillar before every test, spent a third of the
2-core CI machine. ``LocalCli`` and ``RunnerCli`` answer the same
``.run(fun, *args, minion_tgt=..., _timeout=...)`` as pytest-salt-factories'
CLI objects with the same ``returncode`` / ``data``, through Salt's own
``LocalClient`` and ``RunnerClient`` in the test process: the job still goes
through the real master's publisher and the real minions (``salt``), or the
runner is loaded by Salt's loader from the master's configuration exactly as
``salt-run`` loads it.

The command lines an operator types (``salt-run hx_deploy.blue_green ...``,
their exit codes and output) stay real CLI calls in the tests.
"""
import copy

import salt.client
import salt.config
import salt.runner


class Result:
    """What a CLI run answers: ``returncode``, ``data`` (the parsed return), ``stdout``, ``stderr``."""

    def __init__(self, returncode, data, stderr=""):
        self.returncode = returncode
        self.data = data
        self.stdout = repr(data)
        self.stderr = stderr

    def __repr__(self):
        return f"Result(returncode={self.returncode}, data={self.data!r}, stderr={self.stderr!r})"


class LocalCli:
    """``salt <minion_tgt> <fun> <args>`` through a LocalClient in this process.

    A new client per call (the configuration is read once): a client kept across a master
    restart would listen on the old master's event socket.
    """

    def __init__(self, config_file, timeout=120):
        self.opts = salt.config.client_config(config_file)
        self.timeout = timeout

    def run(self, fun, *args, minion_tgt, _timeout=None):
        return self.run_many(fun, *args, minions=[minion_tgt], _timeout=_timeout)[minion_tgt]

    def run_many(self, fun, *args, minions, _timeout=None):
        """One job to the listed minions at once (``salt -L``): ``{minion: Result}``."""
        # Arguments go as the CLI sends them ("key=value" strings), so the minion parses and
        # YAML-types them the same way.
        with salt.client.LocalClient(mopts=copy.deepcopy(self.opts)) as client:
            raw = client.cmd(list(minions), fun, arg=list(args), tgt_type="list",
                             timeout=_timeout or self.timeout, full_return=True) or {}
        results = {}
        for mid in minions:
            answer = raw.get(mid)
            if not isinstance(answer, dict):
                results[mid] = Result(1, answer, stderr=f"{mid} did not answer {fun}: {raw!r}")
                continue
            retcode = answer.get("retcode") or 0
            results[mid] = Result(retcode if isinstance(retcode, int) else 1, answer.get("ret"))
        return results


class RunnerCli:
    """``salt-run <fun> <args>`` through a RunnerClient in this process, a new one per call as
    salt-run has (its loader loads only the runner called).

    The exit code is what salt-run takes: the return's ``retcode`` key (hx-ops' runners set it on
    failure), or 1 when the runner raised.
    """

    def __init__(self, config_file):
        self.opts = salt.config.client_config(config_file)

    def run(self, fun, *args, _timeout=None):  # pylint: disable=unused-argument
        with salt.runner.RunnerClient(copy.deepcopy(self.opts)) as client:
            full = client.cmd(fun, arg=list(args), print_event=False, full_return=True)
        data = full.get("return") if isinstance(full, dict) else full
        if isinstance(full, dict) and full.get("success") is False:
            return Result(1, data)
        retcode = data.get("retcode", 0) if isinstance(data, dict) else 0
        return Result(retcode if isinstance(retcode, int) else 1, data)
