"""The public surface: sorted, complete, and reprs that say asyncvideo.X."""

from __future__ import annotations

import asyncvideo
from asyncvideo import errors


def isort_style(names: list[str]) -> list[str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then the rest."""
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))


def test_all_is_sorted_and_complete() -> None:
    assert asyncvideo.__all__ == isort_style(asyncvideo.__all__)
    public = {name for name in vars(asyncvideo) if not name.startswith("_")}
    public -= {"annotations", "providers"}  # the __future__ import and a subpackage
    assert public - {"testing", "cli"} <= set(asyncvideo.__all__)
    for name in asyncvideo.__all__:
        assert hasattr(asyncvideo, name), name


def test_errors_all_is_sorted_and_complete() -> None:
    assert errors.__all__ == isort_style(errors.__all__)
    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert classes == set(errors.__all__)


def test_reprs_name_the_public_module() -> None:
    for name in ("Client", "Job", "VideoRequest", "Limits", "PollPolicy", "Outcome", "JobState"):
        assert getattr(asyncvideo, name).__module__ == "asyncvideo", name


def test_version() -> None:
    assert asyncvideo.__version__.count(".") == 2
