"""Simulated tasks: routing, status vocabularies, id styles and a lazy lifecycle.

A task keeps no timer. Its state is a pure function of the clock: queued for
the first tenth of its run time, running until the end, then terminal. So
10,000 tasks cost 10,000 small objects and nothing else.
"""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Literal

import attrs

__all__ = [
    "GENERATION_TASK_WORDS",
    "NATIVE_WORDS",
    "OPENAI_WORDS",
    "QUEUED_FRACTION",
    "Family",
    "Phase",
    "Provider",
    "Snapshot",
    "Task",
    "TaskError",
    "Words",
    "new_task_id",
    "provider_for",
]

# Which endpoint family created or is querying a task:
# "videos" = /v1/videos (seed 001), "generations" = /v1/video/generations (seed 002),
# "tasks" = /v1/videos/generations with generation.task bodies (seed 003).
Family = Literal["videos", "generations", "tasks"]

QUEUED_FRACTION = 0.1


class Provider(enum.StrEnum):
    SORA = "sora"
    WAN = "wan"
    KLING = "kling"
    JIMENG = "jimeng"
    VIDU = "vidu"


class Phase(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self is Phase.SUCCEEDED or self is Phase.FAILED


# Model-name prefixes, longest first so "wanx2.1" is not read as "wan" by accident.
_PREFIXES: tuple[tuple[str, Provider], ...] = (
    ("jimeng", Provider.JIMENG),
    ("kling", Provider.KLING),
    ("sora", Provider.SORA),
    ("vidu", Provider.VIDU),
    ("wanx", Provider.WAN),
    ("wan", Provider.WAN),
)


def provider_for(model: str) -> Provider | None:
    """The provider serving ``model``, by name prefix; ``None`` if unknown."""
    name = model.strip().lower()
    for prefix, provider in _PREFIXES:
        if name.startswith(prefix):
            return provider
    return None


@attrs.frozen
class Words:
    """One vocabulary: the word for each phase. Several running words split
    the running phase evenly (Vidu goes queueing -> processing)."""

    queued: str
    running: tuple[str, ...]
    succeeded: str
    failed: str

    def word(self, snapshot: Snapshot) -> str:
        phase = snapshot.phase
        if phase is Phase.QUEUED:
            return self.queued
        if phase is Phase.SUCCEEDED:
            return self.succeeded
        if phase is Phase.FAILED:
            return self.failed
        share = (snapshot.fraction - QUEUED_FRACTION) / (1.0 - QUEUED_FRACTION)
        return self.running[min(len(self.running) - 1, int(share * len(self.running)))]


# What each provider's own API says, as gateways pass it through.
NATIVE_WORDS: Mapping[Provider, Words] = MappingProxyType(
    {
        Provider.SORA: Words("queued", ("processing",), "succeeded", "failed"),
        Provider.WAN: Words("queued", ("processing",), "succeeded", "failed"),
        Provider.KLING: Words("submitted", ("processing",), "succeed", "failed"),
        Provider.JIMENG: Words("in_queue", ("generating",), "done", "failed"),
        Provider.VIDU: Words("created", ("queueing", "processing"), "success", "failed"),
    }
)
# The OpenAI Videos API (vocabulary="openai" on /v1/videos).
OPENAI_WORDS = Words("queued", ("in_progress",), "completed", "failed")
# The generation.task family (seed 003); its create answers "submitted".
GENERATION_TASK_WORDS = Words("queued", ("in_progress",), "completed", "failed")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _digits(rng: random.Random, count: int) -> str:
    return str(rng.randrange(10 ** (count - 1), 10**count))


def _ulid(rng: random.Random, now: float) -> str:
    # 48 bits of milliseconds + 80 random bits, like the ULIDs in seed 003.
    value = (int(now * 1000) & (2**48 - 1)) << 80 | rng.getrandbits(80)
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


_ID_STYLES: Mapping[Provider, Callable[[random.Random], str]] = MappingProxyType(
    {
        Provider.SORA: lambda rng: f"video_{rng.getrandbits(128):032x}",
        Provider.WAN: lambda rng: f"video_{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        Provider.KLING: lambda rng: f"kling_{_digits(rng, 18)}",
        Provider.JIMENG: lambda rng: _digits(rng, 19),
        Provider.VIDU: lambda rng: f"vidu_{_digits(rng, 18)}",
    }
)


def new_task_id(provider: Provider, family: Family, rng: random.Random, now: float) -> str:
    """A fresh id in the style of the provider, or ``task_<ULID>`` for seed 003's family."""
    if family == "tasks":
        return f"task_{_ulid(rng, now)}"
    return _ID_STYLES[provider](rng)


@attrs.frozen
class TaskError:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@attrs.frozen
class Snapshot:
    """A task as seen at one instant."""

    phase: Phase
    fraction: float
    progress: int


@attrs.define(kw_only=True, slots=True)
class Task:
    """One simulated generation job, as the gateway stores it.

    ``created_mono`` and ``run_time`` are on the gateway clock's monotonic
    scale; ``created_at`` is its Unix time. ``duration`` is the simulated
    length before ``time_scale`` (``run_time = duration * time_scale``).
    """

    id: str
    provider: Provider
    model: str
    family: Family
    api_key: str
    prompt: str
    seconds: str
    size: str
    params: dict[str, object]
    created_mono: float
    created_at: float
    duration: float
    run_time: float
    outcome: Phase
    error: TaskError | None
    video_bytes: int
    cdn_token: str
    idempotency_key: str | None = None
    callback_url: str | None = None
    #: the relay's database row (new-api shows it as a numeric ``id``)
    row_id: int = 0
    #: the id the provider gave, where a relay shows the client an id of its own
    upstream_id: str = ""

    @property
    def ends_at(self) -> float:
        """Monotonic clock time at which the task becomes terminal."""
        return self.created_mono + self.run_time

    @property
    def completed_at(self) -> float:
        """Unix time at which the task becomes terminal."""
        return self.created_at + self.run_time

    def snapshot(self, now: float) -> Snapshot:
        elapsed = now - self.created_mono
        fraction = 1.0 if self.run_time <= 0 else elapsed / self.run_time
        if fraction >= 1.0:
            return Snapshot(self.outcome, 1.0, 100)
        if fraction < QUEUED_FRACTION:
            return Snapshot(Phase.QUEUED, max(fraction, 0.0), 0)
        return Snapshot(Phase.RUNNING, fraction, min(99, max(1, int(fraction * 100))))
