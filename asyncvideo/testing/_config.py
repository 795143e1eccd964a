"""Every knob of the FakeGateway, in one frozen class."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

import attrs
from attrs import validators as v

from .._clock import Clock, SystemClock
from ._mp4 import MIN_MP4_SIZE

__all__ = [
    "ContentEncoding",
    "DurationSpec",
    "GatewayConfig",
    "Profile",
    "ProgressStyle",
    "RetryAfterMode",
    "StatusCase",
    "UrlField",
    "Vocabulary",
]

Vocabulary = Literal["native", "openai"]
#: Whose answers the gateway gives: the seeds' documented shapes, or those of a
#: real gateway code base (see :mod:`asyncvideo.testing._profiles`).
Profile = Literal["seeds", "new-api", "litellm"]
ContentEncoding = Literal["identity", "gzip"]
StatusCase = Literal["lower", "upper", "mixed"]
ProgressStyle = Literal["int", "percent_string"]
UrlField = Literal["auto", "url", "result.url", "metadata.url", "video_url", "none"]
RetryAfterMode = Literal["seconds", "ms", "none"]
DurationSpec = float | tuple[float, float] | Callable[[str, random.Random], float]

_fraction = [v.ge(0.0), v.le(1.0)]
_optional_positive_int = v.optional(v.and_(v.instance_of(int), v.ge(1)))


def _check_durations(_: object, __: attrs.Attribute[Any], value: DurationSpec) -> None:
    if isinstance(value, tuple):
        low, high = value
        if not 0 <= low <= high:
            raise ValueError(f"durations range must satisfy 0 <= low <= high, got {value}")
    elif not callable(value) and value < 0:
        raise ValueError(f"durations must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class GatewayConfig:
    """Behaviour of a :class:`~asyncvideo.testing.FakeGateway`; every field has a default.

    Durations are in *simulated* seconds and multiplied by ``time_scale``;
    ``expires_after`` is in clock seconds and is not scaled (a URL stays valid
    for a day of clock time, as on real gateways).

    Args:
        host: the address to listen on.
        port: the gateway's port (0 = a free port).
        cdn_port: the CDN origin's port (0 = a free port).
        api_key: the Bearer token accepted; any other is a 401.
        extra_api_keys: further Bearer tokens accepted.
        time_scale: factor applied to simulated durations.
        clock: source of all time (job progress, timestamps, rate windows).
        durations: simulated seconds per job: a number, a ``(low, high)``
            uniform range, or ``f(model, rng) -> seconds``.
        seed: seeds the gateway's ``random.Random`` (ids, durations, faults).
        failure_rate: fraction of jobs that end failed.
        vocabulary: ``"native"`` (each provider's words) or ``"openai"``
            (the OpenAI Videos API on the ``/v1/videos`` endpoints).
        status_case: ``"lower"``, ``"upper"`` or ``"mixed"`` (Title_Case) status words.
        progress_style: ``"int"`` or ``"percent_string"`` (``"30%"``).
        url_field: where a finished task's URL goes; ``"auto"`` is ``url``,
            except ``result.url`` for ``generation.task`` bodies.
        timestamps_ms: send timestamps in milliseconds.
        expires_after: seconds from completion until the video URL expires.
        create_status: 200 or 201 for every create; ``None`` = 201 on
            ``/v1/videos``, 200 on the generations endpoints.
        unknown_task_status: 404 or 400 for a task id never issued.
        quota: creates allowed per key (402 after); ``None`` = unlimited.
        cdn_redirect: the content endpoint answers 302 to the CDN.
        poll_after_ms: send ``openai-poll-after-ms`` on status answers.
        rate_limit: requests per second per key (token bucket, burst of the
            same size); ``None`` = unlimited.
        retry_after: hint on a 429: ``Retry-After`` seconds, ``retry-after-ms``, or none.
        max_concurrent_tasks: unfinished tasks allowed per key (429 beyond).
        error_rate_5xx: fraction of API requests answered 500, 502 or 503.
        drop_download_after: cut downloads after this many body bytes.
        drop_downloads: how many downloads to cut; ``None`` = all of them.
        drop_download_rate: the chance that a download (within that budget) is
            cut, drawn from ``seed``: faults spread over many files instead of
            landing on the first ones.
        drop_stall: real seconds a cut download stalls before the connection
            closes, so the client can read what was sent before the error.
        html_errors: error bodies are HTML (a proxy in the way), not JSON.
        video_bytes: size of every video.
        chunk_size: bytes per write when streaming a video.
        capture_requests: how many recent requests ``FakeGateway.requests`` keeps (0 = none).
        latency: real seconds every API and CDN request waits before it is
            handled, like a network round trip; it makes ``max_in_flight``
            show how many requests a client really keeps open at once.
        profile: ``"seeds"`` (the documents in ``shared/seeds``), ``"new-api"``
            (the open-source new-api relay) or ``"litellm"`` (the LiteLLM
            proxy): ids, envelopes, status words and errors as that code base
            sends them, on every endpoint.
        content_lag: clock seconds after a task succeeds during which its
            content endpoint still answers "not completed yet"; ``None`` = the
            profile's (new-api: 3 s, else 0).
        cdn_chunk_delay: real seconds the CDN pauses between chunks of a video
            (``chunk_size`` bytes each): a drip-fed download.
        create_answer_delay: real seconds a create waits after the gateway
            acted, before it answers: the window in which a client that dies
            has paid for a task it never heard of.
        content_encoding: encode videos so on the wire whatever the client asks
            for; ``None`` = the profile's habit (LiteLLM gzips when the client
            accepts gzip; the others send them as they are).
        webhook_secret: sign callbacks with this secret (the scheme of
            :mod:`asyncvideo.webhooks`); ``None`` = unsigned.
        webhook_retries: further attempts of a callback answered non-2xx or
            not at all.
        webhook_backoff: clock seconds before the first retry; doubled for each next.
        webhook_delay: clock seconds between a task ending and its callback.
        webhook_drop_rate: the chance a callback is never sent (drawn from ``seed``).
        webhook_duplicate_rate: the chance a callback is sent twice, the same
            delivery byte for byte.
        webhook_forge_rate: the chance that, when a task is created, a forged
            callback claiming it succeeded is sent at once, signed with a
            wrong secret.
    """

    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=[v.ge(0), v.le(65535)])
    cdn_port: int = attrs.field(default=0, validator=[v.ge(0), v.le(65535)])
    api_key: str = attrs.field(default="sk-fake-key", validator=v.min_len(1))
    extra_api_keys: tuple[str, ...] = ()
    time_scale: float = attrs.field(default=1.0, validator=v.ge(0.0))
    clock: Clock = attrs.field(factory=SystemClock)
    durations: DurationSpec = attrs.field(default=(20.0, 40.0), validator=_check_durations)
    seed: int = 0
    failure_rate: float = attrs.field(default=0.0, validator=_fraction)
    vocabulary: Vocabulary = attrs.field(default="native", validator=v.in_(("native", "openai")))
    status_case: StatusCase = attrs.field(
        default="lower", validator=v.in_(("lower", "upper", "mixed"))
    )
    progress_style: ProgressStyle = attrs.field(
        default="int", validator=v.in_(("int", "percent_string"))
    )
    url_field: UrlField = attrs.field(
        default="auto",
        validator=v.in_(("auto", "url", "result.url", "metadata.url", "video_url", "none")),
    )
    timestamps_ms: bool = False
    expires_after: float = attrs.field(default=86400.0, validator=v.ge(0.0))
    create_status: Literal[200, 201] | None = attrs.field(
        default=None, validator=v.in_((None, 200, 201))
    )
    unknown_task_status: Literal[400, 404] = attrs.field(default=404, validator=v.in_((400, 404)))
    quota: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    cdn_redirect: bool = False
    poll_after_ms: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    rate_limit: float | None = attrs.field(default=None, validator=v.optional(v.gt(0.0)))
    retry_after: RetryAfterMode = attrs.field(
        default="seconds", validator=v.in_(("seconds", "ms", "none"))
    )
    max_concurrent_tasks: int | None = attrs.field(default=None, validator=_optional_positive_int)
    error_rate_5xx: float = attrs.field(default=0.0, validator=_fraction)
    drop_download_after: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    drop_downloads: int | None = attrs.field(default=None, validator=v.optional(v.ge(0)))
    drop_download_rate: float = attrs.field(default=1.0, validator=_fraction)
    drop_stall: float = attrs.field(default=0.05, validator=v.ge(0.0))
    html_errors: bool = False
    video_bytes: int = attrs.field(default=64 * 1024, validator=v.ge(MIN_MP4_SIZE))
    chunk_size: int = attrs.field(default=256 * 1024, validator=v.ge(1024))
    capture_requests: int = attrs.field(default=10_000, validator=v.ge(0))
    latency: float = attrs.field(default=0.0, validator=v.ge(0.0))
    profile: Profile = attrs.field(
        default="seeds", validator=v.in_(("seeds", "new-api", "litellm"))
    )
    content_lag: float | None = attrs.field(default=None, validator=v.optional(v.ge(0.0)))
    cdn_chunk_delay: float = attrs.field(default=0.0, validator=v.ge(0.0))
    create_answer_delay: float = attrs.field(default=0.0, validator=v.ge(0.0))
    content_encoding: ContentEncoding | None = attrs.field(
        default=None, validator=v.optional(v.in_(("identity", "gzip")))
    )
    webhook_secret: str | None = attrs.field(default=None, validator=v.optional(v.min_len(1)))
    webhook_retries: int = attrs.field(default=3, validator=[v.instance_of(int), v.ge(0)])
    webhook_backoff: float = attrs.field(default=1.0, validator=v.ge(0.0))
    webhook_delay: float = attrs.field(default=0.0, validator=v.ge(0.0))
    webhook_drop_rate: float = attrs.field(default=0.0, validator=_fraction)
    webhook_duplicate_rate: float = attrs.field(default=0.0, validator=_fraction)
    webhook_forge_rate: float = attrs.field(default=0.0, validator=_fraction)

    @property
    def effective_content_lag(self) -> float:
        if self.content_lag is not None:
            return self.content_lag
        return 3.0 if self.profile == "new-api" else 0.0

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is a valid Bearer token for this gateway."""
        return key == self.api_key or key in self.extra_api_keys
