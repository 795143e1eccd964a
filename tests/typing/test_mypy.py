"""The typing proof runs in pytest too: mypy --strict passes on the check files, and
without their ``# type: ignore`` comments it reports exactly the expected errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
CHECK = HERE / "check_keywords.py"
IGNORE = re.compile(r"\s*# type: ignore\[([a-z-]+)\]$")


def run_mypy(*paths: Path) -> tuple[str, int]:
    stdout, stderr, status = api.run(
        ["--strict", "--config-file", str(ROOT / "pyproject.toml"), *map(str, paths)]
    )
    return stdout + stderr, status


@pytest.mark.timeout(120)  # a cold mypy cache checks the whole package once
def test_check_files_pass_mypy_strict() -> None:
    output, status = run_mypy(CHECK)
    assert status == 0, output


@pytest.mark.timeout(120)
def test_each_ignore_marks_a_real_error(tmp_path: Path) -> None:
    lines = CHECK.read_text().splitlines()
    expected = {
        (number, match[1])
        for number, line in enumerate(lines, start=1)
        if (match := IGNORE.search(line))
    }
    stripped = tmp_path / "check_keywords_unignored.py"
    stripped.write_text("\n".join(IGNORE.sub("", line) for line in lines) + "\n")
    output, status = run_mypy(stripped)
    assert status == 1, output
    found = {
        (int(match[1]), match[2])
        for match in re.finditer(
            r"check_keywords_unignored\.py:(\d+): error: .*\[([a-z-]+)\]", output
        )
    }
    assert found == expected, output
    assert '"promt"' in output
