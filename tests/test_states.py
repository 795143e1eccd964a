from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncvideo import JobState, _states
from asyncvideo._states import VOCABULARY, advance_state, parse_state

DESIGN_TABLE = {
    JobState.QUEUED: "queued submitted pending created in_queue not_start",
    JobState.RUNNING: "processing in_progress running generating queueing",
    JobState.SUCCEEDED: "succeeded succeed success completed done finished",
    JobState.FAILED: "failed failure error expired",
    JobState.CANCELLED: "cancelled canceled",
}


@pytest.mark.parametrize(
    ("word", "state"),
    [(word, state) for state, words in DESIGN_TABLE.items() for word in words.split()],
)
def test_every_documented_word_maps(word: str, state: JobState) -> None:
    assert parse_state(word) is state
    assert parse_state(word.upper()) is state
    assert parse_state(f"  {word.title()} ") is state


@pytest.mark.parametrize(
    ("word", "state"),
    [
        ("In Progress", JobState.RUNNING),
        ("not-start", JobState.QUEUED),
        ("IN-QUEUE", JobState.QUEUED),
    ],
)
def test_spaces_and_hyphens_read_as_underscores(word: str, state: JobState) -> None:
    assert parse_state(word) is state


@given(st.sampled_from(sorted(VOCABULARY)), st.lists(st.booleans(), min_size=1, max_size=30))
def test_any_casing_maps(word: str, upper: list[bool]) -> None:
    cased = "".join(
        ch.upper() if upper[i % len(upper)] else ch.lower() for i, ch in enumerate(word)
    )
    assert parse_state(cased) is VOCABULARY[word]


def test_unknown_word_is_not_terminal_and_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The memory of logged words lives for the process: start from an empty one.
    monkeypatch.setattr(_states, "_unknown_words_logged", set())
    with caplog.at_level("WARNING", logger="asyncvideo"):
        assert parse_state("warming_up_the_gpus") is None
        assert parse_state("warming_up_the_gpus") is None
    assert [r.getMessage() for r in caplog.records] == [
        "unknown job status 'warming_up_the_gpus'; keeping the last known state"
    ]
    assert advance_state(JobState.RUNNING, None) is JobState.RUNNING
    assert parse_state(None) is None
    assert parse_state(3) is None


def test_the_memory_of_unknown_words_is_forgotten_after_256_words(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_states, "_unknown_words_logged", set())
    with caplog.at_level("WARNING", logger="asyncvideo"):
        for n in range(257):  # the 257th word finds the memory full and empties it
            parse_state(f"word_{n}")
        assert len(_states._unknown_words_logged) == 1
        parse_state("word_0")  # forgotten, so logged a second time
    assert sum("'word_0'" in r.getMessage() for r in caplog.records) == 2


def test_terminal_states_absorb() -> None:
    for terminal in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        assert terminal.is_terminal
        for observed in JobState:
            assert advance_state(terminal, observed) is terminal


def test_running_never_goes_back_to_queued() -> None:
    assert advance_state(JobState.RUNNING, JobState.QUEUED) is JobState.RUNNING
    assert advance_state(JobState.QUEUED, JobState.RUNNING) is JobState.RUNNING
    assert advance_state(JobState.QUEUED, JobState.FAILED) is JobState.FAILED
    assert advance_state(None, None) is JobState.QUEUED
