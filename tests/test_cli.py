"""The ``asyncvideo`` command, run in-process through ``main()``.

``main()`` runs its own event loop, so these are plain synchronous tests. Each
``--simulate`` run starts a FakeGateway of its own; ``--time-scale 0.01`` makes a
clip take a fraction of a second.
"""

from __future__ import annotations

import io
import json
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from asyncvideo import KNOWN_MODELS
from asyncvideo.cli import main
from asyncvideo.cli._common import EXIT_CODES_HELP
from asyncvideo.testing import FakeGateway

FAST = ["--simulate", "--time-scale", "0.01"]
SECRET = "sk-live-do-not-print-4f1c9a7e"


def _assert_mp4s(folder: Path, count: int) -> list[Path]:
    files = sorted(folder.glob("*.mp4"))
    assert len(files) == count
    for path in files:
        head = path.read_bytes()[:8]
        assert head[4:8] == b"ftyp", path  # an ISO media file starts with its ftyp box
    assert not list(folder.glob("*.part"))
    return files


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A FakeGateway with a known key, on a loop in another thread (main() owns this one).

    Its clips are done by the first poll, which without --simulate comes 2.5 s after submit.
    """
    fake = FakeGateway(api_key=SECRET, durations=0.0)
    with (
        anyio.from_thread.start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(fake) as gw,
    ):
        yield gw


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("ASYNCVIDEO_API_KEY", raising=False)
    monkeypatch.delenv("ASYNCVIDEO_BASE_URL", raising=False)
    return monkeypatch


def test_batch_text_file(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "# five clips\nthe sea at dawn\n\n  a red fox in snow  \n# a comment\n"
        "rain on a tin roof\nneon alley\nkites on a hill\n",
        encoding="utf-8",
    )
    out = tmp_path / "videos"
    assert main(["batch", str(prompts), *FAST, "--output-dir", str(out)]) == 0
    files = _assert_mp4s(out, 5)
    stdout = capsys.readouterr().out
    assert "5 succeeded, 0 failed" in stdout
    for path in files:  # one plain line per outcome: index, state, path
        assert re.search(rf"^\s*\d+\s+succeeded\s+{re.escape(str(path))}$", stdout, re.M)


def test_batch_jsonl_mixes_models(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"prompt": "a fox", "model": "kling-v1", "seconds": 5},
        {"prompt": "waves", "model": "viduq1"},
        {"prompt": "a city", "model": "wan2.5-t2v-preview", "size": "1280x720"},
        {"prompt": "a cat"},  # takes the --model default
    ]
    prompts = tmp_path / "requests.jsonl"
    prompts.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    out = tmp_path / "videos"
    argv = ["batch", str(prompts), *FAST, "--output-dir", str(out), "--model", "sora-2", "--json"]
    assert main(argv) == 0
    _assert_mp4s(out, 4)
    records = _records(capsys.readouterr().out)
    assert len(records) == 4
    assert all(record["ok"] for record in records)
    models = {record["line"]: record["model"] for record in records}
    assert models == {1: "kling-v1", 2: "viduq1", 3: "wan2.5-t2v-preview", 4: "sora-2"}


def test_bad_lines_fail_alone(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "requests.jsonl"
    prompts.write_text(
        '{"prompt": "good one", "model": "kling-v1"}\n'
        '{"prompt": "bad model", "model": "no-such-model"}\n'
        "this is not json\n"
        '{"prompt": "typo", "modle": "sora-2"}\n'
        '{"prompt": "good two", "model": "viduq1"}\n',
        encoding="utf-8",
    )
    out = tmp_path / "videos"
    assert main(["batch", str(prompts), *FAST, "--output-dir", str(out), "--json"]) == 1
    _assert_mp4s(out, 2)
    captured = capsys.readouterr()
    by_line = {record["line"]: record for record in _records(captured.out)}
    assert sorted(by_line) == [1, 2, 3, 4, 5]
    assert sorted(line for line, record in by_line.items() if record["ok"]) == [1, 5]
    assert by_line[2]["state"] == "rejected"
    assert "no-such-model" in str(by_line[2]["error"])
    assert by_line[3]["state"] == "invalid"
    assert "modle" in str(by_line[4]["error"])
    assert "2 succeeded, 3 failed" in captured.err  # the summary keeps stdout pure JSON


def test_batch_csv_file(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "requests.csv"
    prompts.write_text(
        '# from a spreadsheet\nprompt,model,seconds\n"a fox, in snow",kling-v1,5\nwaves,,\n',
        encoding="utf-8",
    )
    out = tmp_path / "videos"
    argv = ["batch", str(prompts), *FAST, "--output-dir", str(out), "--model", "viduq1", "--json"]
    assert main(argv) == 0
    _assert_mp4s(out, 2)
    records = _records(capsys.readouterr().out)
    assert {record["line"]: record["model"] for record in records} == {3: "kling-v1", 4: "viduq1"}


def test_a_bad_line_is_named_by_file_and_line(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "requests.jsonl"
    prompts.write_text('# c\n{"prompt": "ok", "model": "viduq1"}\n{"prompt": 3\n', "utf-8")
    out = tmp_path / "videos"
    assert main(["batch", str(prompts), *FAST, "--output-dir", str(out)]) == 1
    _assert_mp4s(out, 1)
    stdout = capsys.readouterr().out
    assert re.search(
        rf"^\s+-\s+invalid\s+{re.escape(str(prompts))}, line 3: not valid JSON", stdout, re.M
    )


def test_a_bad_csv_header_is_a_usage_error(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "requests.csv"
    prompts.write_text("promt,model\na cat,viduq1\n", encoding="utf-8")
    assert main(["batch", str(prompts), *FAST, "--output-dir", str(tmp_path / "v")]) == 2
    assert "line 1: the CSV header names unknown field 'promt'" in capsys.readouterr().err


def test_the_entry_point_names_main() -> None:
    # pyproject.toml: asyncvideo = "asyncvideo.cli:main"
    assert pkgutil.resolve_name("asyncvideo.cli:main") is main


def test_batch_reads_stdin(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setattr("sys.stdin", io.StringIO("one\n# skip\ntwo\n"))
    out = tmp_path / "videos"
    assert main(["batch", "-", *FAST, "--output-dir", str(out), "--model", "viduq1"]) == 0
    _assert_mp4s(out, 2)


def test_empty_prompt_file_is_not_an_error(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# nothing yet\n\n", encoding="utf-8")
    assert main(["batch", str(prompts), *FAST, "--output-dir", str(tmp_path / "v")]) == 0
    captured = capsys.readouterr()
    assert "0 succeeded, 0 failed" in captured.out
    assert "no prompts" in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "batch" in capsys.readouterr().out
    assert main(["batch", "--help"]) == 0
    assert "--simulate" in capsys.readouterr().out


def test_models_lists_every_known_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert len(KNOWN_MODELS) == 13
    for model, provider in KNOWN_MODELS.items():
        assert re.search(rf"^{re.escape(model)}\s+{provider}$", table, re.M)
    assert main(["models", "--json"]) == 0
    records = _records(capsys.readouterr().out)
    assert {r["model"]: r["provider"] for r in records} == dict(KNOWN_MODELS)


def test_generate_prints_the_path(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "clip.mp4"
    argv = ["generate", "a lighthouse", *FAST, "--model", "kling-v1", "--output", str(target)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert target.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-verb"),
        pytest.param(["batch"], id="no-file"),
        pytest.param(["frobnicate"], id="unknown-verb"),
        pytest.param(["batch", "missing.txt", "--simulate"], id="missing-file"),
        pytest.param(["batch", "-", "--simulate", "--seconds", "-3"], id="bad-seconds"),
        pytest.param(["batch", "-", "--simulate", "--size", "big"], id="bad-size"),
        pytest.param(["batch", "-", "--simulate", "--base-url", "http://x"], id="both-targets"),
        pytest.param(["batch", "-", "--time-scale", "0.1"], id="scale-without-simulate"),
        pytest.param(["batch", "-"], id="no-api-key"),
        pytest.param(["status", "task_1"], id="status-without-model"),
        pytest.param(["generate", "a cat", "--simulate", "--model", "nope"], id="unknown-model"),
        pytest.param(["generate", "a cat", "--simulate", "--fps", "24"], id="unknown-flag"),
        pytest.param(
            ["generate", "a cat", "--simulate", "--model", "sora-2", "--image", "/no/such.png"],
            id="missing-image",
        ),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip()
    assert "Traceback" not in err


def test_batch_shared_settings_are_checked_before_sending(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a\nb\n", encoding="utf-8")
    # Every line would share a size Wan does not offer: refused before the first create.
    argv = ["batch", str(prompts), *FAST, "--model", "wan2.5-t2v-preview", "--size", "17x17"]
    assert main([*argv, "--output-dir", str(tmp_path / "v")]) == 2
    assert "17" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_the_api_key_is_never_printed(
    gateway: FakeGateway,
    tmp_path: Path,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[str] = []

    def output() -> tuple[str, str]:
        out, err = capsys.readouterr()
        seen.extend((out, err))
        return out, err

    env.setenv("ASYNCVIDEO_API_KEY", SECRET)
    env.setenv("ASYNCVIDEO_BASE_URL", gateway.url)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\n", encoding="utf-8")
    out = tmp_path / "videos"
    # Real-gateway mode (no --simulate), with debug logging on.
    argv = ["batch", str(prompts), "--output-dir", str(out), "--model", "kling-v1", "--json"]
    assert main([*argv, "-vv"]) == 0
    _assert_mp4s(out, 2)
    first = _records(output()[0])[0]

    # Re-attach to a finished task by id: status, then download it again.
    assert main(["status", first["task_id"], "--model", "kling-v1", "--json"]) == 0
    assert _records(output()[0])[0]["state"] == "succeeded"
    assert main(["status", first["task_id"], "--model", "kling-v1"]) == 0
    assert re.search(r"^state\s+succeeded$", output()[0], re.M)
    copy = tmp_path / "again.mp4"
    assert main(["download", first["task_id"], "--model", "kling-v1", "--output", str(copy)]) == 0
    assert output()[0].strip() == str(copy)
    assert copy.read_bytes() == Path(first["path"]).read_bytes()
    assert main(["status", "no-such-task", "--model", "kling-v1"]) == 1  # a 404
    output()

    env.setenv("ASYNCVIDEO_API_KEY", SECRET + "-wrong")
    assert main(["status", first["task_id"], "--model", "kling-v1", "-vv"]) == 2  # a 401
    assert main(["batch", str(prompts), "--output-dir", str(out)]) == 2
    assert "401" in output()[1]
    assert not any(SECRET in text for text in seen)


def test_python_dash_m_runs_the_cli() -> None:
    root = Path(__file__).parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "asyncvideo", "models"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "kling-v2-master" in result.stdout


def test_point_6_exit_codes_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert EXIT_CODES_HELP in text


def test_point_6_an_output_error_is_one_line_and_exit_2(
    tmp_path: Path, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" / "clip.mp4"
    argv = ["generate", "a lighthouse", *FAST, "--model", "kling-v1", "--output", str(target)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line.lower()]
    # One line, naming the path (today the download's .part; a check before the create
    # may name the folder instead).
    assert len(errors) == 1
    assert errors[0].startswith("asyncvideo: error: cannot ")
    assert str(tmp_path / "file") in errors[0]
    assert "Traceback" not in captured.err
