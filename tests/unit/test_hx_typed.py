"""What an operator types on the runners' command line (_utils/hx_typed.py)."""
import pytest

import hx_typed


@pytest.mark.parametrize("value, expected", [("web1", "web1"), ("web1.example.com", "web1.example.com"),
                                             ("app@site-2", "app@site-2"), (123, "123"), ("hx-m1", "hx-m1")])
def test_minion_ids_accepted(value, expected):
    assert hx_typed.minion_id("minion", value) == expected


@pytest.mark.parametrize("value", ["", "../x", "a/../../b", "a..b", ".hidden", "web1\n", "web 1", "web*", "a/b",
                                   "\x00", None, True, 1.5, [], {}, "x" * 254])
def test_minion_ids_refused_naming_the_key(value):
    with pytest.raises(ValueError, match=r"^minion: must be one minion id"):
        hx_typed.minion_id("minion", value)


@pytest.mark.parametrize("value, lines", [("alice", False), ("looking at it\nsecond line\ttab", True), (42, False)])
def test_operator_text_accepted(value, lines):
    assert hx_typed.operator_text("note", value, 100, lines=lines) == str(value)


@pytest.mark.parametrize("value, lines", [("a\nb", False), ("a\x1b[2J", True), ("x" * 101, True), ([], True),
                                          ({"a": 1}, False), (b"alice", False), ("del\x7f", True)])
def test_operator_text_refused_naming_the_key(value, lines):
    with pytest.raises(ValueError, match=r"^by: must be "):
        hx_typed.operator_text("by", value, 100, lines=lines)


def test_absent_text_stays_absent():
    assert hx_typed.operator_text("by", None, 10) is None


@pytest.mark.parametrize("path", ["/srv/postmortems/inc.md", "/tmp/a.b/report.md"])
def test_report_paths_accepted(path):
    assert hx_typed.report_path(path) == path


@pytest.mark.parametrize("path", ["/etc/passwd", "report.md", "/srv/../etc/x.md", "/srv/x.md\n", "", 7, ["/a.md"]])
def test_report_paths_refused_naming_the_key(path):
    with pytest.raises(ValueError, match=r"^path: must be an absolute path of a \.md file"):
        hx_typed.report_path(path)


def test_maint_run_ids():
    assert hx_typed.maint_run_id("run", "maint-20240601T020000-ab12cd") == "maint-20240601T020000-ab12cd"
    for bad in ("../../x", "maint-20240601T020000-ab12cd\n", "maint-x", None, 5):
        with pytest.raises(ValueError, match=r"^run: must be a maintenance run id"):
            hx_typed.maint_run_id("run", bad)


@pytest.mark.parametrize("tgt, tgt_type, expected", [
    ("app*", "glob", ("app*", "glob")),
    ("G@hx_roles:app and not web9", "compound", ("G@hx_roles:app and not web9", "compound")),
    (["app1", "app2"], "list", (["app1", "app2"], "list")),
    ("app1,app2", "list", ("app1,app2", "list")),
])
def test_targets_accepted(tgt, tgt_type, expected):
    assert hx_typed.target(tgt, tgt_type) == expected


@pytest.mark.parametrize("tgt, tgt_type, named", [
    ("app*", "globb", "tgt_type"), ("app*", None, "tgt_type"), ("", "glob", "tgt"), ("app\n*", "glob", "tgt"),
    (None, "glob", "tgt"), ({"a": 1}, "glob", "tgt"), (["app1", "../x"], "list", "tgt"),
])
def test_targets_refused_naming_the_argument(tgt, tgt_type, named):
    with pytest.raises(ValueError, match=rf"^{named}: must be "):
        hx_typed.target(tgt, tgt_type)
