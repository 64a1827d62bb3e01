"""What an operator types on the runners' command line: minion ids, names, free text, paths.

Each is checked before it reaches a store, a file or a notification, and a
refusal is a ValueError naming the argument.

A minion id (``minion=``) becomes a cache key (``<cachedir>/<bank>/<id>.p``) and part of an
incident id and a report's file name, so only what a minion id is in
practice gets through: a host name, FQDN or ``name@site`` of letters,
digits, ``_ . @ -``, starting with a letter or digit, never ``..``. Salt
itself accepts more (any name that is not a path trick); an operator with
such a minion still reaches it through the lists and reports, only not as
a typed argument.
"""
import re

import hx_numbers

MINION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,252}")


def minion_id(key, value):
    """``value`` as a minion id (a number YAML typed becomes its text); ValueError naming ``key``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not MINION_RE.fullmatch(value) or ".." in value:
        raise ValueError(f"{key}: must be one minion id (letters, digits, _ . @ -), got {hx_numbers.shown(value)}")
    return value


def flag(key, value):
    """``True``/``False``, or their text as the command line hands it over; ValueError naming ``key``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{key} must be true or false, got {value!r}")


def operator_text(key, value, limit, lines=False):
    """``by=`` / ``note=`` as typed: text (a number as YAML typed it) of at most ``limit`` characters
    without control characters (``lines``: newlines and tabs allowed); ValueError naming ``key``.
    It is copied into the timeline, the report and notifications."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    allowed = "\n\t" if lines else ""
    if not isinstance(value, str) or len(value) > limit or any(ord(c) < 32 and c not in allowed or c == "\x7f"
                                                               for c in value):
        what = "text" if lines else "one line of text"
        raise ValueError(f"{key}: must be {what} of at most {limit} characters, got {hx_numbers.shown(value)}")
    return value


def report_path(path):
    """``hx_incident.report path=`` as typed: an absolute ``.md`` file name without ``..`` or control
    characters; ValueError naming ``path``. A report is written there, so ``/etc/passwd`` must not be."""
    if path is None:
        return None
    if (not isinstance(path, str) or not path.startswith("/") or not path.endswith(".md") or len(path) > 4096
            or ".." in path.split("/") or any(ord(c) < 32 or c == "\x7f" for c in path)):
        raise ValueError(f"path: must be an absolute path of a .md file without '..', got {hx_numbers.shown(path)}")
    return path


RUN_RE = re.compile(r"maint-[0-9]{8}T[0-9]{6}-[0-9a-f]{6}")


def maint_run_id(key, value):
    """A maintenance run id as ``hx_maint.run`` makes it (``maint-20240601T020000-ab12cd``); ValueError
    naming ``key``. It is a store key: nothing else may reach the store."""
    if not isinstance(value, str) or not RUN_RE.fullmatch(value):
        raise ValueError(f"{key}: must be a maintenance run id (maint-<YYYYmmddTHHMMSS>-<6 hex>), "
                         f"got {hx_numbers.shown(value)}")
    return value


# Salt's target types (``salt.utils.minions.CkMinions``'s checkers).
TARGET_TYPES = ("glob", "pcre", "list", "grain", "grain_pcre", "pillar", "pillar_pcre", "pillar_exact", "compound",
                "compound_pillar_exact", "ipcidr", "nodegroup", "range", "data", "pillar_target")


def target(tgt, tgt_type):
    """``(tgt, tgt_type)`` as typed (``tgt`` a non-empty one-line text, or a list of minion ids for
    ``list``); ValueError naming ``tgt`` or ``tgt_type``. Salt answers an unknown type with an error
    in the master log and no minions: refused here, by name."""
    if tgt_type not in TARGET_TYPES:
        raise ValueError(f"tgt_type: must be one of {', '.join(TARGET_TYPES)}, got {hx_numbers.shown(tgt_type)}")
    if isinstance(tgt, (list, tuple)) and tgt_type == "list":
        return [minion_id("tgt", t) for t in tgt], tgt_type
    if isinstance(tgt, int) and not isinstance(tgt, bool):
        tgt = str(tgt)
    if not isinstance(tgt, str) or not tgt.strip() or len(tgt) > 4096 or any(ord(c) < 32 or c == "\x7f" for c in tgt):
        raise ValueError(f"tgt: must be a Salt target (one line of text), got {hx_numbers.shown(tgt)}")
    return tgt, tgt_type
