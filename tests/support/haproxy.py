"""A real HAProxy, child of the test process, for traffic tests.

Runs in master-worker mode in the foreground (``-W -db``) as a child Popen, so
the test reaps it and every worker it forks, reloads included: on machines
whose PID 1 does not reap orphans nothing is left behind. A reload is the
graceful one hx_traffic uses (``SIGUSR2`` to the master, or ``reload`` on the
master CLI).

    hap = HAProxy(tmp, backends={"demo": {"app1_blue": ("127.0.0.1", 18080, 100),
                                          "app1_green": ("127.0.0.1", 18081, 0)}}).start()
    hap.url, hap.socket, hap.config, hap.state_file, hap.pidfile, hap.master_socket
    hap.pillar()      # the hx:traffic:haproxy pillar for this instance
    hap.command("show stat")
    hap.stop()

With several backends the frontend routes ``/<backend>/...`` (path prefix) to
that backend and everything else to the first one; ``url_for(backend)`` gives
the URL to use.
"""
import os
import signal
import socket
import subprocess
import time

from tests.support.deps import require_binary
from tests.support.httpserver import free_port


def _binary():
    return require_binary("haproxy")


class HAProxy:
    def __init__(self, root, backends, frontend_port=None, health="/health", check_inter_ms=200,
                 balance="roundrobin", extra_defaults=(), binary=None):
        """``backends``: {backend: {server: (addr, port, weight)}}, in order."""
        self.root = str(root)
        self.backends = backends
        self.frontend_port = frontend_port or free_port()
        self.health = health
        self.check_inter_ms = check_inter_ms
        self.balance = balance
        self.extra_defaults = list(extra_defaults)
        self.binary = binary or _binary()
        self.config = os.path.join(self.root, "haproxy.cfg")
        self.socket = os.path.join(self.root, "admin.sock")
        self.master_socket = os.path.join(self.root, "master.sock")
        self.state_file = os.path.join(self.root, "server-state")
        self.pidfile = os.path.join(self.root, "haproxy.pid")
        self.log = os.path.join(self.root, "haproxy.out")
        self.proc = None
        self._logfh = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.frontend_port}/"

    def url_for(self, backend):
        first = next(iter(self.backends))
        return self.url if backend == first else f"{self.url}{backend}/"

    def pillar(self, **extra):
        """The ``hx:traffic`` pillar that points hx_traffic at this instance."""
        conf = {
            "socket": self.socket,
            "config": self.config,
            "state_file": self.state_file,
            "pidfile": self.pidfile,
            "master_socket": self.master_socket,
            "binary": self.binary,
        }
        conf.update(extra)
        return {"hx": {"traffic": {"driver": "haproxy", "haproxy": conf}}}

    def render(self):
        lines = [
            "global",
            f"    stats socket {self.socket} mode 600 level admin",
            "    stats timeout 30s",
            f"    server-state-file {self.state_file}",
            "",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 30s",
            "    timeout server 30s",
            "    timeout http-keep-alive 10s",
            # A slow /health (demo app slow_ms) must not mark a server DOWN mid-test.
            "    timeout check 3s",
            "    option http-keep-alive",
            "    load-server-state-from-file global",
            *[f"    {line}" for line in self.extra_defaults],
            "",
            "frontend fe_main",
            f"    bind 127.0.0.1:{self.frontend_port}",
        ]
        names = list(self.backends)
        for name in names[1:]:
            lines.append(f"    use_backend {name} if {{ path_beg /{name}/ }}")
        lines += [f"    default_backend {names[0]}", ""]
        for name, servers in self.backends.items():
            lines += [
                f"backend {name}",
                f"    balance {self.balance}",
                f"    option httpchk GET {self.health}",
                f"    default-server check inter {self.check_inter_ms} fall 2 rise 1",
            ]
            for srv, (addr, port, weight) in servers.items():
                lines.append(f"    server {srv} {addr}:{port} weight {weight}")
            lines.append("")
        with open(self.config, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self, timeout=15):
        self.render()
        self._logfh = open(self.log, "ab")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [self.binary, "-W", "-db", "-f", self.config, "-p", self.pidfile, "-S", f"{self.master_socket},mode,600"],
            stdout=self._logfh,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}; see {self.log}:\n{self.output()}")
            try:
                if self.command("show info").startswith("Name:") and self._port_open():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"haproxy did not come up in {timeout}s; see {self.log}")

    def _port_open(self):
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex(("127.0.0.1", self.frontend_port)) == 0

    def output(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def command(self, cmd, timeout=5):
        """One runtime API command on the admin socket; the raw reply."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.socket)
            sock.sendall(cmd.encode() + b"\n")
            chunks = []
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode()

    def worker_pid(self):
        for line in self.command("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    def wait_servers_up(self, timeout=10):
        """Wait until every server with a health check reports UP."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = {}
            for row in self.command("show stat").splitlines():
                if row.startswith("#") or not row:
                    continue
                fields = row.split(",")
                if fields[1] not in ("FRONTEND", "BACKEND"):
                    statuses[(fields[0], fields[1])] = fields[17]
            if statuses and all(s.startswith("UP") for s in statuses.values()):
                return statuses
            if time.monotonic() >= deadline:
                raise RuntimeError(f"haproxy servers not all UP after {timeout}s: {statuses}")
            time.sleep(0.05)

    def reload(self, timeout=10):
        """Graceful reload (USR2 to the master); waits for the new worker."""
        old = self.worker_pid()
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = self.worker_pid()
                if pid and pid != old:
                    return pid
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"haproxy reload: no new worker after {timeout}s; see {self.log}")

    def stop(self, timeout=10):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # SIGUSR1: soft stop (workers finish in-flight requests, then exit).
            self.proc.send_signal(signal.SIGUSR1)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._logfh:
            self._logfh.close()
            self._logfh = None


class DemoApps:
    """Demo app processes (lab/demoapp/app.py) on free 127.0.0.1 ports, children of the test.

        apps = DemoApps(tmp, {"app1_blue": "1.0", "app1_green": "2.0"}).start()
        apps.port("app1_blue"); apps.addr("app1_blue") -> ("127.0.0.1", port)
        apps.control("app1_blue", slow_ms=800)   # runtime knobs (control file)
        apps.stop()
    """

    def __init__(self, root, versions, bind="127.0.0.1"):
        self.root = str(root)
        self.versions = dict(versions)
        self.bind = bind
        self.ports = {name: free_port() for name in self.versions}
        self.procs = {}

    def control_file(self, name):
        return os.path.join(self.root, f"{name}.control.json")

    def control(self, name, **knobs):
        import json  # pylint: disable=import-outside-toplevel

        tmp = self.control_file(name) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(knobs, fh)
        os.replace(tmp, self.control_file(name))

    def port(self, name):
        return self.ports[name]

    def addr(self, name):
        return (self.bind, self.ports[name])

    def start(self, timeout=15):
        import sys  # pylint: disable=import-outside-toplevel

        from tests.support.supervisor import DEMO_APP  # pylint: disable=import-outside-toplevel

        for name, version in self.versions.items():
            self.control(name)
            self.procs[name] = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, DEMO_APP, "--bind", self.bind, "--port", str(self.ports[name]), "--version", version,
                 "--control", self.control_file(name), "--drain-timeout", "5"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        pending = set(self.procs)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                with socket.socket() as sock:
                    sock.settimeout(0.5)
                    if sock.connect_ex((self.bind, self.ports[name])) == 0:
                        pending.discard(name)
            time.sleep(0.05)
        if pending:
            self.stop()
            raise RuntimeError(f"demo apps did not listen within {timeout}s: {sorted(pending)}")
        return self

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs = {}
