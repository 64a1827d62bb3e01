"""supervisord's XML-RPC interface over its unix socket, standard library only.

``supervisorctl status`` costs a Python start-up (about 0.25 s) per call; the
health beacon asks for the state of every watched service each second, inside
the minion's main loop. The same question over the socket supervisorctl itself
uses takes a few milliseconds. Only the plain case is handled here: a
``unix://`` server without credentials. Anything else (an inet server,
``username``/``password``, a config that cannot be read) makes
``socket_path`` return None and the caller uses supervisorctl.
"""
import configparser
import http.client
import os
import socket
import xmlrpc.client

BAD_NAME = 10  # supervisor.xmlrpc.Faults.BAD_NAME


class UnknownProgram(Exception):
    """supervisord does not know the program name."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path, timeout):
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host):
        return _UnixConnection(self._path, self._timeout)


def socket_path(conf):
    """The unix socket supervisorctl would use for ``conf``, or None when that is not a plain one."""
    if not conf or not os.path.isfile(conf):
        return None
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(conf, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    for section in ("supervisorctl", "unix_http_server"):
        if parser.has_option(section, "username") or parser.has_option(section, "password"):
            return None
    if parser.has_option("supervisorctl", "serverurl"):
        url = parser.get("supervisorctl", "serverurl").strip()
        path = url[len("unix://"):] if url.startswith("unix://") else None
    elif parser.has_option("unix_http_server", "file"):
        path = parser.get("unix_http_server", "file").strip()
    else:
        return None
    if not path:
        return None
    # supervisord expands %(here)s to the config's folder; other expansions: leave to supervisorctl
    path = path.split(";", 1)[0].strip().replace("%(here)s", os.path.dirname(os.path.abspath(conf)))
    return path if "%(" not in path else None


def process_info(path, program, timeout=5.0):
    """``supervisor.getProcessInfo(program)``: statename, pid, start, now, description...

    Raises UnknownProgram for a name supervisord does not know, OSError when
    the socket cannot be reached, xmlrpc.client.Error for anything else.
    """
    proxy = xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(path, timeout))
    try:
        return proxy.supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault as exc:
        if exc.faultCode == BAD_NAME:
            raise UnknownProgram(program) from None
        raise
    finally:
        proxy("close")()
