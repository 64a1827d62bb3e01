"""Pure logic of ``hx_release``: names, checksums, tar member safety, pruning
and validation of the ``hx:apps`` pillar.

Every error is a ValueError whose message names the bad value (and, for
pillar, the key) so hx_release can turn it into a SaltInvocationError (an
argument) or an hx_errors.ConfigError (pillar) before anything is touched.
Nothing here does I/O.
"""

import re

SLOTS = ("blue", "green")
MAX_VERSION_LEN = 64
# Versions become directory names and appear in commands and URLs: a strict
# semver-like shape with an optional suffix, nothing that could walk a path.
VERSION_RE = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?")
APP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ALGOS = {"sha256": 64, "sha512": 128}
HEX_RE = re.compile(r"[0-9a-fA-F]+")

DEFAULT_ROOT = "/srv/hx/apps"
DEFAULT_KEEP = 5
DEFAULT_PORTS = {"blue": 8080, "green": 8081}
DEFAULT_HEALTH_PATH = "/health"
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_FETCH_TIMEOUT = 60.0
SOURCE_SCHEMES = ("salt://", "http://", "https://")
_APP_KEYS = {"root", "source", "checksums", "keep", "slots", "health_path", "address",
             "fetch_timeout", "checksum_sidecar"}
_SLOT_KEYS = {"port", "service"}
# The same hx:apps:<app> block also says how the master rolls the app out;
# hx_apps validates these keys, this module only lets them through.
ROLLOUT_KEYS = {"hosts", "lbs", "backend", "server", "frontend", "deploy", "canary", "max_out"}
# Read by the salt://hx/app formula only (the command each slot runs).
FORMULA_KEYS = {"run"}


# --------------------------------------------------------------------------
# names


def validate_version(version):
    """``version`` if it is a safe semver-like string, else ValueError naming it."""
    if not isinstance(version, str):
        # YAML/CLI turn 1.1 into a float: say so rather than guess.
        raise ValueError(f"bad version {version!r}: must be a string like 1.2.3 (quote it)")
    if len(version) > MAX_VERSION_LEN:
        raise ValueError(f"bad version {version[:20]!r}...: longer than {MAX_VERSION_LEN} characters")
    if ".." in version or not VERSION_RE.fullmatch(version):
        raise ValueError(
            f"bad version {version!r}: expected MAJOR.MINOR.PATCH with an optional "
            f"-suffix of letters, digits, '.' and '-' (no '..')"
        )
    return version


def validate_slot(slot):
    if slot not in SLOTS:
        raise ValueError(f"bad slot {slot!r}: must be one of {', '.join(SLOTS)}")
    return slot


def other_slot(slot):
    return "green" if validate_slot(slot) == "blue" else "blue"


def validate_app(app):
    if not isinstance(app, str) or not APP_RE.fullmatch(app):
        raise ValueError(f"bad app name {app!r}: letters, digits, '_', '.', '-' (max 64)")
    return app


# --------------------------------------------------------------------------
# checksums


def parse_checksum(spec):
    """``sha256=<hex>``, ``sha512=<hex>`` or a bare sha256 hex -> (algo, lowercase hex)."""
    if not isinstance(spec, str) or not spec.strip():
        # YAML/CLI turn an all-digit hex into an int: the sha256= prefix keeps it a string.
        raise ValueError(f"bad checksum {spec!r}: expected sha256=<hex>, sha512=<hex> or a bare sha256 hex string")
    spec = spec.strip()
    if "=" in spec:
        algo, _, digest = spec.partition("=")
        algo = algo.strip().lower()
        digest = digest.strip()
    else:
        algo, digest = "sha256", spec
    if algo not in ALGOS:
        raise ValueError(f"bad checksum {spec!r}: unsupported algorithm {algo!r} (use {', '.join(ALGOS)})")
    if not HEX_RE.fullmatch(digest) or len(digest) != ALGOS[algo]:
        raise ValueError(f"bad checksum {spec!r}: {algo} needs {ALGOS[algo]} hex digits")
    return algo, digest.lower()


def format_checksum(algo, digest):
    return f"{algo}={digest.lower()}"


def normalize_checksum(spec):
    return format_checksum(*parse_checksum(spec))


def parse_sidecar(text, algo="sha256"):
    """The digest in a ``<file>.sha256`` file (``sha256sum`` format or a bare hex)."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line:
            token = line.split()[0]
            if token.startswith(f"{algo}="):
                token = token.split("=", 1)[1]
            return parse_checksum(f"{algo}={token}")
    raise ValueError(f"empty {algo} checksum file")


# --------------------------------------------------------------------------
# tar members
#
# A release is regular files and directories. Links, devices and fifos are
# refused outright rather than judged: whether a symlink target stays inside
# the release depends on the links extracted before it, and that judgement is
# what Python's own "data" filter gets wrong before 3.11.13 (CVE-2025-4517: a
# chain of long symlinks makes os.path.realpath stop resolving, so a later
# link walks out). hx_release writes the accepted members itself; see
# _modules/hx_release.py.

META_NAME = ".hx-release.json"  # written by hx_release into every release directory
KINDS = ("file", "dir", "symlink", "hardlink", "chardev", "blockdev", "fifo", "other")
_REFUSED_KINDS = {
    "symlink": "a symlink",
    "hardlink": "a hardlink",
    "chardev": "a character device",
    "blockdev": "a block device",
    "fifo": "a fifo",
    "other": "a special file",
}
_SHOWN = 120  # characters of a member name quoted in an error


def member_kind(info):
    """The kind (see KINDS) of a ``tarfile.TarInfo``-like object."""
    for kind, test in (("file", "isreg"), ("dir", "isdir"), ("symlink", "issym"), ("hardlink", "islnk"),
                       ("chardev", "ischr"), ("blockdev", "isblk"), ("fifo", "isfifo")):
        if getattr(info, test)():
            return kind
    return "other"


def _shown(name):
    text = repr(name)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}...'"


def check_member(name, kind, linkname=None):
    """
    Whether a tar member may be written into a release directory.

    ``kind`` is one of KINDS. Returns the normalised relative path ('' for
    the archive's own top directory ``./``); raises ValueError naming the
    member when it is not a regular file or directory, or when its name is
    absolute, holds a ``..`` component, a backslash, NUL or another control
    character, or is the reserved ``.hx-release.json``.
    """
    if kind in _REFUSED_KINDS:
        target = f" to {_shown(linkname)}" if linkname else ""
        raise ValueError(f"unsafe member {_shown(name)}: {_REFUSED_KINDS[kind]}{target}; "
                         f"a release holds only regular files and directories")
    if kind not in ("file", "dir"):
        raise ValueError(f"unsafe member {_shown(name)}: unknown kind {kind!r}")
    if not isinstance(name, str) or not name or name.startswith("/"):
        raise ValueError(f"unsafe member {_shown(name)}: absolute or malformed path")
    if "\\" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise ValueError(f"unsafe member {_shown(name)}: malformed path (backslash or control character)")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"unsafe member {_shown(name)}: '..' in path")
    rel = "/".join(parts)
    if not rel and kind == "file":
        raise ValueError(f"unsafe member {_shown(name)}: a file without a name")
    if rel == META_NAME:
        raise ValueError(f"unsafe member {_shown(name)}: {META_NAME} is written by hx_release")
    return rel


def safe_mode(mode, kind):
    """A member's permission bits without setuid/setgid/sticky or group/world write.

    The owner always keeps read (and write, and search for directories):
    hx_release must be able to read, replace and delete what it installed.
    """
    mode = (mode or 0) & 0o755
    return mode | (0o700 if kind == "dir" else 0o600)


def plan_members(members):
    """
    Validate every member of an archive before anything is written.

    ``members`` are ``tarfile.TarInfo``-like objects (``name``, ``linkname``,
    ``mode``, ``isreg()``...). Returns ``[(rel, kind, mode, member)]`` with
    kind ``file`` or ``dir`` and a safe mode; the first bad member raises
    ValueError naming it. Also refused: two members with the same path
    (tar would let the second overwrite the first) and a member below a file.
    """
    plan, seen = [], {}  # seen: rel -> "file" | "dir" (named, or implied by a member below it)
    for member in members:
        kind = member_kind(member)
        rel = check_member(member.name, kind, getattr(member, "linkname", None))
        if not rel:
            continue  # "./": the release directory itself
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if seen.get(parent) == "file":
                raise ValueError(f"unsafe member {_shown(member.name)}: {parent!r} is a file in the archive")
            seen[parent] = "dir"
        if seen.get(rel) == "file":
            raise ValueError(f"unsafe member {_shown(member.name)}: {rel!r} appears twice in the archive")
        if seen.get(rel) == "dir" and kind == "file":
            raise ValueError(f"unsafe member {_shown(member.name)}: {rel!r} is a directory in the archive")
        seen[rel] = kind
        plan.append((rel, kind, safe_mode(member.mode, kind), member))
    return plan


# --------------------------------------------------------------------------
# pruning


def choose_prune(releases, keep, protected):
    """
    Versions to delete: all but the ``keep`` most recently installed, never a
    version in ``protected`` (what a slot points at). ``releases`` maps
    version -> installed_at (epoch s). Oldest first.
    """
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ValueError(f"bad keep {keep!r}: must be an integer >= 1")
    newest_first = sorted(releases, key=lambda v: (releases[v] or 0, v), reverse=True)
    kept = set(newest_first[:keep]) | set(protected)
    return [v for v in reversed(newest_first) if v not in kept]


# --------------------------------------------------------------------------
# pillar


def render_source(template, app, version):
    try:
        src = template.format(app=app, version=version)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"source template {template!r}: only {{app}} and {{version}} may be used ({exc})") from exc
    if not src.startswith(SOURCE_SCHEMES):
        raise ValueError(f"source {src!r}: must start with {', '.join(SOURCE_SCHEMES)}")
    return src


def _err(app, key, msg):
    return ValueError(f"hx:apps:{app}:{key}: {msg}")


def _number(app, key, val, low, high, integer=False):
    ok_type = int if integer else (int, float)
    if isinstance(val, bool) or not isinstance(val, ok_type) or not low <= val <= high:
        kind = "an integer" if integer else "a number"
        raise _err(app, key, f"must be {kind} between {low} and {high}, got {val!r}")
    return val


def validate_app_config(app, raw):
    """One ``hx:apps:<app>`` entry -> normalised config with defaults filled in."""
    validate_app(app)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"hx:apps:{app}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _APP_KEYS - ROLLOUT_KEYS - FORMULA_KEYS)
    if unknown:
        raise _err(app, unknown[0], f"unknown key (known: {', '.join(sorted(_APP_KEYS | ROLLOUT_KEYS | FORMULA_KEYS))})")
    if "run" in raw and (not isinstance(raw["run"], str) or "{slot_dir}" not in raw["run"]):
        raise _err(app, "run", "must be a command template containing {slot_dir}")
    cfg = {"app": app}
    root = raw.get("root", DEFAULT_ROOT)
    if not isinstance(root, str) or not root.startswith("/"):
        raise _err(app, "root", f"must be an absolute path, got {root!r}")
    cfg["root"] = root.rstrip("/") or "/"
    source = raw.get("source")
    if source is not None:
        if not isinstance(source, str) or not source:
            raise _err(app, "source", f"must be a string template, got {source!r}")
        try:
            render_source(source, app, "0.0.0")
        except ValueError as exc:
            raise _err(app, "source", str(exc)) from exc
    cfg["source"] = source
    checksums = raw.get("checksums") or {}
    if not isinstance(checksums, dict):
        raise _err(app, "checksums", f"must map version -> checksum, got {type(checksums).__name__}")
    cfg["checksums"] = {}
    for ver, spec in checksums.items():
        try:
            cfg["checksums"][validate_version(str(ver) if not isinstance(ver, str) else ver)] = normalize_checksum(spec)
        except ValueError as exc:
            raise _err(app, f"checksums:{ver}", str(exc)) from exc
    cfg["keep"] = _number(app, "keep", raw.get("keep", DEFAULT_KEEP), 1, 1000, integer=True)
    path = raw.get("health_path", DEFAULT_HEALTH_PATH)
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
        raise _err(app, "health_path", f"must be a path starting with '/', got {path!r}")
    cfg["health_path"] = path
    addr = raw.get("address", DEFAULT_ADDRESS)
    if not isinstance(addr, str) or not addr or any(c in addr for c in "/@ ?#"):
        raise _err(app, "address", f"must be a host name or IP address, got {addr!r}")
    cfg["address"] = addr
    cfg["fetch_timeout"] = float(_number(app, "fetch_timeout", raw.get("fetch_timeout", DEFAULT_FETCH_TIMEOUT),
                                         1, 3600))
    sidecar = raw.get("checksum_sidecar", True)
    if not isinstance(sidecar, bool):
        raise _err(app, "checksum_sidecar", f"must be true or false, got {sidecar!r}")
    cfg["checksum_sidecar"] = sidecar
    slots = raw.get("slots") or {}
    if not isinstance(slots, dict):
        raise _err(app, "slots", f"must be a mapping of blue/green, got {type(slots).__name__}")
    bad = sorted(set(slots) - set(SLOTS))
    if bad:
        raise _err(app, f"slots:{bad[0]}", f"unknown slot (slots: {', '.join(SLOTS)})")
    cfg["slots"] = {}
    for slot in SLOTS:
        scfg = slots.get(slot) or {}
        if not isinstance(scfg, dict):
            raise _err(app, f"slots:{slot}", f"must be a mapping, got {type(scfg).__name__}")
        unknown = sorted(set(scfg) - _SLOT_KEYS)
        if unknown:
            raise _err(app, f"slots:{slot}:{unknown[0]}", f"unknown key (known: {', '.join(sorted(_SLOT_KEYS))})")
        port = _number(app, f"slots:{slot}:port", scfg.get("port", DEFAULT_PORTS[slot]), 1, 65535, integer=True)
        service = scfg.get("service", f"{app}-{slot}")
        if service is not None and (not isinstance(service, str) or not service):
            raise _err(app, f"slots:{slot}:service", f"must be an hx_service name or null, got {service!r}")
        cfg["slots"][slot] = {"port": port, "service": service}
    if cfg["slots"]["blue"]["port"] == cfg["slots"]["green"]["port"]:
        raise _err(app, "slots", "blue and green must use different ports")
    return cfg
