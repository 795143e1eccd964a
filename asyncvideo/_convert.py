"""The one cattrs converter: public classes <-> JSON-safe dicts (the ``asyncvideo`` JSON form).

Every ``to_dict()`` / ``from_dict()`` in the SDK goes through :data:`converter`,
so the journal, the CLI's ``--json`` output and a web app's responses agree on
one form. ``json.dumps(x.to_dict(), allow_nan=False)`` always works, and
``type(x).from_dict(x.to_dict()) == x`` wherever ``==`` means something.

The form, field by field:

- attrs classes become dicts with every field, under the field's name.
- ``datetime``: an ISO 8601 string in UTC (``"2025-01-02T03:04:05+00:00"``);
  a naive datetime is taken to be UTC already. Read back as an aware UTC datetime.
- ``JobState``: its value (``"succeeded"``).
- ``Path`` (``Outcome.path``, ``DownloadedEvent.path``): a string.
- Tuples (``PollPolicy.steps``): lists.
- ``Job.raw``, ``VideoRequest.extra``: plain dicts (lists for tuples), values as given.
- ``VideoRequest.image`` / ``last_frame``: a ``str`` stays a string (a URL or a
  path, by the usual rule); an ``os.PathLike`` becomes ``{"path": "frames/a.png"}``
  and comes back a ``Path``; ``bytes`` become ``{"base64": "iVBORw0K..."}``
  (standard alphabet, padded). The tags keep a path a path even when its name
  looks like a URL, and keep bytes apart from text.
- ``Job`` adds ``"ref"`` (:attr:`Job.ref`, derived from the other fields) as its
  last key, so a web app's JSON carries the handle to re-attach with; reading
  ignores it.
- Events carry their kind under ``"event"`` (``"submitted"``, ``"state_changed"``,
  ``"progress"``, ``"downloaded"``, ``"failed"``), so a stream of them can be read
  back with :func:`structure_event` (public as ``asyncvideo.event_from_dict``).
- An exception (``Outcome.error``, ``FailedEvent.error``) becomes a *summary*::

      {"type": "RateLimitError", "message": "slow down", "status": 429,
       "code": None, "error_type": None, "param": None, "task_id": "t1",
       "retry_after": 3.0}

  ``type`` is the class name for :mod:`asyncvideo.errors` classes and
  ``module.QualName`` for any other (``"builtins.OSError"``); ``message`` is the
  message the error was made with (``str(exc)`` for all but ``APIError``, whose
  ``str`` adds the status); the attributes our errors carry follow (``status``,
  ``code``, ``param``, ``task_id``, ``retry_after``, ``idempotency_key``,
  ``field``, ``timeout``; the gateway's ``type`` as ``error_type``; ``job`` as a
  job dict; ``cause`` as a nested summary). It is read back as the matching
  :mod:`asyncvideo.errors` class with the same ``str()`` and attributes, or, for
  any other type, as a plain ``AsyncVideoError("builtins.OSError: ...")``. It is
  a faithful summary, not the original object: no traceback, no ``__cause__``.

Reading is strict where the writer is a person and tolerant where it is the SDK:
unknown keys are an error for ``VideoRequest`` and the config classes (a
misspelt ``"promt"`` must not cost a clip) and ignored for jobs, outcomes and
events (a newer SDK may add fields). Values are never coerced: ``"5"`` is not
an int and ``1`` is not ``True``. A bad dict raises
:class:`~asyncvideo.errors.ValidationError` naming the field
(:class:`~asyncvideo.errors.ConfigurationError` for the config classes).
"""

from __future__ import annotations

import base64
import binascii
import collections.abc
import math
import os
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import cattrs
import cattrs.v
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from . import errors
from ._events import (
    DownloadedEvent,
    Event,
    FailedEvent,
    ProgressEvent,
    StateChangedEvent,
    SubmittedEvent,
)
from ._models import ImageInput, Job, Limits, VideoRequest
from ._polling import PollPolicy, RetryPolicy
from .errors import AsyncVideoError, ConfigurationError, ValidationError

__all__ = ["EVENT_TAGS", "converter", "from_dict", "structure_event", "to_dict"]

T = TypeVar("T")

#: The converter behind every ``to_dict`` / ``from_dict``.
converter = cattrs.Converter(forbid_extra_keys=False)

# -- primitives: our own form is exact, so nothing is coerced -------------------------------


def _strict(kind: type[Any], check: Callable[[object], bool]) -> None:
    def structure(value: object, _: object) -> object:
        if not check(value):
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return value

    converter.register_structure_hook(kind, structure)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: object) -> bool:
    # A JSON number without a fraction reads back as int; it is still a float field's value.
    return isinstance(value, int | float) and not isinstance(value, bool)


_strict(str, lambda value: isinstance(value, str))
_strict(bool, lambda value: isinstance(value, bool))
_strict(int, _is_int)
_strict(float, _is_float)


def _unstructure_float(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no JSON form")
    return value


def _is_tuple(kind: object) -> bool:
    return kind is tuple or typing.get_origin(kind) is tuple


converter.register_unstructure_hook(float, _unstructure_float)
# JSON has arrays, not tuples: to_dict() must equal json.loads(json.dumps(to_dict())).
converter.register_unstructure_hook_func(
    _is_tuple, lambda value: [converter.unstructure(item) for item in value]
)

# -- datetimes, paths, mappings -----------------------------------------------------------


def _unstructure_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _structure_datetime(value: object, _: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _structure_path(value: object, _: object) -> Path:
    if not isinstance(value, str):
        raise TypeError(f"expected a path string, got {value!r}")
    return Path(value)


def _plain(value: object) -> object:
    """A deep copy with every mapping a dict and every tuple or list a list."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _is_str_mapping(kind: object) -> bool:
    return typing.get_origin(kind) in (Mapping, collections.abc.Mapping, dict)


def _structure_mapping(value: object, _: object) -> dict[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError(f"expected an object with string keys, got {value!r}")
    return dict(value)


converter.register_unstructure_hook(datetime, _unstructure_datetime)
converter.register_structure_hook(datetime, _structure_datetime)
converter.register_unstructure_hook(Path, os.fspath)
converter.register_structure_hook(Path, _structure_path)
converter.register_unstructure_hook_func(_is_str_mapping, _plain)
converter.register_structure_hook_func(_is_str_mapping, _structure_mapping)

# -- images: str as is, paths and bytes tagged ------------------------------------------------

_IMAGE = ImageInput | None


def _unstructure_image(value: ImageInput | None) -> object:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    return {"path": os.fspath(value)}


def _structure_image(value: object, _: object) -> ImageInput | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        if isinstance(encoded := value.get("base64"), str):
            try:
                return base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"bad base64 image: {exc}") from exc
        if isinstance(path := value.get("path"), str):
            return Path(path)
    raise TypeError(f'expected a string, {{"path": ...}} or {{"base64": ...}}, got {value!r}')


converter.register_unstructure_hook_func(lambda kind: kind == _IMAGE, _unstructure_image)
converter.register_structure_hook_func(lambda kind: kind == _IMAGE, _structure_image)

# -- exceptions: a faithful summary --------------------------------------------------------------

#: attribute -> key, for the plain-valued attributes asyncvideo's errors carry.
_ERROR_ATTRIBUTES = {
    "status": "status",
    "code": "code",
    "type": "error_type",  # "type" names the class
    "param": "param",
    "task_id": "task_id",
    "retry_after": "retry_after",
    "idempotency_key": "idempotency_key",
    "field": "field",
    "timeout": "timeout",
    "path": "path",
}
_MAX_CAUSES = 8  # a cause chain is short; a cycle must not recurse forever


def _error_type_name(cls: type[BaseException]) -> str:
    if cls.__module__ == errors.__name__ and cls.__name__ in errors.__all__:
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def _unstructure_error(exc: BaseException, depth: int = 0) -> dict[str, object]:
    name = _error_type_name(type(exc))
    message = exc.message if isinstance(exc, errors.APIError) else str(exc)
    summary: dict[str, object] = {"type": name, "message": message}
    if "." in name:  # not ours: its attributes may mean something else
        return summary
    for attribute, key in _ERROR_ATTRIBUTES.items():
        if hasattr(exc, attribute):
            summary[key] = _plain(getattr(exc, attribute))
    job = getattr(exc, "job", None)
    if isinstance(job, Job):
        summary["job"] = converter.unstructure(job, Job)
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and depth < _MAX_CAUSES:
        summary["cause"] = _unstructure_error(cause, depth + 1)
    return summary


def _structure_error(value: object, _: object = None) -> BaseException:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected an error summary object, got {value!r}")
    name, message = value.get("type"), value.get("message")
    if not isinstance(name, str) or not isinstance(message, str):
        raise TypeError("an error summary needs string 'type' and 'message'")
    cls = getattr(errors, name) if name in errors.__all__ else None
    if cls is None:
        return AsyncVideoError(f"{name}: {message}")
    # Built without calling __init__: the constructors differ, the state they set does not.
    exc: BaseException = cls.__new__(cls)
    BaseException.__init__(exc, message)
    if isinstance(exc, errors.APIError):
        exc.message = message
    for attribute, key in _ERROR_ATTRIBUTES.items():
        if key in value:
            setattr(exc, attribute, value[key])
    if "job" in value:
        setattr(exc, "job", converter.structure(value["job"], Job))  # noqa: B010
    if "cause" in value:
        setattr(exc, "cause", _structure_error(value["cause"]))  # noqa: B010
    return exc


def _is_exception_type(kind: object) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseException)


converter.register_unstructure_hook_func(_is_exception_type, _unstructure_error)
converter.register_structure_hook_func(_is_exception_type, _structure_error)

# -- classes --------------------------------------------------------------------------------------

_CONFIG_CLASSES: tuple[type[Any], ...] = (Limits, PollPolicy, RetryPolicy)

#: Written by people (prompt files, settings): an unknown key is a mistake.
_STRICT_CLASSES: tuple[type[Any], ...] = (VideoRequest, *_CONFIG_CLASSES)

for _strict_cls in _STRICT_CLASSES:
    converter.register_structure_hook(
        _strict_cls,
        make_dict_structure_fn(_strict_cls, converter, _cattrs_forbid_extra_keys=True),
    )

_unstructure_job_fields = make_dict_unstructure_fn(Job, converter)


def _unstructure_job(job: Job) -> dict[str, object]:
    return {**_unstructure_job_fields(job), "ref": job.ref}


converter.register_unstructure_hook(Job, _unstructure_job)

#: event class -> its tag under ``"event"``
EVENT_TAGS: Mapping[type[Any], str] = {
    SubmittedEvent: "submitted",
    StateChangedEvent: "state_changed",
    ProgressEvent: "progress",
    DownloadedEvent: "downloaded",
    FailedEvent: "failed",
}
_EVENTS_BY_TAG = {tag: cls for cls, tag in EVENT_TAGS.items()}


def _register_event(cls: type[Any], tag: str) -> None:
    unstructure = make_dict_unstructure_fn(cls, converter)
    structure = make_dict_structure_fn(cls, converter)

    def unstructure_tagged(event: object) -> dict[str, object]:
        return {"event": tag, **unstructure(event)}

    def structure_tagged(value: object, _: object) -> object:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an event object, got {value!r}")
        if value.get("event", tag) != tag:
            raise ValueError(f"expected a {tag!r} event, got {value.get('event')!r}")
        return structure({key: item for key, item in value.items() if key != "event"}, cls)

    converter.register_unstructure_hook(cls, unstructure_tagged)
    converter.register_structure_hook(cls, structure_tagged)


for _event_cls, _tag in EVENT_TAGS.items():
    _register_event(_event_cls, _tag)

# -- the functions the classes' methods call ------------------------------------------------------


def to_dict(obj: object) -> dict[str, object]:
    """``obj`` (a public class's instance) in the ``asyncvideo`` JSON form.

    Args:
        obj: a ``Job``, ``JobError``, ``Outcome``, ``VideoRequest``, event or config.

    Example:
        >>> from asyncvideo import JobError
        >>> to_dict(JobError(code="E1", message="moderation"))
        {'code': 'E1', 'message': 'moderation'}
    """
    result = converter.unstructure(obj, type(obj))
    if not isinstance(result, dict):  # pragma: no cover - every public class is a dict
        raise TypeError(f"{type(obj).__name__} has no dict form")
    return result


def _describe(exc: BaseException, kind: type | None) -> str:
    # Our own checks (the classes' validators) already name the field and the value.
    if isinstance(exc, AsyncVideoError):
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def from_dict(cls: type[T], data: object) -> T:
    """An instance of ``cls`` from its ``asyncvideo`` JSON form (see the module docstring).

    Args:
        cls: the class to build.
        data: a mapping as :func:`to_dict` (or ``json.loads``) returns it.

    Raises:
        ValidationError: the data does not fit ``cls``; the message names the field.
        ConfigurationError: the same, for ``Limits``, ``PollPolicy`` and ``RetryPolicy``.

    Example:
        >>> from asyncvideo import JobError
        >>> from_dict(JobError, {"code": None, "message": "timed out"})
        JobError(code=None, message='timed out')
    """
    error = ConfigurationError if cls in _CONFIG_CLASSES else ValidationError
    if not isinstance(data, Mapping):
        raise error(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, cls.__name__, _describe))
        raise error(f"bad {cls.__name__} data: {problems}") from exc
    except AsyncVideoError:
        raise
    except (TypeError, ValueError) as exc:
        raise error(f"bad {cls.__name__} data: {exc}") from exc


def structure_event(data: object) -> Event:
    """Any event from its dict form, chosen by its ``"event"`` tag.

    Args:
        data: a mapping as ``event.to_dict()`` returns it.

    Raises:
        ValidationError: no known tag, or the data does not fit the event.

    Example:
        >>> from asyncvideo import JobState
        >>> job = Job(id="t", model="m", provider="p", state=JobState.QUEUED)
        >>> structure_event(SubmittedEvent(index=0, job=job).to_dict()).job.id
        't'
    """
    tag = data.get("event") if isinstance(data, Mapping) else None
    cls = _EVENTS_BY_TAG.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ValidationError(f"not an event: no known 'event' tag in {data!r}")
    event: Event = from_dict(cls, data)
    return event
