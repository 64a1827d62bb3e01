"""A tiny local apt repository of real .deb packages, for patching tests.

Packages are built with ``dpkg-deb --build`` (a control file and one file
under /usr/share/<name>/). The repository has one suite per "origin"
(e.g. ``hxtest`` and ``hxtest-security``), each with a ``Packages`` index and
a ``Release`` file carrying its hashes, generated here in Python (no dpkg-dev
needed).

apt sees it through a private configuration (``apt_config``, for
``APT_CONFIG``): its own source list (``deb [trusted=yes] file:...``), lists
and cache directories, and the machine's real dpkg database. So packages
install for real, nothing under /etc/apt or /var/lib/apt/lists is touched,
and apt only knows this repository's candidates: an ``apt-get --just-print
upgrade`` over the machine's own sources costs 3-4 s of CPU on the CI image
(hundreds of pending upgrades, and its binary cache disabled), over this one
a fraction of a second. ``cleanup()`` purges the packages it installed and
removes the repository with its configuration.
"""
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile

ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")


def _run(cmd, env=None, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=300, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc.stdout


def private_apt(apt):
    """An apt configuration of its own under directory ``apt``: its source list (empty until a
    repository is published into it), lists and cache, and the machine's dpkg database.
    Returns ``(config path for APT_CONFIG, source list path)``."""
    for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, sub), exist_ok=True)
    list_path = os.path.join(apt, "sources.list")
    open(list_path, "a", encoding="utf-8").close()
    config = os.path.join(apt, "apt.conf")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write(
            f'Dir::Etc::sourcelist "{list_path}";\n'
            f'Dir::Etc::sourceparts "{apt}/sources.list.d";\n'
            f'Dir::State::lists "{apt}/lists/";\n'
            f'Dir::Cache "{apt}/cache/";\n'
        )
    return config, list_path


def pkg_environment(config):
    """Minion pillar that gives Salt's pkg module (and hx_patch's own apt calls) ``APT_CONFIG``."""
    return {"system-environment": {"modules": {"pkg": {"_": {"APT_CONFIG": config}}}}}


class AptRepo:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="hx-aptrepo-")
        os.chmod(self.root, 0o755)  # apt's sandbox user (_apt) reads file: repositories
        self.apt_config, self.list_path = private_apt(os.path.join(self.root, "apt"))
        self.env = dict(ENV, APT_CONFIG=self.apt_config)
        self.arch = _run(["dpkg", "--print-architecture"]).strip()
        self.suites = {}
        self.installed = set()

    # ------------------------------------------------------------ build

    def build(self, name, version, suite="hxtest"):
        """Build ``name`` ``version`` into ``suite``; returns the .deb path."""
        work = tempfile.mkdtemp(prefix="hx-deb-")
        try:
            os.makedirs(os.path.join(work, "DEBIAN"))
            share = os.path.join(work, "usr", "share", name)
            os.makedirs(share)
            with open(os.path.join(share, "VERSION"), "w", encoding="utf-8") as fh:
                fh.write(version + "\n")
            with open(os.path.join(work, "DEBIAN", "control"), "w", encoding="utf-8") as fh:
                fh.write(
                    f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                    "Maintainer: hx-ops tests <hx-ops@example.invalid>\nSection: misc\n"
                    "Priority: optional\nDescription: hx-ops patching test package\n"
                    " Built by tests/support/aptrepo.py; safe to purge.\n"
                )
            pool = os.path.join(self.root, "pool", suite)
            os.makedirs(pool, exist_ok=True)
            deb = os.path.join(pool, f"{name}_{version}_all.deb")
            _run(["dpkg-deb", "--root-owner-group", "--build", work, deb])
            os.chmod(deb, 0o644)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self.suites.setdefault(suite, []).append(deb)
        return deb

    def _stanza(self, deb):
        control = _run(["dpkg-deb", "--field", deb]).rstrip("\n")
        with open(deb, "rb") as fh:
            blob = fh.read()
        rel = os.path.relpath(deb, self.root)
        return (
            f"{control}\nFilename: {rel}\nSize: {len(blob)}\n"
            f"MD5sum: {hashlib.md5(blob).hexdigest()}\nSHA256: {hashlib.sha256(blob).hexdigest()}\n"
        )

    def publish(self):
        """Write Packages(.gz) and Release for every suite, and the source list."""
        lines = []
        for suite, debs in sorted(self.suites.items()):
            dist = os.path.join(self.root, "dists", suite)
            comp = os.path.join(dist, "main", f"binary-{self.arch}")
            os.makedirs(comp, exist_ok=True)
            text = "\n".join(self._stanza(deb) for deb in sorted(debs))
            with open(os.path.join(comp, "Packages"), "w", encoding="utf-8") as fh:
                fh.write(text)
            with gzip.open(os.path.join(comp, "Packages.gz"), "wt", encoding="utf-8") as fh:
                fh.write(text)
            entries = []
            for index in ("Packages", "Packages.gz"):
                path = os.path.join(comp, index)
                with open(path, "rb") as fh:
                    blob = fh.read()
                entries.append((hashlib.sha256(blob).hexdigest(), len(blob), f"main/binary-{self.arch}/{index}"))
            with open(os.path.join(dist, "Release"), "w", encoding="utf-8") as fh:
                fh.write(
                    f"Origin: hx-ops-test\nLabel: hx-ops-test\nSuite: {suite}\nCodename: {suite}\n"
                    f"Architectures: {self.arch} all\nComponents: main\n"
                    "Date: Thu, 01 Jan 2024 00:00:00 UTC\nSHA256:\n"
                    + "".join(f" {digest} {size} {path}\n" for digest, size, path in entries)
                )
            lines.append(f"deb [trusted=yes] file:{self.root} {suite} main")
        with open(self.list_path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    # ------------------------------------------------------------- apt

    def update(self):
        """``apt-get update`` of this repository (the only source its configuration has)."""
        _run(["apt-get", "update", "-q"], env=self.env)

    def install(self, name, version):
        _run(["apt-get", "install", "-y", "-q", "--allow-downgrades", f"{name}={version}"], env=self.env)
        self.installed.add(name)

    def version(self, name):
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True, env=ENV)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def cleanup(self):
        for name in sorted(self.installed):
            subprocess.run(["apt-mark", "unhold", name], capture_output=True, env=self.env)
            if self.version(name):
                _run(["apt-get", "purge", "-y", "-q", name], env=self.env)
        shutil.rmtree(self.root, ignore_errors=True)
