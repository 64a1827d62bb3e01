"""A real nginx, child of the test process, for traffic tests (nginx driver).

``daemon off;`` + ``master_process on;``: the Popen is the master, so the
test reaps it and its workers (old workers of a reload included). Every path
(pid, error log, temp dirs) is under ``root``; it listens on 127.0.0.1 only.

    ngx = Nginx(tmp, upstreams={"demo": {"app1_blue": ("127.0.0.1", 18080, 100),
                                          "app1_green": ("127.0.0.1", 18081, 0)}}).start()
    ngx.url, ngx.config, ngx.upstream_file, ngx.pidfile
    ngx.pillar()      # the hx:traffic pillar for this instance
    ngx.stop()

The upstream file is rendered the way hx_traffic writes it (``# hx:<name>``
comments; weight 0 as ``down``). With several upstreams, ``/<name>/`` routes
to that upstream and everything else to the first one.
"""
import os
import signal
import socket
import subprocess
import time

from tests.support.deps import require_binary
from tests.support.httpserver import free_port


def _binary():
    return require_binary("nginx")


class Nginx:
    def __init__(self, root, upstreams, port=None, binary=None, keepalive_timeout="10s"):
        """``upstreams``: {upstream: {server: (addr, port, weight)}}, in order."""
        self.root = str(root)
        self.upstreams = upstreams
        self.port = port or free_port()
        self.binary = binary or _binary()
        self.keepalive_timeout = keepalive_timeout
        self.config = os.path.join(self.root, "nginx.conf")
        self.upstream_file = os.path.join(self.root, "upstreams.conf")
        self.pidfile = os.path.join(self.root, "nginx.pid")
        self.error_log = os.path.join(self.root, "error.log")
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def pillar(self, **extra):
        conf = {
            "upstream_file": self.upstream_file,
            "config": self.config,
            "pidfile": self.pidfile,
            "binary": self.binary,
        }
        conf.update(extra)
        return {"hx": {"traffic": {"driver": "nginx", "nginx": conf}}}

    def render_upstreams(self):
        lines = []
        for name, servers in self.upstreams.items():
            lines.append(f"upstream {name} {{")
            for srv, (addr, port, weight) in servers.items():
                params = f"weight={weight}" if weight > 0 else "down"
                lines.append(f"    server {addr}:{port} {params}; # hx:{srv} w={weight}")
            lines += ["    keepalive 8;", "}"]
        return "\n".join(lines) + "\n"

    def render(self):
        tmp = os.path.join(self.root, "tmp")
        os.makedirs(tmp, exist_ok=True)
        names = list(self.upstreams)
        locations = [
            f"        location /{name}/ {{ proxy_pass http://{name}/; }}" for name in names[1:]
        ] + [f"        location / {{ proxy_pass http://{names[0]}; }}"]
        user = "    user root;" if os.geteuid() == 0 else ""
        conf = f"""
daemon off;
master_process on;
worker_processes 1;
{user}
pid {self.pidfile};
error_log {self.error_log} notice;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout {self.keepalive_timeout};
    include {self.upstream_file};
    server {{
        listen 127.0.0.1:{self.port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_connect_timeout 2s;
{chr(10).join(locations)}
    }}
}}
"""
        with open(self.upstream_file, "w", encoding="utf-8") as fh:
            fh.write(self.render_upstreams())
        with open(self.config, "w", encoding="utf-8") as fh:
            fh.write(conf.lstrip())

    def start(self, timeout=15):
        self.render()
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [self.binary, "-c", self.config, "-p", self.root],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log_tail()}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", self.port)) == 0 and os.path.exists(self.pidfile):
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"nginx did not listen within {timeout}s:\n{self.log_tail()}")

    def log_tail(self):
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def stop(self, timeout=10):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful shutdown
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
