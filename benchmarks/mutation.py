"""Mutation score of the core modules: can the tests fail when the code is wrong?

Run (from the repository root, with mutmut installed: ``pip install mutmut``, 3.8
measured; minutes per module on a 2-core machine, more for ``_download.py``)::

    .venv/bin/python benchmarks/mutation.py asyncvideo/_states.py asyncvideo/_store.py
    .venv/bin/python benchmarks/mutation.py                       # every module in only_mutate
    .venv/bin/python benchmarks/mutation.py asyncvideo/_download.py \\
        --tests tests/test_download.py tests/test_hostile_answers.py   # quicker, narrower
    .venv/bin/python benchmarks/mutation.py --report-only         # re-read the last run
    .venv/bin/python benchmarks/mutation.py asyncvideo/_download.py --refresh  # after a fix

mutmut writes a ``mutants/`` tree beside the code, so the run happens in a scratch
copy of the committed tree (``git archive HEAD``; uncommitted edits are not
measured) whose ``[tool.mutmut] only_mutate`` is narrowed to the modules asked
for. With ``--tests``, mutmut runs only those test files (state it with the
figures: a narrower selection can only lower the score). ``--max-children``
defaults to 1, since the machine is shared.

``--refresh`` keeps the last run's results: it copies the committed code and
tests over the scratch copy, lets mutmut re-test the mutants of every function
that changed, then re-tests each mutant that survived against the new tests.
The figures are then those of the new tree, without a full run.

It prints, per module: mutants, killed (a test failed, or the test process
crashed: mutmut's "segfault"), survived, timeouts, others (no tests,
suspicious, skipped), the mutants listed as equivalent in
``benchmarks/mutation_equivalent.txt`` (one ``name  reason`` a line: no
observable behaviour can differ) and the score, killed / (mutants - equivalent).
Each survivor is named; ``mutmut show <name>`` (run in the scratch folder) shows
its diff. Not part of CI: the figures are a habit, not a gate.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "benchmarks" / "mutation_equivalent.txt"
DEFAULT_WORKDIR = Path("/tmp/asyncvideo-mutation")
#: mutmut names a mutant ``<module>.x_<function>__mutmut_<n>`` (``xǁClassǁmethod`` for methods).
_MUTANT_NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:_|ǁ)")


def configured_modules() -> list[str]:
    """The modules pyproject's ``[tool.mutmut] only_mutate`` lists."""
    with (ROOT / "pyproject.toml").open("rb") as handle:
        config = tomllib.load(handle)
    return list(config["tool"]["mutmut"]["only_mutate"])


def toml_list(name: str, values: Sequence[str]) -> str:
    """A TOML ``name = [...]`` assignment."""
    items = "".join(f'    "{value}",\n' for value in values)
    return f"{name} = [\n{items}]"


def make_scratch(workdir: Path, modules: Sequence[str], tests: Sequence[str]) -> None:
    """A fresh copy of the committed tree in ``workdir``, set to mutate ``modules``."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "x", "-C", str(workdir)], input=archive, check=True)
    pyproject = workdir / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r"only_mutate = \[.*?\]", toml_list("only_mutate", modules), text, flags=re.S)
    if tests:
        match = re.search(r"pytest_add_cli_args = \[(.*?)\]", text, flags=re.S)
        assert match is not None, "pyproject has no [tool.mutmut] pytest_add_cli_args"
        options = [o for o in re.findall(r'"([^"]*)"', match[1]) if not o.startswith("--ignore")]
        text = text.replace(match[0], toml_list("pytest_add_cli_args", [*options, *tests]))
    pyproject.write_text(text)


def refresh_scratch(workdir: Path) -> None:
    """Put the committed tree's code and tests in ``workdir``, keeping its mutants."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "asyncvideo", "tests"],
        check=True,
        capture_output=True,
    ).stdout
    # -m: files get the time of extraction, so mutmut sees which sources are newer
    # than their mutants (it keeps the results of functions whose text is unchanged).
    subprocess.run(["tar", "x", "-m", "-C", str(workdir)], input=archive, check=True)


def survivors(results: str) -> list[str]:
    """The mutants of ``mutmut results`` that survived (timeouts are not tried again)."""
    names = []
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if _MUTANT_NAME.match(name) and status in ("survived", "no tests"):
            names.append(name)
    return names


def mutmut(workdir: Path, *args: str, capture: bool = False) -> str:
    """Run the mutmut next to this Python in ``workdir`` (without a PYTHONPATH that could
    point the tests at another checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    done = subprocess.run(
        command, cwd=workdir, env=env, check=True, capture_output=capture, text=True
    )
    return done.stdout if capture else ""


def read_equivalents() -> dict[str, str]:
    """Mutant name -> why it is equivalent, from ``mutation_equivalent.txt``."""
    if not EQUIVALENT_FILE.exists():
        return {}
    listed = {}
    for line in EQUIVALENT_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.strip().partition(" ")
            listed[name] = reason.strip()
    return listed


def report(results: str, modules: Sequence[str]) -> None:
    """Print one line per module and name every mutant that was not killed."""
    equivalents = read_equivalents()
    by_module: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    not_killed: dict[str, list[str]] = collections.defaultdict(list)
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        match = _MUTANT_NAME.match(name)
        if match is None:
            continue
        module = match["module"].replace(".", "/") + ".py"
        if status == "segfault":
            status = "killed"  # the tests crashed on it: detected all the same
        elif status != "killed" and name in equivalents:
            status = "equivalent"
        by_module[module][status] += 1
        if status not in ("killed", "equivalent"):
            not_killed[module].append(f"{name}: {status}")
    header = f"{'module':<40} {'mutants':>7} {'killed':>6} {'surv.':>5} {'timeout':>7}"
    print(f"{header} {'other':>5} {'equiv.':>6} {'score':>7}")
    for module in modules:
        counts = by_module.get(module, collections.Counter())
        total = sum(counts.values())
        others = total - sum(counts[s] for s in ("killed", "survived", "timeout", "equivalent"))
        scored = total - counts["equivalent"]
        score = f"{100 * counts['killed'] / scored:.1f}%" if scored else "-"
        print(
            f"{module:<40} {total:>7} {counts['killed']:>6} {counts['survived']:>5}"
            f" {counts['timeout']:>7} {others:>5} {counts['equivalent']:>6} {score:>7}"
        )
    for module in modules:
        for entry in not_killed.get(module, []):
            print(f"  not killed: {entry}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mutation score per module (mutmut)")
    parser.add_argument("modules", nargs="*", help="paths like asyncvideo/_states.py")
    parser.add_argument("--tests", nargs="+", default=[], help="run only these test paths")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--max-children", default="1")
    parser.add_argument("--report-only", action="store_true", help="only read the last run")
    parser.add_argument("--refresh", action="store_true", help="update the last run to HEAD")
    args = parser.parse_args(argv)
    modules = args.modules or configured_modules()
    run = ("run", "--max-children", args.max_children)
    if args.refresh:
        refresh_scratch(args.workdir)
        mutmut(args.workdir, *run)  # the mutants of changed functions
        again = survivors(mutmut(args.workdir, "results", "--all", "true", capture=True))
        if again:
            mutmut(args.workdir, *run, *again)
    elif not args.report_only:
        make_scratch(args.workdir, modules, args.tests)
        mutmut(args.workdir, *run)
    report(mutmut(args.workdir, "results", "--all", "true", capture=True), modules)


if __name__ == "__main__":
    main()
