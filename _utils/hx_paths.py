"""Pure rules for directories hx-ops deletes files in: normalisation, the
cleanup allowlist, the ``hx:cleanup:disk`` settings and which entry is old
enough to go.

A configured directory is normalised (``//etc``, ``/etc/.`` and a trailing
``/`` become ``/etc``), refused when it holds ``..``, a control character
or is relative, and must then lie in :data:`CLEANUP_ROOTS`. The caller also
passes the path the filesystem resolves it to (``os.path.realpath``), which
must lie there too: a symlink in the allowlist pointing at ``/etc`` is
refused. Every error is a ValueError naming the pillar key. No I/O here.
"""

import re

KEY = "hx:cleanup:disk"
DIRS_KEY = f"{KEY}:dirs"

# (root, may the root itself be named). Only scratch space and an
# application's own log folder: anything else holds state whose files are
# old because nothing rewrites them (configuration, package databases,
# release trees whose files keep the build's mtime).
CLEANUP_ROOTS = (
    ("/tmp", True),  # scratch by definition (FHS), cleared at boot anyway
    ("/var/tmp", True),  # scratch kept across reboots
    ("/var/log", False),  # an application's own folder only: /var/log itself holds wtmp, journal, apt history
    ("/srv/hx/tmp", True),  # hx-ops' own scratch; /srv/hx/apps holds the releases
)
ALLOWED_TEXT = "/tmp, /var/tmp, /srv/hx/tmp (or below), or a subdirectory of /var/log"

DEFAULTS = {"dirs": [], "age_days": 7, "matches": [".*"]}
MAX_AGE_DAYS = 3650
MAX_DIRS = 64
MAX_PATTERN = 200


def normalize(value, key=DIRS_KEY):
    """An absolute directory path with ``//``, ``.`` and trailing ``/`` removed, or ValueError."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: {value!r} must be an absolute directory path")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(f"{key}: {value!r} holds a control character (newline, NUL, ...)")
    if not value.startswith("/"):
        raise ValueError(f"{key}: {value!r} must be an absolute directory path")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        # Not resolved as text: after a symlink '..' is the link target's parent.
        raise ValueError(f"{key}: {value!r} holds '..'; name the directory itself")
    return "/" + "/".join(parts)


def allowed(path):
    """Whether a normalised absolute ``path`` is inside the cleanup allowlist."""
    for root, itself in CLEANUP_ROOTS:
        if path.startswith(root + "/") or (itself and path == root):
            return True
    return False


def cleanup_dir(value, resolved=None, key=DIRS_KEY):
    """
    The directory to clean for a configured ``value``: normalised, inside the
    allowlist, and (when ``resolved``, its ``os.path.realpath``, is given)
    still inside once symlinks are resolved. Returns the resolved path when
    given (the one to walk), else the normalised one.
    """
    path = normalize(value, key)
    if not allowed(path):
        raise ValueError(f"{key}: {value!r} is not a cleanup directory (allowed: {ALLOWED_TEXT})")
    if resolved is None:
        return path
    real = normalize(resolved, key)
    if not allowed(real):
        raise ValueError(f"{key}: {value!r} resolves to {real!r} (a symlink), which is not a cleanup "
                         f"directory (allowed: {ALLOWED_TEXT})")
    return real


def given_settings(dirs, age_days, key):
    """Settings for directories handed over by a caller (not the pillar): every name, ``age_days`` > 0."""
    if not isinstance(dirs, list) or len(dirs) > MAX_DIRS:
        raise ValueError(f"{key}: must be a list of at most {MAX_DIRS} directories, got {dirs!r}")
    out = []
    for value in dirs:
        path = cleanup_dir(value, key=key)
        if path not in out:
            out.append(path)
    if isinstance(age_days, bool) or not isinstance(age_days, (int, float)) or not 0 < age_days <= MAX_AGE_DAYS:
        raise ValueError(f"{key}: age must be a number of days over 0 and at most {MAX_AGE_DAYS}, got {age_days!r}")
    return {"dirs": out, "age_days": age_days, "matches": [".*"]}


def cleanup_settings(raw):
    """Pillar ``hx:cleanup:disk`` -> ``{dirs (normalised, unique), age_days, matches}``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{KEY}: must be a mapping with dirs, age_days, matches; got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(DEFAULTS), key=str)
    if unknown:
        raise ValueError(f"{KEY}:{unknown[0]}: unknown key (known: {', '.join(sorted(DEFAULTS))})")
    dirs = raw.get("dirs", DEFAULTS["dirs"])
    if dirs is None:
        dirs = []
    if not isinstance(dirs, list):
        raise ValueError(f"{DIRS_KEY}: must be a list of directories, got {dirs!r}")
    if len(dirs) > MAX_DIRS:
        raise ValueError(f"{DIRS_KEY}: at most {MAX_DIRS} directories, got {len(dirs)}")
    out = []
    for value in dirs:
        path = cleanup_dir(value)
        if path not in out:
            out.append(path)
    age = raw.get("age_days", DEFAULTS["age_days"])
    if isinstance(age, bool) or not isinstance(age, int) or not 1 <= age <= MAX_AGE_DAYS:
        raise ValueError(f"{KEY}:age_days: must be a whole number of days 1..{MAX_AGE_DAYS}, got {age!r}")
    matches = raw.get("matches", DEFAULTS["matches"])
    if not isinstance(matches, list) or not matches:
        raise ValueError(f"{KEY}:matches: must be a non-empty list of regular expressions, got {matches!r}")
    for pattern in matches:
        if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN:
            raise ValueError(f"{KEY}:matches: {pattern!r} must be a regular expression of 1..{MAX_PATTERN} "
                             f"characters")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{KEY}:matches: {pattern!r} is not a regular expression ({exc})") from exc
    return {"dirs": out, "age_days": age, "matches": list(matches)}


def removable(name, mtime, now, age_days, matches):
    """
    Whether an entry (a regular file or a symlink; the caller never asks
    about anything else) is old enough and matches. Age is by mtime, so
    reading a file does not keep it (atime is often off: noatime); a
    pattern matches from the start of the name, as Salt's ``file.tidied``.
    """
    if now - mtime < age_days * 86400:
        return False
    return any(re.match(pattern, name) for pattern in matches)
