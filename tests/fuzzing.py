"""What the property-based tests share: the profiles that bound them, input strategies, and
the check that an error is a clean one (typed, one line, named)."""

from __future__ import annotations

import os
import unicodedata

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tasks.errors import LiveResponseError

#: The default suite's profile: a few hundred examples a property, no deadline (the machine
#: is shared), nothing remembered between runs but the failures hypothesis found.
settings.register_profile("suite", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
#: A deeper search, by hand (minutes per property, so without the suite's time limit):
#: `LR_HYPOTHESIS_PROFILE=deep pytest --timeout=0 tests/unit/test_fuzz_*.py`.
settings.register_profile("deep", max_examples=20_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("LR_HYPOTHESIS_PROFILE", "suite"))

#: Unicode categories that break a one-line message: control characters and line separators.
_LINE_BREAKERS = frozenset({"Cc", "Zl", "Zp"})

#: Words an analyst (or an attacker) might type where a number, a flag or a path is expected.
AWKWARD_WORDS = ("", " ", "-", "--", "--=", "---", "-1", "0", "1e999", "nan", "inf", "-inf",
                 "99999999999999999999999999999", "-99999999999999999999", "1_000", "0x10",
                 "١٢", "\x00", "a\x00b", "'", '"', "\\", "\n", "\r\n", "\x1b[31m", "\u2028",
                 "$(id)", "`id`", ";", "|", "&", "*", "../../etc/passwd", "/", "~", "é")


def words(flags: list[str] | tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """One word of a command line: any unicode, an awkward word, a number or one of `flags`
    (with an `=value` now and then)."""
    flag_words = st.sampled_from(sorted(flags) or ["--x"])
    return st.one_of(
        st.text(max_size=20),
        st.sampled_from(AWKWARD_WORDS),
        st.integers().map(str),
        st.floats().map(str),
        flag_words,
        st.tuples(flag_words, st.text(max_size=8)).map("=".join),
    )


def assert_clean_error(exc: LiveResponseError) -> None:
    """A user is told what was wrong in one line (and what to do in another, if anything)."""
    assert exc.message.strip(), f"{type(exc).__name__} without a message"
    for text in (exc.message, exc.hint or ""):
        bad = [ch for ch in text if unicodedata.category(ch) in _LINE_BREAKERS]
        assert not bad, f"control character(s) {bad!r} in {text!r}"
