"""Bounded JSON-lines history of health samples (one compact sample a line).

Compact sample: ``{"t": epoch_float, "c": {check: [status, value_or_null]},
"d": {mount: pct}}``.  One line a sample keeps appends cheap and lets a
reader skip a line torn by a crash or a full disk instead of losing the file.

Trimming rewrites the newest ``max_samples`` lines to a temp file in the same
directory and ``os.replace``s it over the history, so a reader sees either the
old or the new file, never a half-written one.  A sidecar ``.lock`` file
(flock, where available) keeps a concurrent append from being lost by a trim.
"""
import contextlib
import json
import math
import os
import tempfile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows minions: best effort, no lock
    fcntl = None

DEFAULT_MAX_SAMPLES = 20000


def compact(t, checks, disk=None):
    """Build a compact sample from flat check results and disk percentages."""
    return {
        "t": float(t),
        "c": {
            name: [result.get("status"), _plain(result.get("value"))]
            for name, result in checks.items()
        },
        "d": {mount: float(pct) for mount, pct in (disk or {}).items()},
    }


def _plain(value):
    # Only numbers are kept: values are for trends, the message is not history.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return value


def _valid(sample):
    if not isinstance(sample, dict):
        return False
    t = sample.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        return False
    return isinstance(sample.get("c", {}), dict) and isinstance(sample.get("d", {}), dict)


@contextlib.contextmanager
def _locked(path):
    if fcntl is None:
        yield
        return
    with open(path + ".lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _ends_with_newline(path):
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return True
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"
    except FileNotFoundError:
        return True


def _count_lines(path):
    count = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            count += chunk.count(b"\n")
    return count


def append(path, sample, max_samples=DEFAULT_MAX_SAMPLES):
    """Append one sample, then trim to ``max_samples`` if the file grew past it.

    Creates the parent directory.  Returns the number of lines dropped.
    """
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer, got {max_samples!r}")
    if not _valid(sample):
        raise ValueError(f"not a valid compact sample: {sample!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    line = json.dumps(sample, separators=(",", ":"), allow_nan=False) + "\n"
    with _locked(path):
        # A torn last line (crash mid-write) must not swallow this sample.
        if not _ends_with_newline(path):
            line = "\n" + line
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line)
        if _count_lines(path) > max_samples:
            return trim(path, max_samples, _lock=False)
    return 0


def trim(path, max_samples=DEFAULT_MAX_SAMPLES, _lock=True):
    """Keep only the newest ``max_samples`` lines; atomic rewrite.  Returns lines dropped."""
    if not _lock:
        return _trim(path, max_samples)
    with _locked(path):
        return _trim(path, max_samples)


def _trim(path, max_samples):
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines(keepends=True)
    except FileNotFoundError:
        return 0
    if len(lines) <= max_samples:
        return 0
    keep = lines[-max_samples:]
    if keep and not keep[-1].endswith(b"\n"):
        keep[-1] += b"\n"
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hx_history.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.writelines(keep)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return len(lines) - len(keep)


def read(path):
    """Return ``(samples, corrupt)``: valid samples in file order and the
    number of lines skipped as unparseable (e.g. a truncated last line).

    A missing file is an empty history.
    """
    samples, corrupt = [], 0
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return samples, corrupt
    with handle:
        for raw in handle:
            if not raw.strip():
                continue
            try:
                sample = json.loads(raw)
            except ValueError:  # includes UnicodeDecodeError
                corrupt += 1
                continue
            if _valid(sample):
                sample.setdefault("c", {})
                sample.setdefault("d", {})
                samples.append(sample)
            else:
                corrupt += 1
    return samples, corrupt
