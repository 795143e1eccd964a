"""The exceptions asyncvideo raises.

Every error carries what a user needs to act on it (HTTP status, task id,
idempotency key, ``retry_after``) and never the API key::

    AsyncVideoError
    ├── ValidationError            bad input, refused before any request (also a ValueError)
    ├── ConfigurationError         no API key, no base URL, unknown gateway profile, a bad
    │                              Limits/PollPolicy/RetryPolicy value (also a ValueError)
    ├── TransportError             the request did not get an HTTP answer
    │   ├── ConnectError           never reached the gateway (safe to retry anything)
    │   └── TimeoutError           sent, no answer in time
    ├── ProtocolError              an answer the SDK cannot read (not JSON, no task id)
    ├── APIError                   the gateway answered with an error status
    │   ├── InvalidRequestError    400
    │   ├── AuthenticationError    401, stops a batch
    │   ├── InsufficientQuotaError 402, stops a batch
    │   ├── PermissionDeniedError  403, stops a batch
    │   ├── NotFoundError          404 (or 400 "task not found")
    │   ├── ContentPolicyError     422
    │   ├── RateLimitError         429, with retry_after
    │   └── ServerError            5xx
    ├── CreateOutcomeUnknown       a create may or may not have made a task; carries the key
    ├── JobFailedError             the job ended failed or cancelled; carries the job
    ├── JobTimeoutError            the deadline passed first; carries the last job snapshot
    ├── DownloadError              the file could not be fetched or verified
    │   ├── VideoExpiredError      the video URL is past expires_at
    │   └── IntegrityError         wrong length, or the body is not an MP4
    ├── OutputError                the file system refused: not a folder, read-only, full
    │                              (carries the path; also an OSError)
    └── WebhookVerificationError   a callback whose signature, timestamp or delivery id
                                   does not check out (carries the reason); nothing changed

**Which errors stop a batch** is a property of the class: ``stops_batch``.
In ``Client.generate_many`` one job's error is that job's
:class:`~asyncvideo.Outcome`, and the others go on; an error whose class has
``stops_batch = True`` would fail every job (a bad key, no quota, a key that
may not use the model), so when a create or a status query raises one the
batch stops at once and raises it, with the tasks still unfinished named in
its notes. Those are :class:`AuthenticationError`,
:class:`InsufficientQuotaError` and :class:`PermissionDeniedError`. A
download's error is always that clip's own: a CDN answers 401 or 403 for an
expired signature, not for a bad key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ._models import Job

__all__ = [
    "APIError",
    "AsyncVideoError",
    "AuthenticationError",
    "ConfigurationError",
    "ConnectError",
    "ContentPolicyError",
    "CreateOutcomeUnknown",
    "DownloadError",
    "InsufficientQuotaError",
    "IntegrityError",
    "InvalidRequestError",
    "JobFailedError",
    "JobTimeoutError",
    "NotFoundError",
    "OutputError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "TimeoutError",
    "TransportError",
    "ValidationError",
    "VideoExpiredError",
    "WebhookVerificationError",
]


class AsyncVideoError(Exception):
    """Base class of every error asyncvideo raises.

    Attributes:
        stops_batch: whether this error stops a whole ``generate_many`` batch
            (see the module docstring); ``False`` unless a subclass says so.
    """

    stops_batch: ClassVar[bool] = False


class ValidationError(AsyncVideoError, ValueError):
    """A request the SDK refuses before sending anything.

    Attributes:
        field: the :class:`~asyncvideo.VideoRequest` field at fault, if one is.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigurationError(AsyncVideoError, ValueError):
    """The client is missing something it needs (API key, base URL, profile), or a
    configuration class (``Limits``, ``PollPolicy``, ``RetryPolicy``) got a value
    that makes no sense (``None``, ``2.5`` or ``True`` for a count; a negative,
    NaN or infinite time).

    Attributes:
        field: the configuration field at fault, if one is.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TransportError(AsyncVideoError):
    """The request got no HTTP answer (connection refused or reset, timeout)."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class ConnectError(TransportError):
    """The connection could not be made, so the gateway never saw the request."""


class TimeoutError(TransportError):
    """The request was sent but no answer came in time."""


class ProtocolError(AsyncVideoError):
    """The gateway answered with something the SDK cannot read."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class APIError(AsyncVideoError):
    """The gateway answered with an error status.

    Attributes:
        status: HTTP status code.
        message: the gateway's message (or a summary of a non-JSON body).
        code: the gateway's error code as a string, if it sent one.
        type: the gateway's error type, if it sent one.
        param: the request parameter at fault, if named.
        task_id: the task the request was about, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.task_id = task_id

    def __str__(self) -> str:
        where = f" (task {self.task_id})" if self.task_id else ""
        return f"{self.status}: {self.message}{where}"


class InvalidRequestError(APIError):
    """400: the gateway rejected the request's parameters."""


class AuthenticationError(APIError):
    """401: the API key is missing or wrong. Final: retrying cannot help. Stops a batch."""

    stops_batch = True


class InsufficientQuotaError(APIError):
    """402: the account has no balance or quota left. Stops a batch."""

    stops_batch = True


class PermissionDeniedError(APIError):
    """403: the key may not use this model or resource. Stops a batch."""

    stops_batch = True


class NotFoundError(APIError):
    """404 (or a 400 saying so): the gateway does not know this task."""


class ContentPolicyError(APIError):
    """422: the prompt or image was refused by moderation."""


class RateLimitError(APIError):
    """429: too many requests.

    Attributes:
        retry_after: seconds the gateway asked to wait, if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        retry_after: float | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, type=type, param=param, task_id=task_id)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the gateway or something behind it failed."""


class CreateOutcomeUnknown(AsyncVideoError):
    """A create was sent but its outcome is unknown (timeout, reset, 5xx, or a
    success answer that names no task the SDK can read).

    The gateway may have made the task (and may bill for it). Retrying blindly
    could pay twice, so the SDK stops and hands over the idempotency key:
    resubmit with the same key on a gateway that honours keys, or look the
    task up before trying again.

    Attributes:
        idempotency_key: the key the create was sent with.
        cause: the underlying error.
    """

    def __init__(self, message: str, *, idempotency_key: str, cause: BaseException) -> None:
        super().__init__(message)
        self.idempotency_key = idempotency_key
        self.cause = cause

    @classmethod
    def after(cls, cause: BaseException, *, idempotency_key: str | None) -> CreateOutcomeUnknown:
        """The error for a create that ended in ``cause`` after it was sent."""
        key = idempotency_key or ""
        return cls(
            f"the create request may or may not have made a task ({cause}); "
            f"resubmit with idempotency_key={key!r} on a gateway that honours keys, "
            "or check the gateway before retrying",
            idempotency_key=key,
            cause=cause,
        )


class JobFailedError(AsyncVideoError):
    """The job ended failed or cancelled.

    Attributes:
        job: the terminal :class:`~asyncvideo.Job`; ``job.error`` says why.
    """

    def __init__(self, job: Job) -> None:
        reason = f": {job.error.message}" if job.error and job.error.message else ""
        super().__init__(f"job {job.id} ({job.model}) {job.state.value}{reason}")
        self.job = job


class JobTimeoutError(AsyncVideoError):
    """The job was not terminal when the deadline passed. The task may still finish.

    Attributes:
        job: the last snapshot seen; ``job.id`` re-attaches with ``Client.get``.
        timeout: the deadline in seconds.
    """

    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(
            f"job {job.id} ({job.model}) still {job.state.value} after {timeout:g} s; "
            "re-attach later with Client.get(job.id)"
        )
        self.job = job
        self.timeout = timeout


class DownloadError(AsyncVideoError):
    """The video could not be downloaded or did not verify."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class OutputError(AsyncVideoError, OSError):
    """Where videos go cannot take them: not a folder, not writable, or full.

    Raised before any create when the output location is checked, and instead
    of a raw ``OSError`` when a write fails. Also an :class:`OSError`, so code
    that caught that keeps working.

    Attributes:
        path: the file or folder at fault.
        task_id: the task whose video was being written, if any.
    """

    def __init__(self, message: str, *, path: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.task_id = task_id

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class VideoExpiredError(DownloadError):
    """The video's URL is past ``expires_at``; the gateway no longer serves it."""


class IntegrityError(DownloadError):
    """The downloaded body is not the video: short, too long, or not an MP4."""


class WebhookVerificationError(AsyncVideoError):
    """A webhook callback failed verification, so it was not acted on.

    Raised by :mod:`asyncvideo.webhooks` before the body is read: nothing was
    parsed, no job was woken and no request was sent. The message names what
    failed, never the secret or the signature.

    Attributes:
        reason: what failed: ``"missing"`` (no timestamp or signature header),
            ``"malformed"`` (a header that cannot be read), ``"stale"`` or
            ``"future"`` (the timestamp is outside the tolerance), ``"signature"``
            (no signature matches any secret) or ``"replayed"`` (this delivery
            was already accepted; a receiver answers it 200 so the sender stops).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
