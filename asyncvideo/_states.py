"""One state machine for every provider's status words."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["VOCABULARY", "JobState", "advance_state", "parse_state"]

logger = logging.getLogger("asyncvideo")


class JobState(enum.Enum):
    """Where a job is in its life: ``QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for the absorbing states: succeeded, failed and cancelled."""
        return self in _TERMINAL

    def __repr__(self) -> str:
        return f"JobState.{self.name}"


JobState.__module__ = "asyncvideo"

_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
_RANK = {JobState.QUEUED: 0, JobState.RUNNING: 1}

#: Status words gateways use, lower-cased, and the state each one means.
VOCABULARY: Mapping[str, JobState] = MappingProxyType(
    {
        **dict.fromkeys(
            ("queued", "submitted", "pending", "created", "in_queue", "not_start", "waiting"),
            JobState.QUEUED,
        ),
        **dict.fromkeys(
            ("processing", "in_progress", "running", "generating", "queueing", "started"),
            JobState.RUNNING,
        ),
        **dict.fromkeys(
            (
                "succeeded",
                "succeed",
                "success",
                "successful",
                "completed",
                "complete",
                "done",
                "finished",
            ),
            JobState.SUCCEEDED,
        ),
        **dict.fromkeys(
            ("failed", "failure", "fail", "error", "expired", "rejected"), JobState.FAILED
        ),
        **dict.fromkeys(("cancelled", "canceled", "cancel"), JobState.CANCELLED),
    }
)

#: Unknown words already logged. Bounded: a gateway that invents a new word per
#: poll must not grow memory (nor the log) without end.
_unknown_words_logged: set[str] = set()
_MAX_UNKNOWN_WORDS = 256
#: Longer unknown words are logged (and remembered) cut to this many characters.
_MAX_WORD_CHARS = 64


def parse_state(word: object) -> JobState | None:
    """Map a native status word to a :class:`JobState`; ``None`` if it is not known.

    An unknown word is logged once per process (not per poll) so a new gateway
    status shows up in logs without flooding them. At most 256 distinct words
    are remembered (then they are forgotten and counting starts again), each
    cut to 64 characters and shown escaped (``%r``), so a hostile word can
    neither grow memory nor forge a log line.
    """
    if not isinstance(word, str):
        return None
    key = word.strip().lower().replace("-", "_").replace(" ", "_")
    state = VOCABULARY.get(key)
    if state is None:
        _note_unknown(key[:_MAX_WORD_CHARS], word[:_MAX_WORD_CHARS])
    return state


def _note_unknown(key: str, shown: str) -> None:
    if key in _unknown_words_logged:
        return
    if len(_unknown_words_logged) >= _MAX_UNKNOWN_WORDS:
        # A gateway inventing words must not grow memory; forgetting the old ones
        # means a word may be logged again after 256 others, never once per poll.
        _unknown_words_logged.clear()
    _unknown_words_logged.add(key)
    logger.warning("unknown job status %r; keeping the last known state", shown)


def advance_state(previous: JobState | None, observed: JobState | None) -> JobState:
    """The state to report after ``previous`` when the gateway says ``observed``.

    Terminal states absorb, and a job never moves back from running to queued
    (some gateways flap while a worker picks the task up).
    """
    if previous is None:
        return observed if observed is not None else JobState.QUEUED
    if previous.is_terminal or observed is None:
        return previous
    if observed.is_terminal:
        return observed
    return max(previous, observed, key=_RANK.__getitem__)
