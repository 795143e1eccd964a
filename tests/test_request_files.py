"""``read_requests``: prompt files in three formats, read lazily, bad lines named."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import asyncvideo
from asyncvideo import Client, VideoRequest, read_requests
from asyncvideo._request_files import RequestFile
from asyncvideo.errors import ValidationError
from asyncvideo.testing import FakeGateway

pytestmark = pytest.mark.anyio


async def _all(requests: RequestFile) -> list[VideoRequest]:
    async with requests:
        return [request async for request in requests]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_text_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    path = _write(tmp_path, "prompts.txt", "# a header\n\nthe sea\n   \n  a fox  \n# done\n")
    requests = await _all(read_requests(path, model="viduq1", seconds=4))
    assert [(r.prompt, r.model, r.seconds) for r in requests] == [
        ("the sea", "viduq1", 4),
        ("a fox", "viduq1", 4),
    ]


async def test_text_line_numbers_follow_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "prompts.txt", "# c\n\none\n\ntwo\n")
    async with read_requests(path) as requests:
        lines = [requests.line async for _ in requests]
    assert lines == [3, 5]


async def test_jsonl_fields_win_over_defaults(tmp_path: Path) -> None:
    lines = [
        {"prompt": "a fox", "model": "kling-v1", "seconds": 5, "negative_prompt": "blur"},
        {"prompt": "waves", "seed": 7, "extra": {"movement_amplitude": "large"}},
        {"prompt": "a city", "image": "https://example.com/a.png", "watermark": False},
    ]
    text = "# requests\n" + "\n".join(json.dumps(line) for line in lines) + "\n"
    path = _write(tmp_path, "requests.jsonl", text)
    first, second, third = await _all(read_requests(path, model="viduq1", seconds=8))
    assert (first.model, first.seconds, first.negative_prompt) == ("kling-v1", 5, "blur")
    assert (second.model, second.seconds, second.seed) == ("viduq1", 8, 7)
    assert dict(second.extra) == {"movement_amplitude": "large"}
    assert (third.image, third.watermark) == ("https://example.com/a.png", False)


async def test_csv_header_names_the_columns(tmp_path: Path) -> None:
    text = (
        "# made in a spreadsheet\n"
        " Prompt , model,seconds,watermark,extra\n"
        '"a fox, in snow",kling-v1,5,no,\n'
        "\n"
        'waves,,2.5,true,"{""resolution"": ""1080p""}"\n'
    )
    path = _write(tmp_path, "requests.csv", text)
    first, second = await _all(read_requests(path, model="viduq1"))
    assert (first.prompt, first.model, first.seconds, first.watermark) == (
        "a fox, in snow",
        "kling-v1",
        5,
        False,
    )
    assert (second.model, second.seconds, second.watermark) == ("viduq1", 2.5, True)
    assert dict(second.extra) == {"resolution": "1080p"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param("model,seconds", "'prompt' column", id="no-prompt"),
        pytest.param("prompt,modle", "did you mean 'model'", id="misspelt"),
    ],
)
async def test_a_bad_csv_header_raises_even_when_skipping(
    tmp_path: Path, header: str, message: str
) -> None:
    path = _write(tmp_path, "requests.csv", f"# c\n{header}\na,b\n")
    skipped: list[ValidationError] = []
    with pytest.raises(ValidationError, match=message) as caught:
        await _all(read_requests(path, on_invalid=skipped.append))
    assert str(caught.value).startswith(f"{path}, line 2: ")
    assert skipped == []


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        pytest.param("r.jsonl", "this is not json", "not valid JSON", id="json"),
        pytest.param("r.jsonl", "[1, 2]", "expected a JSON object, got list", id="array"),
        pytest.param("r.jsonl", '{"prompt": "a", "modle": "x"}', "did you mean 'model'", id="key"),
        pytest.param("r.jsonl", '{"model": "viduq1"}', "prompt", id="no-prompt"),
        pytest.param("r.jsonl", '{"prompt": "a", "seconds": -1}', "seconds must be", id="value"),
        pytest.param("r.csv", "prompt,seconds\na,five", "seconds cannot be 'five'", id="cell"),
        pytest.param("r.csv", "prompt,seconds\na,1,2", "expected 2 CSV cells", id="cells"),
    ],
)
async def test_a_bad_line_names_the_file_and_line(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    path = _write(tmp_path, name, f"# comment\n\n{text}\n")
    bad_line = 4 if name.endswith(".csv") else 3
    with pytest.raises(ValidationError, match=message) as caught:
        await _all(read_requests(path))
    assert str(caught.value).startswith(f"{path}, line {bad_line}: ")


async def test_on_invalid_skips_bad_lines_and_goes_on(tmp_path: Path) -> None:
    raw = b'{"prompt": "one"}\nnot json\n{"prompt": "caf\xe9"}\n{"prompt": "two"}\n'
    path = tmp_path / "r.jsonl"
    path.write_bytes(raw)
    bad: list[ValidationError] = []
    requests = read_requests(path, on_invalid=bad.append)
    assert [r.prompt for r in await _all(requests)] == ["one", "two"]
    assert [str(exc).removeprefix(f"{path}, ")[:6] for exc in bad] == ["line 2", "line 3"]
    assert "not UTF-8 text" in str(bad[1])


async def test_bad_defaults_raise_at_the_call() -> None:
    with pytest.raises(ValidationError, match="did you mean 'seconds'"):
        read_requests("never-read.txt", secnds=5)
    with pytest.raises(ValidationError, match="seconds must be"):
        read_requests("never-read.txt", seconds=-5)


async def test_a_stream_is_sniffed_and_not_closed() -> None:
    stream = io.StringIO('\ufeff# piped\n{"prompt": "a", "model": "kling-v1"}\n')
    requests = read_requests(stream)
    formats = [requests.format]
    assert [r.model for r in await _all(requests)] == ["kling-v1"]
    assert [*formats, requests.format] == ["auto", "jsonl"]
    assert not stream.closed


async def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n")
    assert [r.prompt for r in await _all(read_requests(path))] == ["one", "two"]


async def test_the_file_is_closed_at_the_end_and_on_aclose(tmp_path: Path) -> None:
    path = _write(tmp_path, "prompts.txt", "one\ntwo\n")
    requests = read_requests(path)
    assert (await requests.__anext__()).prompt == "one"
    await requests.aclose()
    with pytest.raises(StopAsyncIteration):
        await requests.__anext__()


class _CountingStream(io.StringIO):
    """A stream that counts the lines taken from it: the proof of lazy reading."""

    def __init__(self, lines: Iterator[str]) -> None:
        super().__init__()
        self._lines = lines
        self.taken = 0

    def readline(self, size: int | None = -1, /) -> str:  # type: ignore[override]
        self.taken += 1
        return next(self._lines, "")


async def test_reading_is_lazy() -> None:
    stream = _CountingStream(f"prompt {n}\n" for n in range(100_000))
    requests = read_requests(stream, model="viduq1")
    async with requests:
        for _ in range(3):
            await requests.__anext__()
    # One chunk read ahead, never the whole file.
    assert 3 <= stream.taken <= 300


async def test_a_big_file_is_read_a_chunk_at_a_time(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.txt", "".join(f"prompt {n}\n" for n in range(100_000)))
    requests = read_requests(path)
    async with requests:
        async for _ in requests:
            if requests.line == 5:
                break
        assert len(requests._buffer) < 300  # the rest of the file stays on disk


async def test_generate_many_takes_it_and_finishes_paid_jobs_before_a_bad_line(
    tmp_path: Path, gateway: FakeGateway, client: Client
) -> None:
    lines = [json.dumps({"prompt": "a fox"}), json.dumps({"prompt": "waves"}), "not json"]
    lines.append(json.dumps({"prompt": "never sent"}))
    path = _write(tmp_path, "requests.jsonl", "\n".join(lines) + "\n")
    outcomes: list[asyncvideo.Outcome] = []

    async def run() -> None:
        batch = client.generate_many(
            read_requests(path, model="kling-v1"), output_dir=tmp_path / "videos"
        )
        async for outcome in batch:
            outcomes.append(outcome)  # noqa: PERF401 - keeps what came before the raise

    with pytest.raises(ValidationError, match=r"requests\.jsonl, line 3: not valid JSON"):
        await run()
    # The two jobs already created (and paid for) finished and were delivered first.
    assert sorted(o.request.prompt for o in outcomes if o.ok) == ["a fox", "waves"]
    assert gateway.stats.creates == 2


async def test_a_pipe_hands_over_each_line_as_it_comes() -> None:
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as stream, open(write_end, "wb", buffering=0) as writer:
        requests = read_requests(stream, model="viduq1")
        async with requests:
            writer.write(b"# piped\none\n")
            with anyio.fail_after(10):  # a chunk must not wait for lines not yet written
                assert (await requests.__anext__()).prompt == "one"
            writer.write(b"two\n")
            writer.close()
            with anyio.fail_after(10):
                assert [r.prompt async for r in requests] == ["two"]
        assert requests.line == 3


async def test_a_csv_prompt_spanning_lines_is_refused_not_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text('model,prompt\nkling-v1,"a red fox running\nthrough deep snow at dawn"\n')
    with pytest.raises(ValidationError, match=r"p\.csv, line 2: a quoted CSV cell does not end"):
        [request async for request in read_requests(path)]
