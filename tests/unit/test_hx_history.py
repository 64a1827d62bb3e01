"""Bounded JSON-lines history: append, trim, tolerant read."""
import json
import os

import hx_history
import pytest


def _sample(t, status="ok", value=1.0, disk=None):
    return hx_history.compact(t, {"app": {"status": status, "value": value}}, disk or {"/": 50.0})


def test_compact_format():
    sample = hx_history.compact(
        12,
        {
            "app": {"status": "ok", "value": 12.5, "message": "dropped"},
            "p": {"status": "critical", "value": None},
            "odd": {"status": "unknown", "value": "text"},
            "nan": {"status": "unknown", "value": float("nan")},
        },
        {"/": 21},
    )
    assert sample == {
        "t": 12.0,
        "c": {
            "app": ["ok", 12.5],
            "p": ["critical", None],
            "odd": ["unknown", None],
            "nan": ["unknown", None],
        },
        "d": {"/": 21.0},
    }


def test_missing_file_is_empty_history(tmp_path):
    assert hx_history.read(str(tmp_path / "none.jsonl")) == ([], 0)


def test_append_creates_directory_and_writes_compact_lines(tmp_path):
    path = str(tmp_path / "hx" / "h.jsonl")
    hx_history.append(path, _sample(1))
    hx_history.append(path, _sample(2))
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert len(lines) == 2
    assert " " not in lines[0]
    assert json.loads(lines[1])["t"] == 2.0
    samples, corrupt = hx_history.read(path)
    assert [s["t"] for s in samples] == [1.0, 2.0] and corrupt == 0


def test_truncated_last_line_is_skipped_and_next_append_survives(tmp_path):
    path = str(tmp_path / "h.jsonl")
    hx_history.append(path, _sample(1))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"t": 2.0, "c": {"app": ["o')  # crash mid-write
    samples, corrupt = hx_history.read(path)
    assert [s["t"] for s in samples] == [1.0] and corrupt == 1
    hx_history.append(path, _sample(3))
    samples, corrupt = hx_history.read(path)
    assert [s["t"] for s in samples] == [1.0, 3.0] and corrupt == 1


@pytest.mark.parametrize(
    "garbage",
    [
        b"not json\n",
        b"\xff\xfe\x00garbage\n",
        b"[1, 2]\n",
        b'{"c": {}}\n',
        b'{"t": "yesterday"}\n',
        b'{"t": true}\n',
        b'{"t": 1, "c": []}\n',
    ],
)
def test_corrupt_lines_anywhere_are_counted_not_fatal(tmp_path, garbage):
    path = str(tmp_path / "h.jsonl")
    hx_history.append(path, _sample(1))
    with open(path, "ab") as handle:
        handle.write(garbage + b"\n")
    hx_history.append(path, _sample(2))
    samples, corrupt = hx_history.read(path)
    assert [s["t"] for s in samples] == [1.0, 2.0]
    assert corrupt == 1


def test_read_fills_missing_sections(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"t": 5}\n', encoding="utf-8")
    assert hx_history.read(str(path)) == ([{"t": 5, "c": {}, "d": {}}], 0)


def test_trim_keeps_newest_max_samples(tmp_path):
    path = str(tmp_path / "h.jsonl")
    for t in range(5):
        dropped = hx_history.append(path, _sample(t), max_samples=3)
    assert dropped == 1
    samples, _ = hx_history.read(path)
    assert [s["t"] for s in samples] == [2.0, 3.0, 4.0]


def test_trim_is_an_atomic_replace_without_leftover_temp_files(tmp_path):
    path = str(tmp_path / "h.jsonl")
    for t in range(10):
        hx_history.append(path, _sample(t), max_samples=100)
    inode = os.stat(path).st_ino
    assert hx_history.trim(path, 4) == 6
    assert os.stat(path).st_ino != inode  # rewritten, not truncated in place
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".hx_history.")]
    assert leftovers == []
    assert [s["t"] for s in hx_history.read(path)[0]] == [6.0, 7.0, 8.0, 9.0]


def test_trim_below_limit_and_missing_file_are_no_ops(tmp_path):
    path = str(tmp_path / "h.jsonl")
    assert hx_history.trim(path, 5) == 0
    hx_history.append(path, _sample(1))
    inode = os.stat(path).st_ino
    assert hx_history.trim(path, 5) == 0
    assert os.stat(path).st_ino == inode


def test_max_samples_one_keeps_only_latest(tmp_path):
    path = str(tmp_path / "h.jsonl")
    for t in range(3):
        hx_history.append(path, _sample(t), max_samples=1)
    assert [s["t"] for s in hx_history.read(path)[0]] == [2.0]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_append_rejects_bad_max_samples(tmp_path, bad):
    with pytest.raises(ValueError, match="max_samples"):
        hx_history.append(str(tmp_path / "h.jsonl"), _sample(1), max_samples=bad)


def test_append_rejects_invalid_sample(tmp_path):
    with pytest.raises(ValueError):
        hx_history.append(str(tmp_path / "h.jsonl"), {"c": {}})
    with pytest.raises(ValueError):
        hx_history.append(str(tmp_path / "h.jsonl"), {"t": float("inf")})
