"""A real supervisord, child of the test process, for service-lifecycle tests.

It runs in the foreground (nodaemon) so the test reaps it and everything it
started: on machines where PID 1 does not reap, nothing is left as a zombie.
"""
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_APP = os.path.join(REPO, "lab", "demoapp", "app.py")


def demo_command(port, version="1.0.0", *flags):
    return " ".join([sys.executable, DEMO_APP, "--bind", "127.0.0.1", "--port", str(port), "--version", version, *flags])


class Supervisor:
    def __init__(self, root, programs, include_dir=None):
        """``programs``: {name: {"command": ..., optional supervisord keys}}.

        ``include_dir``: programs in ``<include_dir>/*.conf`` are read too
        (what salt://hx/app writes).
        """
        self.root = str(root)
        self.include_dir = include_dir
        self.conf = os.path.join(self.root, "supervisord.conf")
        self.log = os.path.join(self.root, "supervisord.log")
        self.programs = programs
        self.proc = None

    def _render(self):
        lines = [
            "[unix_http_server]",
            f"file={self.root}/supervisor.sock",
            "[supervisord]",
            f"logfile={self.log}",
            f"pidfile={self.root}/supervisord.pid",
            f"childlogdir={self.root}",
            "nodaemon=true",
            "loglevel=info",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "[supervisorctl]",
            f"serverurl=unix://{self.root}/supervisor.sock",
        ]
        if self.include_dir:
            lines += ["[include]", f"files={self.include_dir}/*.conf"]
        for name, prog in self.programs.items():
            settings = {"autostart": "false", "autorestart": "false", "startsecs": "1", "stopwaitsecs": "30"}
            settings.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in prog.items()})
            settings.setdefault("stdout_logfile", f"{self.root}/{name}.log")
            settings.setdefault("redirect_stderr", "true")
            lines.append(f"[program:{name}]")
            lines += [f"{k}={v}" for k, v in settings.items()]
        with open(self.conf, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self, timeout=20):
        self._render()
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "supervisor.supervisord", "-c", self.conf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ctl("pid").returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"supervisord did not come up; see {self.log}")

    def ctl(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", self.conf, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def pid(self, name):
        out = self.ctl("pid", name).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def spawn_count(self, name):
        """How many times supervisord started ``name`` (from its own log)."""
        with open(self.log, encoding="utf-8") as fh:
            return sum(1 for line in fh if f"spawned: '{name}'" in line)

    def stop(self):
        if self.proc is None:
            return
        self.ctl("shutdown")
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
