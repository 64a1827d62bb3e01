#!/usr/bin/env python3
"""Build a release tarball of the demo app for hx_release.

    python lab/build_release.py 1.1.0 --out .lab/artifacts
    python lab/build_release.py 1.2.0-bad --out .lab/artifacts --health-fail
    python lab/build_release.py 1.3.0 --out .lab/artifacts --error-rate 0.2 --slow-ms 300

Writes ``<out>/demo-<version>.tar.gz`` holding ``app.py`` (a copy of
lab/demoapp/app.py), ``VERSION`` and, when a knob flag is given,
``knobs.json`` (start values of the app's knobs: a "broken" release). Members
sit at the top of the archive: hx_release extracts it into
``releases/<version>/`` and the slot runs ``app.py --release-dir <slot>``.

The archive is deterministic (sorted members, fixed mtime, uid/gid 0, fixed
modes, gzip header without name or time): the same version and knobs give
the same sha256 on every build. Also writes ``<file>.sha256``
(``sha256sum`` format, what hx_release reads next to an http source) and
prints that line.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
APP = os.path.join(HERE, "demoapp", "app.py")
sys.path.insert(0, os.path.join(REPO, "_utils"))

import hx_releases  # noqa: E402

MTIME = 946684800  # 2000-01-01T00:00:00Z: fixed so identical inputs give identical bytes


def _member(name, data, mode):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info, io.BytesIO(data)


def build(version, out_dir, app="demo", knobs=None, app_source=APP):
    """Write the tarball and its .sha256; return (path, sha256 hex)."""
    hx_releases.validate_version(version)
    with open(app_source, "rb") as fh:
        files = {"app.py": (fh.read(), 0o755), "VERSION": (f"{version}\n".encode(), 0o644)}
    if knobs:
        files["knobs.json"] = (json.dumps(knobs, sort_keys=True).encode() + b"\n", 0o644)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            tar.addfile(*_member(name, *files[name]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    data = packed.getvalue()
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{app}-{version}.tar.gz")
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    digest = hashlib.sha256(data).hexdigest()
    with open(path + ".sha256", "w", encoding="utf-8") as fh:
        fh.write(f"{digest}  {os.path.basename(path)}\n")
    return path, digest


def main(argv=None):
    p = argparse.ArgumentParser(description="build a demo app release tarball for hx_release")
    p.add_argument("version", help="MAJOR.MINOR.PATCH[-suffix]")
    p.add_argument("--out", default=os.path.join(REPO, ".lab", "artifacts"), help="output directory")
    p.add_argument("--app", default="demo", help="artifact name prefix (default demo)")
    p.add_argument("--health-fail", action="store_true", help="release whose /health answers 503")
    p.add_argument("--error-rate", type=float, default=None, help="share (0..1) of / answered with 500")
    p.add_argument("--slow-ms", type=int, default=None, help="delay every response by N ms")
    args = p.parse_args(argv)
    try:
        hx_releases.validate_version(args.version)
        hx_releases.validate_app(args.app)
    except ValueError as exc:
        p.error(str(exc))
    if args.error_rate is not None and not 0.0 <= args.error_rate <= 1.0:
        p.error("--error-rate must be between 0 and 1")
    knobs = {}
    if args.health_fail:
        knobs["health_fail"] = True
    if args.error_rate is not None:
        knobs["error_rate"] = args.error_rate
    if args.slow_ms is not None:
        knobs["slow_ms"] = args.slow_ms
    path, digest = build(args.version, args.out, args.app, knobs)
    print(f"{digest}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
