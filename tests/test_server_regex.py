"""KC's regex dialect (glibc POSIX ERE) on RE2: what matches, what is refused.

The expectations were checked against a real ktserver 0.9.56
(``tests/test_differential.py::test_same_regex_matches`` keeps checking them).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ktstore.server.posixregex import PosixRegexError, compile_posix, kt_regex, match_keys, to_re2


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        (rb"a.b", b"a\nb", True),  # '.' matches a newline (no REG_NEWLINE)
        (rb"^b", b"a\nb", False),  # '^' anchors at the start of the text only
        (rb"[[:alpha:]]+$", b"x y", True),
        (rb"[[:digit:]]{2}", b"a1", False),
        (rb"\d", b"d", True),  # glibc: an escaped ordinary character is itself
        (rb"\d", b"1", False),
        (rb"\n", b"n", True),
        (rb"\w+", b"_", True),
        (rb"\<foo", b"a foo", True),
        (rb"[\d]", b"\\", True),  # a backslash in brackets is a backslash
        (rb"[]x]", b"]", True),
        (rb")", b")", True),  # an unmatched ')' is a literal
        (rb"a{,2}", b"b", True),  # {,n} is {0,n}
        (b"\xe9", b"\xe9t\xe9", True),  # bytes, not UTF-8
        (rb"\xe9", b"xe9", True),  # glibc has no \x escape: x itself
        (rb"^.$", b"\xe9", True),
        (rb"(a+)+$", b"a" * 100_000 + b"!", False),  # linear, whatever the input
    ],
)
def test_dialect(pattern: bytes, text: bytes, found: bool) -> None:
    assert compile_posix(pattern).test(text) is found


@pytest.mark.parametrize(
    "pattern", [b"(", b"[", b"a{2", b"{", b"x{}", b"a{x", b"(a)\\1", b"a{1001}", b"a\\", b"[z-a]"]
)
def test_refused(pattern: bytes) -> None:
    with pytest.raises(PosixRegexError):
        compile_posix(pattern)


def test_translation() -> None:
    assert to_re2(b"plain^text$") == b"plain^text$"  # nothing to rewrite: same object
    assert to_re2(rb"\<a\>\.\d") == rb"\ba\b\.d"
    assert to_re2(rb"[^]\\]x)") == rb"[^\]\\\\]x\)"


def test_match_keys_as_c_strings_and_max() -> None:
    rx = compile_posix(b"cd")
    assert match_keys(rx, [b"ab\x00cd", b"cd", b"xcd"]) == [b"cd", b"xcd"]
    assert match_keys(rx, [b"cd", b"xcd"], 1) == [b"cd"]
    assert match_keys(rx, [b"cd"], 0) == []


def test_kt_regex_replacement_is_leftmost_longest() -> None:
    assert kt_regex(b"hello world", b"(o)", b"[$1$&]") == b"hell[oo] w[oo]rld"
    assert kt_regex(b"abcd", b"(a|ab)(c|bcd)", b"<$1|$2>") == b"<a|bcd>"
    assert kt_regex(b"aaa", b"^a", b"X") == b"Xaa"
    assert kt_regex(b"abc", b"(", b"X") == b"abc"  # does not compile: unchanged
    assert kt_regex(b"abc", b"(") is False
    assert kt_regex(b"ab\x00c", b"c") is False  # a C string ends at the NUL
    # KC stops after an empty match, and drops a final '$' of the replacement
    assert kt_regex(b"abc", b"x*", b"-") == b"-abc"
    assert kt_regex(b"a\nb", b"$", b"E") == b"a\nbE"
    assert kt_regex(b"xyz", b"y", b"$&$") == b"xyz"


_PATTERNS = [b"^a", b"b$", b"a.b", b"[[:alpha:]]+$", b"\\w+", b"^$", b"x*", b"[^a]", b"\\bb"]
_PATTERNS += [b"\\<a", b"a\\>", b"^.$", b".", b"^", b"$", b"(a|b)+$", b"a\\|b", b"[[:space:]]"]
_PATTERNS += [b"^(a|ab)(c|bcd)$", b"\xe9", b"a{2}", b"\\`a", b"b\\'"]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(_PATTERNS),
    st.lists(st.binary(max_size=6).map(lambda b: bytes(c % 8 for c in b)), max_size=40),
    st.integers(-1, 5),
    st.booleans(),
)
def test_page_scan_equals_key_by_key(pattern: bytes, raw: list[bytes], max: int, nl: bool) -> None:
    """Matching a page of keys in one scan finds exactly the keys matched one by one."""
    alphabet = b"ab \x00.\xe9c" + (b"\n" if nl else b"d")
    keys = [bytes(alphabet[c] for c in k) for k in raw]
    rx = compile_posix(pattern)
    one_by_one = [k for k in keys if rx.test(k.partition(b"\x00")[0])]
    expected = one_by_one if max < 0 else one_by_one[:max]
    assert match_keys(rx, keys, max) == expected
