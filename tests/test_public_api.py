"""The public surface: sorted, complete, and reprs that say asyncvideo.X."""

from __future__ import annotations

import inspect
import typing
from datetime import UTC, datetime

import attrs
import cattrs
import pytest

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


def test_webhooks_all_is_sorted_and_complete() -> None:
    from asyncvideo import webhooks

    assert webhooks.__all__ == isort_style(webhooks.__all__)
    for name in webhooks.__all__:
        assert hasattr(webhooks, name), name
    assert webhooks.WebhookReceiver.__module__ == "asyncvideo.webhooks"


def test_reprs_name_the_public_module() -> None:
    for name in (
        "Client",
        "Job",
        "VideoRequest",
        "Limits",
        "PollPolicy",
        "Outcome",
        "JobState",
        "VideoStream",
    ):
        assert getattr(asyncvideo, name).__module__ == "asyncvideo", name


def test_version() -> None:
    assert asyncvideo.__version__.count(".") == 2


def public_classes() -> list[type]:
    found = [getattr(asyncvideo, name) for name in asyncvideo.__all__]
    found += [getattr(errors, name) for name in errors.__all__]
    return [obj for obj in found if isinstance(obj, type)]


@pytest.mark.parametrize("cls", public_classes(), ids=lambda cls: cls.__name__)
def test_type_hints_resolve_on_every_public_class(cls: type) -> None:
    # __module__ says "asyncvideo", so names only the private module imported
    # (datetime, Path) must already be resolved, or this raises NameError.
    typing.get_type_hints(cls)
    for name, member in vars(cls).items():
        if inspect.isfunction(member) and not name.startswith("_"):
            typing.get_type_hints(member)


def test_attrs_field_types_are_resolved() -> None:
    for cls in public_classes():
        if attrs.has(cls):
            for field in attrs.fields(cls):
                assert not isinstance(field.type, str), (cls, field.name)


def test_a_plain_cattrs_converter_can_unstructure_a_job() -> None:
    job = asyncvideo.Job(
        id="task_1",
        model="kling-v1",
        provider="kling",
        state=asyncvideo.JobState.SUCCEEDED,
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        error=asyncvideo.JobError(code=None, message="none"),
        raw={"task_id": "task_1"},
    )
    plain = cattrs.Converter().unstructure(job)
    assert plain["state"] == "succeeded"
    assert plain["error"] == {"code": None, "message": "none"}
    assert plain["raw"] == {"task_id": "task_1"}


def test_video_request_fields_match_video_request() -> None:
    # The TypedDict behind **fields on submit/generate/prepare: same names, same types.
    typed = typing.get_type_hints(asyncvideo.VideoRequestFields)
    fields = {field.name: field.type for field in attrs.fields(asyncvideo.VideoRequest)}
    assert list(typed) == list(fields)
    assert typed == fields
    assert asyncvideo.VideoRequestFields.__required_keys__ == frozenset()
