"""The liberal readers: every documented shape, and nothing but asyncvideo errors on junk."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncvideo import Job, JobState, errors
from asyncvideo.providers._parse import (
    api_error,
    parse_progress,
    parse_retry_after,
    parse_task,
    parse_timestamp,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
task_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "task_id": json_values,
        "status": st.sampled_from(["queued", "SUCCEEDED", "weird", ""]) | json_values,
        "progress": st.sampled_from(["30%", "x%", 50, -5, 250]) | json_values,
        "url": json_values,
        "result": json_values,
        "metadata": json_values,
        "error": json_values,
        "created_at": json_values,
        "expires_at": json_values,
        "data": json_values,
    },
)


@given(st.one_of(json_values, task_like))
def test_parse_task_raises_only_sdk_errors(payload: object) -> None:
    try:
        job = parse_task(payload, model="kling-v1", provider="kling")
    except errors.AsyncVideoError:
        return
    assert isinstance(job, Job)
    assert job.progress is None or 0 <= job.progress <= 100


@given(
    st.integers(min_value=100, max_value=599),
    st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)
def test_api_error_always_returns_a_typed_error(status: int, body: bytes) -> None:
    error = api_error(status, body, {}, task_id="t1")
    assert isinstance(error, errors.APIError)
    assert error.status == status
    assert isinstance(error.message, str)


def test_every_status_maps_to_its_type() -> None:
    cases = {
        400: errors.InvalidRequestError,
        401: errors.AuthenticationError,
        402: errors.InsufficientQuotaError,
        403: errors.PermissionDeniedError,
        404: errors.NotFoundError,
        422: errors.ContentPolicyError,
        429: errors.RateLimitError,
        500: errors.ServerError,
        502: errors.ServerError,
        503: errors.ServerError,
    }
    for status, cls in cases.items():
        assert type(api_error(status, b"{}", {})) is cls


def test_flat_nested_and_html_error_bodies() -> None:
    flat = api_error(
        404,
        b'{"code": null, "message": "Task not found", "param": "task_id", '
        b'"type": "invalid_request_error"}',
        {},
        task_id="abc",
    )
    assert (flat.message, flat.param, flat.type, flat.code) == (
        "Task not found",
        "task_id",
        "invalid_request_error",
        None,
    )
    nested = api_error(401, b'{"error": {"message": "bad key", "type": "x", "code": 1234}}', {})
    assert (nested.message, nested.code) == ("bad key", "1234")
    html = api_error(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", {})
    assert isinstance(html, errors.ServerError)
    assert "502 Bad Gateway" in html.message


def test_400_for_an_unknown_task_is_not_found() -> None:
    body = b'{"message": "task not exist", "param": "task_id"}'
    assert isinstance(api_error(400, body, {}, task_id="t"), errors.NotFoundError)
    assert type(api_error(400, b'{"message": "bad size"}', {}, task_id="t")) is (
        errors.InvalidRequestError
    )


def test_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    far = parse_retry_after({"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"}, now=0)
    assert far is not None
    assert far > 1e9
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    error = api_error(429, b"{}", {"Retry-After": "7"})
    assert isinstance(error, errors.RateLimitError)
    assert error.retry_after == 7.0


def test_progress_and_timestamps() -> None:
    assert [parse_progress(v) for v in (30, "30%", " 45 % ", 12.7, 250, -3, "x", True)] == [
        30,
        30,
        45,
        12,
        100,
        0,
        None,
        None,
    ]
    seconds = parse_timestamp(1640995200)
    assert seconds == datetime(2022, 1, 1, tzinfo=UTC)
    assert parse_timestamp(1640995200000) == seconds
    assert parse_timestamp("1640995200") == seconds
    assert parse_timestamp("2022-01-01T00:00:00Z") == seconds
    assert parse_timestamp(None) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "v1", "status": "completed", "url": "https://cdn.example/v.mp4"},
        {"task_id": "v1", "status": "SUCCEEDED", "result": {"url": "https://cdn.example/v.mp4"}},
        {"id": "v1", "status": "Success", "metadata": {"url": "https://cdn.example/v.mp4"}},
        {"id": "v1", "status": "done", "video_url": "https://cdn.example/v.mp4"},
        {"data": {"task_id": "v1", "task_status": "succeed", "url": "https://cdn.example/v.mp4"}},
    ],
)
def test_video_url_wherever_it_is(payload: dict[str, object]) -> None:
    job = parse_task(payload, model="m", provider="kling")
    assert job.id == "v1"
    assert job.state is JobState.SUCCEEDED
    assert job.video_url == "https://cdn.example/v.mp4"
    assert job.progress == 100


def test_unknown_fields_are_kept_and_progress_never_drops() -> None:
    first = parse_task(
        {"id": "v", "status": "processing", "progress": "60%", "shiny": {"new": 1}},
        model="sora-2",
        provider="sora",
    )
    assert first.raw["shiny"] == {"new": 1}
    second = parse_task(
        {"id": "v", "status": "queued", "progress": 20},
        model="sora-2",
        provider="sora",
        previous=first,
    )
    assert second.progress == 60
    assert second.state is JobState.RUNNING


def test_failed_job_carries_its_error() -> None:
    job = parse_task(
        {"task_id": "k", "status": "failed", "error": {"code": 1301, "message": "nsfw"}},
        model="kling-v1",
        provider="kling",
    )
    assert job.error is not None
    assert (job.error.code, job.error.message) == ("1301", "nsfw")
    with pytest.raises(errors.JobFailedError) as caught:
        job.raise_for_state()
    assert caught.value.job is job
