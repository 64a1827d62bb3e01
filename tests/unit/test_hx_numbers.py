"""hx_numbers: one rule for every number (finite, typed, bounded) and the error that names key and range."""
import math
import os
import re

import pytest

import hx_numbers as n

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECONDS = n.bound(0, 86400, unit="s")
OVER_ZERO = n.bound(0, 3600, above=True, unit="s")
WHOLE = n.bound(1, 256, integer=True)


@pytest.mark.parametrize("value, b, expected", [
    (0, SECONDS, 0), (86400, SECONDS, 86400), (2.5, SECONDS, 2.5),
    (0.001, OVER_ZERO, 0.001), (3600, OVER_ZERO, 3600),
    (1, WHOLE, 1), (256, WHOLE, 256), (20.0, WHOLE, 20),
])
def test_accepted(value, b, expected):
    got = n.check("k", value, b)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value", [
    math.inf, -math.inf, math.nan, True, False, None, "60", [], {}, b"60", 1e12, 10**400, -1, 86400.001,
    complex(1, 0),
])
def test_refused_with_key_and_range(value):
    with pytest.raises(ValueError) as exc:
        n.check("bake", value, SECONDS)
    assert str(exc.value).startswith("bake: must be a number from 0 to 86400 s, got ")


@pytest.mark.parametrize("value", [0, -0.0, 3600.5])
def test_exclusive_low_bound(value):
    with pytest.raises(ValueError, match=r"^t: must be a number over 0 and at most 3600 s, got "):
        n.check("t", value, OVER_ZERO)


@pytest.mark.parametrize("value", [2.5, 0, 257, "7"])
def test_whole_numbers(value):
    with pytest.raises(ValueError, match=r"^weight: must be a whole number from 1 to 256, got "):
        n.check("weight", value, WHOLE)


@pytest.mark.parametrize("text, expected", [
    ("60", 60), ("1e3", 1000.0), ("2.5", 2.5), (".5", 0.5), ("-0", 0), ("+7", 7), ("1E2", 100.0),
])
def test_command_line_text(text, expected):
    assert n.check("k", text, n.bound(-1, 86400), text=True) == expected


@pytest.mark.parametrize("text", [
    "nan", "inf", "Infinity", "-inf", "1_000", "0x10", " 60", "60\n", "6 0", "", "١٠", "60s", "1e400",
    "9" * 5000, "1e99999",
])
def test_command_line_text_refused(text):
    with pytest.raises(ValueError, match=r"^bake: must be a number from 0 to 86400 s, got "):
        n.check("bake", text, SECONDS, text=True)


def test_pillar_values_are_never_parsed_from_text():
    with pytest.raises(ValueError, match="got '60'"):
        n.check("hx:apps:demo: deploy.bake", "60", SECONDS)


def test_a_huge_value_is_cut_short_in_the_error():
    with pytest.raises(ValueError) as exc:
        n.check("k", "x" * 10000, SECONDS)
    assert len(str(exc.value)) < 160 and str(exc.value).endswith("...")


def test_every_table_bound_is_sane():
    for table in n.TABLES.values():
        for key, b in table.items():
            assert b.low < b.high, key
            n.check(key, b.high, b)  # the documented maximum itself is accepted


def test_bad_input_reference_lists_every_bound():
    """docs/reference/bad-input.md prints the tables; this keeps the page equal to the code."""
    with open(os.path.join(REPO, "docs", "reference", "bad-input.md"), encoding="utf-8") as fh:
        page = fh.read()
    for title, table in n.TABLES.items():
        assert title in page, title
        for key, b in table.items():
            kind = "whole number" if b.integer else "number"
            row = f"| `{key}` | {kind} {n.span(b)} |"
            assert row in page, row
    # and no row the code no longer has
    rows = re.findall(r"^\| `([^`]+)` \| (?:whole )?number (?:from|over) ", page, re.M)
    known = {key for table in n.TABLES.values() for key in table}
    assert set(rows) <= known, set(rows) - known
