"""`run_role`, the one entry point of every service: `python -m <service> [role]`, `serve` by default."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from likeness.runtime import run_role


def _roles(ran: list[str]) -> dict[str, Callable[[], None]]:
    return {"serve": lambda: ran.append("serve"), "work": lambda: ran.append("work")}


@pytest.mark.parametrize(("argv", "expected"), [([], "serve"), (["serve"], "serve"), (["work"], "work")])
def test_runs_the_named_role_and_serve_when_none_is_named(argv: list[str], expected: str) -> None:
    ran: list[str] = []
    run_role("trainer", _roles(ran), argv)
    assert ran == [expected]


@pytest.mark.parametrize(
    ("argv", "problem"), [(["paint"], "unknown role 'paint'"), (["serve", "work"], "one role at a time")]
)
def test_a_wrong_role_runs_nothing_and_says_the_usage(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ran: list[str] = []
    with pytest.raises(SystemExit) as exited:
        run_role("trainer", _roles(ran), argv)
    assert exited.value.code == 2
    assert ran == []
    assert capsys.readouterr().err == f"usage: python -m trainer [serve|work]\ntrainer: {problem}\n"


def test_help_prints_the_usage_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[str] = []
    run_role("ingest", {"serve": lambda: ran.append("serve")}, ["--help"])
    assert ran == []
    assert capsys.readouterr().out == "usage: python -m ingest [serve]\n"
