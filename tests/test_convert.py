"""The asyncvideo JSON form: every public data class to a JSON-safe dict and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncvideo import (
    DownloadedEvent,
    Event,
    FailedEvent,
    Job,
    JobError,
    JobState,
    Limits,
    Outcome,
    PollPolicy,
    ProgressEvent,
    RetryPolicy,
    StateChangedEvent,
    SubmittedEvent,
    VideoRequest,
    errors,
    event_from_dict,
)
from asyncvideo.errors import ConfigurationError, ValidationError

# -- strategies ----------------------------------------------------------------------------

words = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
maybe_text = st.none() | st.text(max_size=20)
json_scalars: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=10),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
aware_datetimes = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
maybe_datetime = st.none() | aware_datetimes
positive_floats = st.floats(min_value=0.001, max_value=1e6)
durations = st.floats(min_value=0, max_value=1e5)

job_errors = st.builds(JobError, code=maybe_text, message=st.text(max_size=30))
jobs = st.builds(
    Job,
    id=words,
    model=words,
    provider=words,
    state=st.sampled_from(JobState),
    native_status=maybe_text,
    progress=st.none() | st.integers(0, 100),
    video_url=maybe_text,
    created_at=maybe_datetime,
    completed_at=maybe_datetime,
    expires_at=maybe_datetime,
    error=st.none() | job_errors,
    raw=json_objects,
)
path_names = st.text(alphabet="abcxyz/._-: ", min_size=1, max_size=20)
images = st.one_of(
    st.none(),
    st.sampled_from(["https://cdn.example/a.png", "http://x/y.jpg", "data:image/png;base64,AA=="]),
    path_names.filter(lambda s: s.strip() != ""),  # a str path
    st.builds(Path, path_names),  # a Path, even one named like "data:x"
    st.binary(min_size=1, max_size=64),
)
requests = st.builds(
    VideoRequest,
    prompt=words,
    model=words,
    seconds=st.none() | st.integers(1, 60) | positive_floats,
    size=st.none() | st.builds("{}x{}".format, st.integers(10, 9999), st.integers(10, 9999)),
    resolution=maybe_text,
    fps=st.none() | st.integers(1, 120),
    seed=st.none() | st.integers(),
    negative_prompt=maybe_text,
    image=images,
    last_frame=images,
    watermark=st.none() | st.booleans(),
    prompt_extend=st.none() | st.booleans(),
    audio=st.none() | st.booleans(),
    callback_url=maybe_text,
    extra=json_objects,
    provider=maybe_text,
    idempotency_key=maybe_text,
)
indexes = st.integers(0, 10**9)
our_errors = st.one_of(
    st.builds(errors.AsyncVideoError, st.text(max_size=20)),
    st.builds(errors.ValidationError, st.text(max_size=20), field=maybe_text),
    st.builds(errors.ConnectError, st.text(max_size=20), task_id=maybe_text),
    st.builds(errors.ProtocolError, st.text(max_size=20), status=st.none() | st.integers()),
    st.builds(
        errors.ServerError,
        st.text(max_size=20),
        status=st.integers(500, 599),
        code=maybe_text,
        type=maybe_text,
        param=maybe_text,
        task_id=maybe_text,
    ),
    st.builds(
        errors.RateLimitError,
        st.text(max_size=20),
        retry_after=st.none() | positive_floats,
        task_id=maybe_text,
    ),
    st.builds(errors.JobFailedError, jobs),
    st.builds(errors.JobTimeoutError, jobs, positive_floats),
    st.builds(
        errors.CreateOutcomeUnknown.after,
        st.builds(errors.TimeoutError, st.text(max_size=20)),
        idempotency_key=maybe_text,
    ),
    st.builds(errors.IntegrityError, st.text(max_size=20), task_id=maybe_text),
)
foreign_errors = st.one_of(
    st.builds(OSError, st.text(max_size=20)),
    st.builds(TimeoutError, st.text(max_size=20)),  # builtins, not asyncvideo's
    st.builds(KeyError, st.text(max_size=20)),
)
outcomes = st.builds(
    Outcome,
    index=indexes,
    request=requests,
    job=st.none() | jobs,
    path=st.none() | st.builds(Path, path_names),
    error=st.none() | our_errors | foreign_errors,
)
events = st.one_of(
    st.builds(SubmittedEvent, index=indexes, job=jobs),
    st.builds(StateChangedEvent, index=indexes, job=jobs, previous=jobs),
    st.builds(ProgressEvent, index=indexes, job=jobs),
    st.builds(
        DownloadedEvent,
        index=indexes,
        job=jobs,
        path=st.builds(Path, path_names),
        size=st.integers(0, 2**40),
    ),
    st.builds(
        FailedEvent,
        index=indexes,
        request=requests,
        job=st.none() | jobs,
        error=our_errors | foreign_errors,
    ),
)
configs = st.one_of(
    st.builds(
        Limits,
        max_active_jobs=st.integers(1, 10**6),
        max_creates=st.integers(1, 1000),
        requests_per_second=st.none() | positive_floats,
    ),
    st.builds(
        PollPolicy,
        first_delay=durations,
        steps=st.lists(positive_floats, max_size=3, unique=True).map(
            lambda untils: tuple((until, until / 2) for until in sorted(untils))
        ),
        final_interval=positive_floats,
        jitter=st.floats(0, 0.99),
        deadline=positive_floats,
    ),
    st.builds(
        RetryPolicy,
        max_attempts=st.integers(1, 20),
        base_delay=durations,
        max_delay=durations,
        max_retry_after=durations,
        not_ready_window=durations,
    ),
)


def through_json(data: dict[str, object]) -> Any:
    """What a journal or an HTTP response hands back: strict JSON, parsed again."""
    text = json.dumps(data, allow_nan=False)
    loaded = json.loads(text)
    assert loaded == data  # no tuples, bytes, datetimes or enums left in the dict
    return loaded


# -- round trips ----------------------------------------------------------------------------


@given(jobs)
def test_job_round_trip(job: Job) -> None:
    back = Job.from_dict(through_json(job.to_dict()))
    assert back == job
    assert back.raw == job.raw  # raw is left out of ==
    for name in ("created_at", "completed_at", "expires_at"):
        value = getattr(back, name)
        assert value is None or value.tzinfo is UTC


@given(job_errors)
def test_job_error_round_trip(error: JobError) -> None:
    assert JobError.from_dict(through_json(error.to_dict())) == error


@given(requests)
def test_request_round_trip(request: VideoRequest) -> None:
    back = VideoRequest.from_dict(through_json(request.to_dict()))
    assert back == request
    assert type(back.image) is type(request.image) or isinstance(back.image, Path)


@given(configs)
def test_config_round_trip(config: Limits | PollPolicy | RetryPolicy) -> None:
    assert type(config).from_dict(through_json(config.to_dict())) == config


def same_error(back: BaseException | None, original: BaseException | None) -> None:
    if original is None:
        assert back is None
        return
    assert back is not None
    if type(original).__module__ == "asyncvideo.errors":
        assert type(back) is type(original)
        assert str(back) == str(original)
        assert back.args == original.args or isinstance(original, errors.APIError)
        for name in ("status", "code", "type", "param", "task_id", "retry_after", "field"):
            assert getattr(back, name, None) == getattr(original, name, None), name
        assert getattr(back, "job", None) == getattr(original, "job", None)
        same_error(getattr(back, "cause", None), getattr(original, "cause", None))
    else:
        assert type(back) is errors.AsyncVideoError
        qualified = f"{type(original).__module__}.{type(original).__qualname__}"
        assert str(back) == f"{qualified}: {original}"


@given(outcomes)
def test_outcome_round_trip(outcome: Outcome) -> None:
    data = through_json(outcome.to_dict())
    back = Outcome.from_dict(data)
    assert (back.index, back.request, back.job, back.path) == (
        outcome.index,
        outcome.request,
        outcome.job,
        outcome.path,
    )
    same_error(back.error, outcome.error)
    if outcome.error is None or type(outcome.error).__module__ == "asyncvideo.errors":
        assert back.to_dict() == data  # a summary of a summary is the same summary


@given(events)
def test_event_round_trip(event: Any) -> None:
    data = through_json(event.to_dict())
    back = type(event).from_dict(data)
    assert event_from_dict(data).to_dict() == back.to_dict()
    if isinstance(event, FailedEvent):
        assert (back.index, back.request, back.job) == (event.index, event.request, event.job)
        same_error(back.error, event.error)
    else:
        assert back == event


# -- the form itself ------------------------------------------------------------------------

JOB = Job(
    id="task_1",
    model="kling-v1",
    provider="kling",
    state=JobState.SUCCEEDED,
    progress=100,
    video_url="https://cdn.example/v.mp4",
    created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=8))),
    raw={"task_id": "task_1", "data": {"status": "SUCCESS"}},
)


def test_job_form() -> None:
    assert JOB.to_dict() == {
        "id": "task_1",
        "model": "kling-v1",
        "provider": "kling",
        "state": "succeeded",
        "native_status": None,
        "progress": 100,
        "video_url": "https://cdn.example/v.mp4",
        "created_at": "2025-01-01T19:04:05+00:00",
        "completed_at": None,
        "expires_at": None,
        "error": None,
        "raw": {"task_id": "task_1", "data": {"status": "SUCCESS"}},
        "ref": JOB.ref,
    }


def test_job_form_carries_its_ref_and_reading_ignores_it() -> None:
    data = through_json(JOB.to_dict())
    assert data["ref"] == JOB.ref
    assert data["ref"].startswith("av1.")
    assert Job.from_dict(data) == JOB
    # Derived, never read: a stale or forged ref cannot change the job it sits in.
    other = Job.from_dict(data | {"ref": "av1.forged"})
    assert other == JOB
    assert other.ref == JOB.ref


def test_every_event_round_trips_through_json_by_its_tag() -> None:
    failed_job = attrs.evolve(JOB, state=JobState.FAILED, error=JobError(code="E1", message="nsfw"))
    request = VideoRequest(prompt="a cat", model="kling-v1")
    events: list[Event] = [
        SubmittedEvent(index=0, job=JOB),
        StateChangedEvent(index=1, job=JOB, previous=attrs.evolve(JOB, state=JobState.RUNNING)),
        ProgressEvent(index=2, job=attrs.evolve(JOB, progress=40)),
        DownloadedEvent(index=3, job=JOB, path=Path("out/a.mp4"), size=49152),
        FailedEvent(
            index=4, request=request, job=failed_job, error=errors.JobFailedError(failed_job)
        ),
    ]
    tags = []
    for event in events:
        data = json.loads(json.dumps(event.to_dict(), allow_nan=False))
        tags.append(data["event"])
        back = event_from_dict(data)
        assert type(back) is type(event)
        if isinstance(event, FailedEvent):
            assert isinstance(back, FailedEvent)
            assert (back.index, back.request, back.job) == (event.index, event.request, event.job)
            assert type(back.error) is errors.JobFailedError
            assert str(back.error) == str(event.error)
        else:
            assert back == event
    assert tags == ["submitted", "state_changed", "progress", "downloaded", "failed"]
    with pytest.raises(ValidationError, match="not an event"):
        event_from_dict({"event": "exploded", "index": 0})


def test_naive_datetimes_are_taken_as_utc() -> None:
    data = JOB.to_dict() | {"created_at": "2025-01-02T03:04:05"}
    assert Job.from_dict(data).created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_image_forms() -> None:
    request = VideoRequest(prompt="a cat", image=b"\x89PNG", last_frame=Path("data:not-a-url.png"))
    data = request.to_dict()
    assert data["image"] == {"base64": "iVBORw=="}
    assert data["last_frame"] == {"path": "data:not-a-url.png"}
    url = VideoRequest(prompt="a cat", image="https://x/a.png").to_dict()["image"]
    assert url == "https://x/a.png"


def test_error_summary_form() -> None:
    error = errors.RateLimitError("slow down", retry_after=3.0, task_id="t1")
    data = Outcome(index=0, request=VideoRequest(prompt="a"), error=error).to_dict()
    assert data["error"] == {
        "type": "RateLimitError",
        "message": "slow down",
        "status": 429,
        "code": None,
        "error_type": None,
        "param": None,
        "task_id": "t1",
        "retry_after": 3.0,
    }


def test_event_tags() -> None:
    tags = {
        SubmittedEvent(index=0, job=JOB).to_dict()["event"],
        ProgressEvent(index=0, job=JOB).to_dict()["event"],
        StateChangedEvent(index=0, job=JOB, previous=JOB).to_dict()["event"],
        DownloadedEvent(index=0, job=JOB, path=Path("a.mp4"), size=1).to_dict()["event"],
    }
    assert tags == {"submitted", "progress", "state_changed", "downloaded"}
    with pytest.raises(ValidationError, match="progress"):
        SubmittedEvent.from_dict(ProgressEvent(index=0, job=JOB).to_dict())
    with pytest.raises(ValidationError, match="not an event"):
        event_from_dict({"index": 0})


# -- reading is strict about what people write ------------------------------------------------


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"prompt": "a cat", "promt": "a cat"}, "promt"),
        ({"prompt": 5}, "prompt"),
        ({"prompt": "a cat", "seconds": "5"}, "seconds"),
        ({"prompt": "a cat", "seconds": -1}, "seconds"),
        ({"prompt": "a cat", "watermark": 1}, "watermark"),
        ({"prompt": "a cat", "image": {"base64": "not base64!"}}, "image"),
        ({"prompt": "a cat", "image": {"url": "https://x"}}, "image"),
        ({"prompt": "a cat", "extra": []}, "extra"),
    ],
)
def test_bad_request_data_names_the_field(data: dict[str, object], names: str) -> None:
    with pytest.raises(ValidationError, match=names):
        VideoRequest.from_dict(data)


def test_unknown_job_keys_are_ignored() -> None:
    # A journal written by a newer SDK still reads.
    assert Job.from_dict(JOB.to_dict() | {"cost": 0.25}) == JOB


def test_bad_job_data() -> None:
    with pytest.raises(ValidationError, match="state"):
        Job.from_dict(JOB.to_dict() | {"state": "melting"})
    with pytest.raises(ValidationError, match="mapping"):
        Job.from_dict([])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cls", "data", "names"),
    [
        (Limits, {"max_creates": 2.5}, "max_creates"),
        (Limits, {"max_creates": 0}, "max_creates"),
        (Limits, {"max_creats": 4}, "max_creats"),
        (RetryPolicy, {"max_attempts": True}, "max_attempts"),
        (PollPolicy, {"steps": [[30, 5], [10, 5]]}, "steps"),
    ],
)
def test_bad_config_data_is_a_configuration_error(
    cls: type[Any], data: dict[str, object], names: str
) -> None:
    with pytest.raises(ConfigurationError, match=names):
        cls.from_dict(data)
