"""The liberal readers: every documented shape, and nothing but asyncvideo errors on junk."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncvideo import Job, JobError, JobState, errors
from asyncvideo.providers._parse import (
    api_error,
    is_not_ready,
    parse_progress,
    parse_retry_after,
    parse_task,
    parse_timestamp,
    task_id_in,
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
    assert [parse_progress(v) for v in (30, "30%", " 45 % ", 12.7, 250, -3, "x", "30X", True)] == [
        30,
        30,
        45,
        12,
        100,
        0,
        None,
        None,  # only a per cent sign is read past
        None,
    ]
    seconds = parse_timestamp(1640995200)
    assert seconds == datetime(2022, 1, 1, tzinfo=UTC)
    assert parse_timestamp(1640995200000) == seconds
    assert parse_timestamp("1640995200") == seconds
    assert parse_timestamp("2022-01-01T00:00:00Z") == seconds
    assert parse_timestamp(None) is None
    # The edges: 0 is unset, 1 is a second; 1e11 is still seconds, more is milliseconds.
    assert parse_timestamp(0) is None
    assert parse_timestamp(1) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert parse_timestamp(1e11) == datetime.fromtimestamp(1e11, tz=UTC)
    assert parse_timestamp(1e11 + 1000) == datetime.fromtimestamp(1e8 + 1, tz=UTC)


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


# -- shapes from the real gateways (new-api relay: dto/task.go, dto/openai_video.go,
#    controller/video_proxy.go; LiteLLM proxy: its videos endpoints) ---------------------

NEW_API_TASK = {
    "code": "success",
    "message": "",
    "data": {
        "id": 42,
        "created_at": 1735689600,
        "task_id": "task_Q2x9LmZr0aB7cD1eF3gH5iJ7kL9mN0pQ",
        "platform": "50",
        "action": "textGenerate",
        "status": "SUCCESS",
        "fail_reason": "",
        "result_url": "https://cdn.example/out.mp4",
        "submit_time": 1735689600,
        "finish_time": 1735689752,
        "progress": "100%",
        "data": {"code": 0, "data": {"task_id": "8675309", "task_status": "succeed"}},
    },
}


def test_relay_envelope_string_task_id_beats_numeric_row_id() -> None:
    job = parse_task(NEW_API_TASK, model="kling-v1", provider="kling")
    assert job.id == "task_Q2x9LmZr0aB7cD1eF3gH5iJ7kL9mN0pQ"
    assert job.state is JobState.SUCCEEDED
    assert job.video_url == "https://cdn.example/out.mp4"
    assert job.created_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert job.completed_at == datetime.fromtimestamp(1735689752, tz=UTC)
    assert job.raw is NEW_API_TASK


def test_a_numeric_id_alone_is_still_an_id() -> None:
    assert parse_task({"id": 42, "status": "queued"}, model="m", provider="kling").id == "42"


def test_old_relays_put_the_url_of_a_success_in_fail_reason() -> None:
    body = {"task_id": "t", "status": "SUCCESS", "fail_reason": "https://cdn.example/a.mp4"}
    job = parse_task(body, model="kling-v1", provider="kling")
    assert job.video_url == "https://cdn.example/a.mp4"
    failed = parse_task(
        {**body, "status": "FAILURE", "fail_reason": "nsfw"}, model="m", provider="k"
    )
    assert failed.error is not None
    assert failed.error.message == "nsfw"
    assert failed.video_url is None


def test_url_inside_the_upstream_body_a_relay_keeps() -> None:
    body = {
        "task_id": "t",
        "status": "SUCCESS",
        "data": {"data": {"task_result": {"videos": [{"url": "https://cdn.example/k.mp4"}]}}},
    }
    assert parse_task(body, model="m", provider="kling").video_url == "https://cdn.example/k.mp4"


def test_the_known_id_is_kept_when_a_later_body_names_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    created = parse_task({"id": "video_AAA", "status": "queued"}, model="sora-2", provider="sora")
    caplog.set_level("DEBUG", logger="asyncvideo")
    body = {"id": "video_BBB", "status": "in_progress", "model": "openai/sora-2"}
    first = parse_task(body, model="sora-2", provider="sora", previous=created)
    second = parse_task(
        {"id": "video_BBB", "status": "completed"}, model="sora-2", provider="sora", previous=first
    )
    attached = parse_task(
        {"id": "video_BBB", "status": "completed"}, model="sora-2", provider="sora", task_id="x"
    )
    assert (first.id, second.id, attached.id) == ("video_AAA", "video_AAA", "x")
    assert second.raw["id"] == "video_BBB"
    assert first.model == "sora-2"  # the model the job was made with, not the body's
    renamed = [r for r in caplog.records if "video_BBB" in r.getMessage()]
    assert len(renamed) == 2  # once for the job, once for the re-attached one
    assert all(r.levelname == "DEBUG" for r in renamed)


def test_relay_error_codes_decide_not_found() -> None:
    body = b'{"code": "task_not_exist", "message": "task_not_exist", "data": null}'
    error = api_error(400, body, {}, task_id="task_x")
    assert type(error) is errors.NotFoundError
    assert error.code == "task_not_exist"
    assert type(api_error(404, b'{"error": {"message": "Task not found"}}', {})) is (
        errors.NotFoundError
    )
    other = b'{"code": "invalid_request", "message": "prompt is required", "data": null}'
    assert type(api_error(400, other, {}, task_id="t")) is errors.InvalidRequestError
    # A 5xx stays a server error whatever its code says: it is retried.
    assert type(api_error(500, body, {})) is errors.ServerError


def test_an_upstream_error_inside_a_message_is_unwrapped() -> None:
    upstream = {"error": {"message": "Your prompt was blocked", "code": "content_policy"}}
    relay = {"code": "fail_to_fetch_task", "message": json.dumps(upstream), "data": None}
    error = api_error(400, json.dumps(relay).encode(), {})
    assert (error.message, error.code) == ("Your prompt was blocked", "content_policy")
    proxy = {"error": {"message": "litellm.NotFoundError: " + json.dumps(upstream), "code": "404"}}
    inner = api_error(404, json.dumps(proxy).encode(), {})
    assert inner.message == "Your prompt was blocked"
    no_code = {"error": {"message": json.dumps({"error": {"message": "gone"}}), "code": "x1"}}
    assert api_error(400, json.dumps(no_code).encode(), {}).code == "x1"
    broken = {"message": "upstream said {not json}"}
    assert api_error(400, json.dumps(broken).encode(), {}).message == "upstream said {not json}"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            {"error": {"message": "Task is not completed yet, current status: IN_PROGRESS"}},
            True,
        ),
        (400, {"code": "video_not_ready", "message": "Video is not ready yet"}, True),
        (409, {"message": "video still processing"}, True),
        (425, {"message": "Too Early: in progress"}, True),
        (404, {"message": "Task not found"}, False),
        (400, {"message": "bad variant"}, False),
        (500, {"message": "not ready"}, False),
        (403, {"message": "not completed"}, False),
    ],
)
def test_not_ready_answers(status: int, body: dict[str, object], expected: bool) -> None:
    assert is_not_ready(api_error(status, json.dumps(body).encode(), {})) is expected


# -- edges found by mutation testing (mutmut on _parse.py) --------------------------------


@pytest.fixture
def tokyo_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local zone nine hours east of UTC, so "naive means UTC" is visible."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("tokyo_local_time")
def test_iso_timestamps_are_utc_whatever_the_local_zone() -> None:
    expected = datetime(2022, 1, 1, tzinfo=UTC)
    for text in ("2022-01-01T00:00:00", "2022-01-01T09:00:00+09:00", "2021-12-31T19:00:00-05:00"):
        parsed = parse_timestamp(text)
        assert parsed == expected, text
        assert parsed is not None
        assert parsed.utcoffset() == timedelta(0), text


@pytest.mark.parametrize("value", [0, -5, "0", float("inf"), "nan", True, False, [1], {"s": 1}])
def test_unset_or_impossible_timestamps_are_none(value: object) -> None:
    # new-api sends finish_time 0 until a task finishes.
    assert parse_timestamp(value) is None


def test_expiry_inside_the_result_object() -> None:
    body = {"id": "v", "status": "completed", "result": {"expires_at": 1735689600}}
    job = parse_task(body, model="sora-2", provider="sora")
    assert job.expires_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_task({"id": "v", "status": "completed", "result": "x"}, model="m", provider="k")
    assert (
        parse_task({"id": "v", "status": "completed"}, model="m", provider="k").expires_at is None
    )


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # a relay's ``result: null`` beside the container that holds the URL
        ({"result": None, "metadata": {"url": "https://cdn.example/a.mp4"}}, "a"),
        ({"data": [], "output": {"video_url": "https://cdn.example/a.mp4"}}, "a"),
        # a list of results: the first one's video, however deep, wins over the second's
        (
            {
                "videos": [
                    {"id": "v0", "content": {"url": "https://cdn.example/a.mp4"}},
                    {"id": "v1", "url": "https://cdn.example/b.mp4"},
                ]
            },
            "a",
        ),
    ],
)
def test_url_search_skips_empty_containers(payload: dict[str, object], expected: str) -> None:
    job = parse_task({"id": "t", "status": "succeeded", **payload}, model="m", provider="kling")
    assert job.video_url == f"https://cdn.example/{expected}.mp4"


def test_a_url_before_success_is_not_the_video() -> None:
    # A running task may echo its input image's URL; only a success names the video.
    body = {"id": "t", "status": "processing", "metadata": {"url": "https://cdn.example/in.png"}}
    assert parse_task(body, model="m", provider="kling").video_url is None


def test_later_answers_keep_what_earlier_ones_said() -> None:
    first = parse_task(
        {
            "id": "t",
            "status": "succeeded",
            "progress": 100,
            "created_at": 1735689600,
            "url": "https://cdn.example/v.mp4",
        },
        model="m",
        provider="kling",
    )
    again = parse_task(
        {"id": "t", "status": "succeeded"}, model="m", provider="kling", previous=first
    )
    assert again.video_url == "https://cdn.example/v.mp4"
    assert again.created_at == datetime(2025, 1, 1, tzinfo=UTC)
    running = parse_task({"id": "t", "status": "running", "progress": 60}, model="m", provider="k")
    later = parse_task({"id": "t", "status": "running"}, model="m", provider="k", previous=running)
    assert later.progress == 60


def test_a_poll_answer_that_names_no_id_keeps_its_result_under_data() -> None:
    body = {"status": "succeeded", "data": {"video_url": "https://cdn.example/v.mp4"}}
    job = parse_task(body, model="m", provider="kling", task_id="t")
    assert (job.id, job.state) == ("t", JobState.SUCCEEDED)
    assert job.video_url == "https://cdn.example/v.mp4"


def test_a_body_without_a_status_word() -> None:
    job = parse_task({"id": "t"}, model="m", provider="kling")
    assert (job.id, job.native_status) == ("t", None)


@pytest.mark.parametrize(
    ("payload", "task_id"),
    [
        # new-api's submit answer: the envelope's data holds only the task id
        ({"code": "success", "message": "", "data": {"task_id": "t9"}}, "t9"),
        # no status anywhere, and a data object that is not a task: the outer body counts
        ({"task_id": "t1", "data": {"prompt": "a fox"}}, "t1"),
    ],
)
def test_envelopes_are_unwrapped_only_around_a_task(
    payload: dict[str, object], task_id: str
) -> None:
    assert parse_task(payload, model="m", provider="kling").id == task_id


def test_protocol_errors_say_what_was_wrong() -> None:
    with pytest.raises(errors.ProtocolError, match="expected a JSON object for a task, got list"):
        parse_task([], model="m", provider="kling")
    with pytest.raises(errors.ProtocolError, match=r"^the gateway's answer names no task id$"):
        parse_task({"status": "queued"}, model="m", provider="kling")


@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({"error": {"msg": "nsfw"}}, None, "nsfw"),
        ({"error": {"message": "blocked"}}, None, "blocked"),
        ({"error": {"code": "E1"}}, "E1", "E1"),
        ({"error": {"type": "moderation", "message": "blocked"}}, "moderation", "blocked"),
        ({"error": {"code": 1301.0, "message": "nsfw"}}, "1301", "nsfw"),
        ({"error": "  nsfw "}, None, "nsfw"),
        ({"failure_reason": "too long"}, None, "too long"),
        ({"error_message": "bad prompt", "error_code": 7}, "7", "bad prompt"),
        ({"fail_reason": "nsfw", "error_code": "1301"}, "1301", "nsfw"),
        ({"task_status_msg": "risk control"}, None, "risk control"),  # Kling's callbacks
        ({"err_code": "CreditInsufficient"}, "CreditInsufficient", "CreditInsufficient"),  # Vidu
        ({"error": {}}, None, "the gateway reported FAILURE"),
        ({}, None, "the gateway reported FAILURE"),
    ],
)
def test_every_shape_of_a_task_failure(
    fields: dict[str, object], code: str | None, message: str
) -> None:
    job = parse_task(
        {"task_id": "t", "status": "FAILURE", **fields}, model="kling-v1", provider="kling"
    )
    assert job.error == JobError(code=code, message=message)


def test_a_success_never_carries_an_error() -> None:
    # Old relays put the URL of a success in fail_reason.
    body = {"task_id": "t", "status": "SUCCESS", "fail_reason": "https://cdn.example/a.mp4"}
    assert parse_task(body, model="kling-v1", provider="kling").error is None


def test_a_renamed_task_is_logged_once_with_both_names(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="asyncvideo")
    same = parse_task({"id": "video_AAA", "status": "queued"}, model="m", provider="sora")
    parse_task({"id": "video_AAA", "status": "queued"}, model="m", provider="sora", previous=same)
    parse_task(
        {"id": "video_AAA", "status": "queued"}, model="m", provider="sora", task_id="video_AAA"
    )
    assert caplog.records == []
    parse_task({"id": "video_BBB", "status": "queued"}, model="m", provider="sora", previous=same)
    assert [r.getMessage() for r in caplog.records] == [
        "task video_AAA is called video_BBB in this answer; keeping video_AAA"
    ]


def test_retry_after_edges() -> None:
    date = "Thu, 01 Jan 2099 00:00:00 GMT"
    at = datetime(2099, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after({"Retry-After": date}, now=at - 30) == 30.0
    assert parse_retry_after({"Retry-After": "Thu, 01 Jan 2015 00:00:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "0"}) == 0.0
    assert parse_retry_after({"Retry-After": "0"}) == 0.0
    assert parse_retry_after({"Retry-After": "0.5"}) == 0.5
    # An unreadable or negative retry-after-ms falls back to Retry-After.
    assert parse_retry_after({"retry-after-ms": "soon", "Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "-5", "Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "inf"}) is None
    for junk in ("-3", "inf", "nan"):
        assert parse_retry_after({"Retry-After": junk}) is None, junk
    # What the LiteLLM proxy forwards from its upstream.
    assert parse_retry_after({"llm_provider-retry-after": "4"}) == 4.0


def test_error_bodies_without_a_message() -> None:
    assert api_error(500, b"{}", {}).message == "HTTP 500"
    assert api_error(502, b"", {}).message == "HTTP 502"
    assert api_error(400, b'{"code": 1, "msg": "bad size"}', {}).message == "bad size"
    html = api_error(502, b"<p>" + b"x" * 500, {})
    assert html.message == "HTTP 502 with a non-JSON body: <p>" + "x" * 117
    # Only the first 200 bytes are read, however much of them is blank.
    blank = api_error(502, b"a" + b" " * 198 + b"bc", {})
    assert blank.message == "HTTP 502 with a non-JSON body: a b"


@pytest.mark.parametrize("status", [405, 409, 410, 418])
def test_other_client_errors_are_plain_api_errors(status: int) -> None:
    assert type(api_error(status, b"{}", {})) is errors.APIError


@pytest.mark.parametrize("param", ["task_id", "video_id", "id"])
def test_a_400_about_the_task_parameter_is_not_found(param: str) -> None:
    body = json.dumps({"message": "invalid", "param": param}).encode()
    assert type(api_error(400, body, {}, task_id="t")) is errors.NotFoundError
    assert type(api_error(400, body, {})) is errors.InvalidRequestError


def test_an_embedded_error_brings_its_type_and_param() -> None:
    upstream = {
        "error": {
            "message": "Your prompt was blocked",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "content_policy",
        }
    }
    # LiteLLM appends more text after the upstream's JSON.
    outer = {
        "error": {
            "message": (
                f"litellm.BadRequestError: {json.dumps(upstream)}. Received Model Group=sora-2"
            ),
            "type": "None",
            "param": "model",
            "code": "400",
        }
    }
    error = api_error(400, json.dumps(outer).encode(), {})
    assert (error.message, error.code, error.type, error.param) == (
        "Your prompt was blocked",
        "content_policy",
        "invalid_request_error",
        "prompt",
    )
    bare = {"error": {"message": json.dumps({"message": "gone"}), "type": "t1", "param": "p1"}}
    kept = api_error(400, json.dumps(bare).encode(), {})
    assert (kept.message, kept.type, kept.param) == ("gone", "t1", "p1")


def test_rate_limit_errors_carry_every_field() -> None:
    body = b'{"error": {"message": "slow down", "code": "rate_limit", "type": "t", "param": "p"}}'
    error = api_error(429, body, {"Retry-After": "2"}, task_id="t9")
    assert isinstance(error, errors.RateLimitError)
    assert (error.message, error.code, error.type, error.param, error.task_id) == (
        "slow down",
        "rate_limit",
        "t",
        "p",
        "t9",
    )
    assert (error.status, error.retry_after) == (429, 2.0)


def test_a_lowercase_z_is_utc_too() -> None:
    # RFC 3339 allows "z"; Python 3.11's fromisoformat does not.
    assert parse_timestamp("2022-01-01T00:00:00z") == datetime(2022, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("answer", "task_id"),
    [
        ({"id": "video_1", "status": "queued"}, "video_1"),
        # A relay's envelope names no task of its own; the task inside does.
        ({"code": "success", "message": "", "data": {"task_id": "t9", "status": "queued"}}, "t9"),
        ({"code": "success", "data": {"data": {"id": 42}}}, "42"),
        ({"code": "success", "data": {"note": "no task here"}}, None),
        ({"message": "accepted"}, None),
    ],
)
def test_the_task_id_an_answer_names(answer: dict[str, object], task_id: str | None) -> None:
    assert task_id_in(answer) == task_id


@pytest.mark.parametrize("task_id", ["..", "."])
def test_a_task_id_no_url_can_name_is_a_protocol_error(task_id: str) -> None:
    with pytest.raises(errors.ProtocolError) as caught:
        parse_task({"id": task_id, "status": "queued"}, model="m", provider="kling")
    assert str(caught.value) == (
        f"the gateway's answer names task {task_id!r}, which no URL can name"
    )
