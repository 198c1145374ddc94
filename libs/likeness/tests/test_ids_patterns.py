"""Ids and tenants from outside are checked whole: a trailing newline, spaces, another script's digits,
upper case, another kind's prefix or another length are not an id (issue 15)."""

from __future__ import annotations

import pytest

from likeness.ids import ID_PATTERN, TENANT_PATTERN, is_any_id, is_valid_id, is_valid_tenant, new_id

#: A fixed, well-formed id (parametrized test ids must be the same in every run and every xdist worker).
SUBJECT = "sub_01jbz3k7q8m2x4v6n9p0r5t7wy"
BODY = SUBJECT.removeprefix("sub_")
#: Arabic-Indic digits: `str.isdigit()` and `\d` accept them, an id must not.
ARABIC_INDIC_ZERO = "\u0660"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (SUBJECT + "\n", "trailing newline ($ accepts it)"),
        (SUBJECT + "\r\n", "trailing CRLF"),
        ("\n" + SUBJECT, "leading newline"),
        (" " + SUBJECT, "leading space"),
        (SUBJECT + " ", "trailing space"),
        (SUBJECT + "\t", "trailing tab"),
        (SUBJECT + "\x00", "trailing NUL"),
        ("sub_" + BODY[:-1] + ARABIC_INDIC_ZERO, "a digit of another script"),
        ("sub_" + BODY[:-1] + "\uff10", "a fullwidth digit"),
        ("sub_" + BODY.upper(), "upper case"),
        ("SUB_" + BODY, "upper-case prefix"),
        ("pho_" + BODY, "another kind's prefix"),
        ("usr_" + BODY, "no kind's prefix"),
        ("sub-" + BODY, "wrong separator"),
        ("sub_" + BODY[:-1], "25 characters"),
        ("sub_" + BODY + "0", "27 characters"),
        ("sub_" + BODY[:-1] + "i", "a letter Crockford's base32 leaves out"),
        ("sub_", "no body"),
        ("", "empty"),
        (SUBJECT + "/x", "a path after it"),
        (SUBJECT + "\nsub_" + BODY, "two ids on two lines"),
    ],
)
def test_a_subject_id_is_checked_whole(value: str, why: str) -> None:
    assert is_valid_id(SUBJECT, "sub")
    assert not is_valid_id(value, "sub"), why
    if not value.startswith("pho_"):
        assert not is_any_id(value), why


def test_every_kind_of_id_made_here_is_valid_and_only_for_its_kind() -> None:
    for kind in ("sub", "pho", "trn", "ren", "img", "era", "job"):
        made = new_id(kind)
        assert is_valid_id(made, kind)
        assert is_any_id(made)
        assert not is_valid_id(made, "sub" if kind != "sub" else "pho")
        assert not is_valid_id(made + "\n", kind)


def test_the_patterns_themselves_refuse_a_trailing_newline_even_with_match() -> None:
    """`\\A...\\Z`: a caller that still uses `.match` instead of `fullmatch` gets a full match too."""
    assert ID_PATTERN.match(SUBJECT) is not None
    assert ID_PATTERN.match(SUBJECT + "\n") is None
    assert TENANT_PATTERN.match("acme") is not None
    assert TENANT_PATTERN.match("acme\n") is None


@pytest.mark.parametrize(
    "tenant",
    [
        "acme\n",
        " acme",
        "acme ",
        "Acme",
        "acme" + ARABIC_INDIC_ZERO,
        "-acme",
        "acme-",
        "ac_me",
        "a" * 41,
        "",
        "acme\nother",
    ],
)
def test_a_tenant_is_checked_whole(tenant: str) -> None:
    assert all(is_valid_tenant(good) for good in ("acme", "a", "a" * 40, "acme-2"))
    assert not is_valid_tenant(tenant)


def test_a_value_that_is_not_a_string_is_not_an_id() -> None:
    assert not is_valid_id(None, "sub")  # type: ignore[arg-type]
    assert not is_any_id(b"sub_" + BODY.encode())  # type: ignore[arg-type]
    assert not is_valid_tenant(42)  # type: ignore[arg-type]
