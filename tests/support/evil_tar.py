"""Crafted release archives that try to write outside ``releases/<version>/``.

Each archive holds a harmless ``VERSION`` first (so a streaming extractor
would already have written something when it meets the bad member) and
then the attack. ``build(path, kind, outside, dest_len)`` writes one and
returns ``(sha256 hex, name of the member hx_release must refuse)``;
``outside`` is a directory the attack aims at: it holds one file,
``target`` (the hardlink case links to it), and must stay as it is.

``cve_2025_4517`` is the shape of that CVE: sixteen symlinks to long
directory names make the resolved path of a final long symlink exceed
PATH_MAX, so ``os.path.realpath`` (and with it tarfile's ``data`` filter
before Python 3.11.13) stops resolving there; that link points back to the
top, and ``escape`` climbs from it to ``outside``. Every name stays inside
the archive when read as text. ``dest_len`` is the length of the directory
the archive will be extracted into; the component length is chosen from
it the way CPython's own regression test does.
"""

import hashlib
import io
import os
import tarfile

KINDS = ("cve_2025_4517", "link_then_child", "absolute", "dotdot", "hardlink", "chardev", "blockdev", "fifo")
PATH_MAX = 4096
STEPS = "abcdefghijklmnop"


def _add(tar, name, kind=tarfile.REGTYPE, data=None, linkname="", **attrs):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _cve_2025_4517(tar, outside, dest_len):
    comp = "d" * ((PATH_MAX - dest_len) // (len(STEPS) + 1))
    path = ""
    for step in STEPS:
        _add(tar, os.path.join(path, comp), tarfile.DIRTYPE)
        _add(tar, os.path.join(path, step), tarfile.SYMTYPE, linkname=comp)
        path = os.path.join(path, comp)
    linkpath = os.path.join(*STEPS, "l" * 254)
    _add(tar, linkpath, tarfile.SYMTYPE, linkname="../" * len(STEPS))
    # 17 '..' from the top reach '/' from any directory less than 17 deep; as
    # text they only undo a/.../p/lll, so the target reads as inside.
    _add(tar, "escape", tarfile.SYMTYPE, linkname=linkpath + "/.." * (len(STEPS) + 1) + outside)
    _add(tar, "escape/pwned", data=b"pwned\n")
    return STEPS[0]


def build(path, kind, outside, dest_len=100):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "VERSION", data=b"6.6.6\n")
        if kind == "cve_2025_4517":
            refused = _cve_2025_4517(tar, outside, dest_len)
        elif kind == "link_then_child":
            _add(tar, "sub", tarfile.SYMTYPE, linkname=outside)
            _add(tar, "sub/pwned", data=b"pwned\n")
            refused = "sub"
        elif kind == "absolute":
            refused = os.path.join(outside, "pwned")
            _add(tar, refused, data=b"pwned\n")
        elif kind == "dotdot":
            refused = "../" * 12 + outside.lstrip("/") + "/pwned"
            _add(tar, refused, data=b"pwned\n")
        elif kind == "hardlink":
            # a link to a file outside, then a regular member of the same name writes through it
            _add(tar, "hl", tarfile.LNKTYPE, linkname=os.path.join(outside, "target"))
            _add(tar, "hl", data=b"pwned\n")
            refused = "hl"
        elif kind == "chardev":
            _add(tar, "null", tarfile.CHRTYPE, devmajor=1, devminor=3)
            refused = "null"
        elif kind == "blockdev":
            _add(tar, "disk", tarfile.BLKTYPE, devmajor=7, devminor=0)
            refused = "disk"
        elif kind == "fifo":
            _add(tar, "pipe", tarfile.FIFOTYPE)
            refused = "pipe"
        else:
            raise ValueError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
    with open(path, "wb") as fh:
        fh.write(raw.getvalue())
    return hashlib.sha256(raw.getvalue()).hexdigest(), refused
