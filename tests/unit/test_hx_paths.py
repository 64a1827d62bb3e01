"""hx_paths: normalisation and the cleanup allowlist, hx:cleanup:disk settings, what is old enough."""

import pytest

import hx_paths as p

KEY = "hx:cleanup:disk:dirs"
DAY = 86400


@pytest.mark.parametrize("value, path", [
    ("/tmp", "/tmp"),
    ("/tmp/", "/tmp"),
    ("//tmp", "/tmp"),
    ("/tmp/./app", "/tmp/app"),
    ("/tmp//app/", "/tmp/app"),
    ("/var/tmp", "/var/tmp"),
    ("/var/log/hx", "/var/log/hx"),
    ("/var/log/app/archive", "/var/log/app/archive"),
    ("/srv/hx/tmp", "/srv/hx/tmp"),
    ("/srv/hx/tmp/uploads", "/srv/hx/tmp/uploads"),
    # no shell is ever involved: metacharacters in a name under /tmp are just a name
    ("/tmp/$(touch x)", "/tmp/$(touch x)"),
])
def test_allowed_dirs_are_normalised(value, path):
    assert p.cleanup_dir(value) == path


@pytest.mark.parametrize("value, match", [
    ("/etc/.", r"'/etc/\.' is not a cleanup directory"),
    ("//etc", "'//etc' is not a cleanup directory"),
    ("/etc/../etc", r"'/etc/\.\./etc' holds '\.\.'"),
    ("/tmp/../etc", r"holds '\.\.'"),
    ("/tmp/..", r"holds '\.\.'"),
    ("/var/lib", "not a cleanup directory"),
    ("/usr/lib", "not a cleanup directory"),
    ("/", "not a cleanup directory"),
    ("/var/log", "not a cleanup directory"),
    ("/var/log/", "not a cleanup directory"),
    ("/var", "not a cleanup directory"),
    ("/srv/hx/apps", "not a cleanup directory"),
    ("/srv/hx", "not a cleanup directory"),
    ("/tmpfoo", "not a cleanup directory"),
    ("/var/tmpx/a", "not a cleanup directory"),
    ("$(touch /tmp/pwned)", "must be an absolute directory path"),
    ("`touch /tmp/pwned`", "must be an absolute directory path"),
    ("/tmp\n/etc", "control character"),
    ("/tmp/x\n", "control character"),
    ("/tmp/x\x00/etc", "control character"),
    ("/tmp/\x1b[31m", "control character"),
    ("tmp", "must be an absolute directory path"),
    ("./tmp", "must be an absolute directory path"),
    ("~/tmp", "must be an absolute directory path"),
    ("", "must be an absolute directory path"),
    (None, "must be an absolute directory path"),
    (["/tmp"], "must be an absolute directory path"),
    (7, "must be an absolute directory path"),
])
def test_hostile_dirs_are_refused_naming_the_key(value, match):
    with pytest.raises(ValueError, match=match) as err:
        p.cleanup_dir(value)
    assert str(err.value).startswith(f"{KEY}: ")


def test_a_symlinked_dir_escaping_the_allowlist_is_refused():
    # /tmp/logs -> /etc: allowed as written, not once the filesystem resolves it
    with pytest.raises(ValueError, match=r"'/tmp/logs' resolves to '/etc' \(a symlink\)"):
        p.cleanup_dir("/tmp/logs", resolved="/etc")
    with pytest.raises(ValueError, match="resolves to '/var/log'"):
        p.cleanup_dir("/var/log/app", resolved="/var/log")
    # a link that stays inside is cleaned where it points
    assert p.cleanup_dir("/tmp/scratch", resolved="/var/tmp/scratch") == "/var/tmp/scratch"
    assert p.cleanup_dir("/tmp/", resolved="/tmp") == "/tmp"


def test_settings_defaults_and_dedupe():
    assert p.cleanup_settings(None) == {"dirs": [], "age_days": 7, "matches": [".*"]}
    cfg = p.cleanup_settings({"dirs": ["/tmp", "//tmp/", "/var/tmp"], "age_days": 3, "matches": [r".*\.log"]})
    assert cfg == {"dirs": ["/tmp", "/var/tmp"], "age_days": 3, "matches": [r".*\.log"]}


@pytest.mark.parametrize("raw, match", [
    ("/tmp", "hx:cleanup:disk: must be a mapping"),
    ({"dirs": "/tmp"}, "hx:cleanup:disk:dirs: must be a list"),
    ({"dirs": ["/tmp", "/etc"]}, "hx:cleanup:disk:dirs: '/etc' is not a cleanup directory"),
    ({"dirs": ["/tmp"] * 65}, "at most 64"),
    ({"dir": ["/tmp"]}, "hx:cleanup:disk:dir: unknown key"),
    ({"age_days": 0}, "hx:cleanup:disk:age_days: must be a whole number of days 1..3650"),
    ({"age_days": -1}, "age_days"),
    ({"age_days": True}, "age_days"),
    ({"age_days": 7.5}, "age_days"),
    ({"age_days": "7"}, "age_days"),
    ({"age_days": float("inf")}, "age_days"),
    ({"age_days": 10 ** 9}, "age_days"),
    ({"matches": []}, "hx:cleanup:disk:matches: must be a non-empty list"),
    ({"matches": ".*"}, "hx:cleanup:disk:matches: must be a non-empty list"),
    ({"matches": ["("]}, r"hx:cleanup:disk:matches: '\(' is not a regular expression"),
    ({"matches": [""]}, "hx:cleanup:disk:matches"),
    ({"matches": ["x" * 201]}, "1..200 characters"),
])
def test_bad_settings_name_the_key(raw, match):
    with pytest.raises(ValueError, match=match):
        p.cleanup_settings(raw)


@pytest.mark.parametrize("name, age, matches, old", [
    ("a.log", 8 * DAY, [".*"], True),
    ("a.log", 7 * DAY, [".*"], True),  # exactly age_days old goes
    ("a.log", 7 * DAY - 1, [".*"], False),
    ("a.log", 30 * DAY, [r".*\.tmp"], False),
    ("a.tmp", 30 * DAY, [r".*\.log", r".*\.tmp"], True),
    ("keep.log", 30 * DAY, ["a"], False),  # anchored at the start, as file.tidied
    ("a.log", -DAY, [".*"], False),  # from the future
])
def test_removable(name, age, matches, old):
    now = 1_800_000_000.0
    assert p.removable(name, now - age, now, 7, matches) is old
