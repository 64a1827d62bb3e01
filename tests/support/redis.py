"""A real redis-server, child of the test, for Salt's redis cache driver.

No persistence (``--save '' --appendonly no``), bound to 127.0.0.1 on a free
port; ``stop()`` shuts it down and waits for it (nothing left to a
non-reaping PID 1).
"""
import socket
import subprocess
import time

from tests.support.deps import require_binary
from tests.support.httpserver import free_port


class RedisServer:
    def __init__(self, binary=None):
        self.binary = binary or require_binary("redis-server")
        self.port = free_port()
        self.proc = None

    def start(self, timeout=15):
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
