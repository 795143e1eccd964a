"""Plumbing shared by the benchmarks: the gateway process, child processes, meters, tables.

Every benchmark is one parent process that starts the FakeGateway in a process
of its own (``_gateway.py``) and each contender in a process of its own, so the
CPU seconds and peak RSS a child reports are its client's alone. The parent
only orchestrates: it reads the gateway's counters between contenders, prints
a table and writes JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "RESULTS_DIR",
    "Column",
    "Gateway",
    "Json",
    "Meter",
    "Target",
    "contender_names",
    "current_rss_mb",
    "dispatch",
    "emit_child_result",
    "environment",
    "format_table",
    "gateway_process",
    "name_list",
    "reset_peak_rss",
    "run_child",
    "write_results",
]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
GATEWAY_SCRIPT = BENCH_DIR / "_gateway.py"
#: The child's measurements are the last stdout line that starts with this.
RESULT_PREFIX = "BENCH-RESULT "

Json = dict[str, Any]


# -- command line, shared by every benchmark script ------------------------------------------


def name_list(text: str) -> list[str]:
    """``"a,b,,c"`` -> ``["a", "b", "c"]``."""
    return [name for name in text.split(",") if name]


def contender_names(text: str, known: Sequence[str]) -> list[str]:
    """The contenders named on the command line; an unknown name ends the run."""
    names = name_list(text)
    unknown = set(names) - set(known)
    if unknown:
        raise SystemExit(f"unknown contenders: {sorted(unknown)}")
    return names


def dispatch(
    opts: Any, child_main: Callable[[Any], object], parent_main: Callable[[Any], object]
) -> None:
    """Run as the measured child (``--child``) or as the parent that starts children."""
    if opts.child:
        child_main(opts)
    else:
        parent_main(opts)


# -- measuring, in the child ------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sys_seconds() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """This process's resident set now (``VmRSS``), or the peak where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (``ru_maxrss``/``VmHWM``) to the current RSS.

    Writing ``5`` to ``/proc/self/clear_refs`` does it on Linux >= 4.0; then a
    later ``ru_maxrss`` is the peak of what ran after this call only.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class Meter:
    """Wall time and CPU seconds (user + sys, every thread) of the measured part only.

    Imports and client construction happen before :meth:`start`, so a heavy
    import (``openai`` costs about a second) is reported apart, not per job.
    """

    wall: float = 0.0
    cpu: float = 0.0
    sys_cpu: float = 0.0
    rss_at_start_mb: float = 0.0
    _wall0: float = 0.0
    _cpu0: float = 0.0
    _sys0: float = 0.0

    def start(self) -> None:
        self.rss_at_start_mb = current_rss_mb()
        self._cpu0 = _cpu_seconds()
        self._sys0 = _sys_seconds()
        self._wall0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = _cpu_seconds() - self._cpu0
        self.sys_cpu = _sys_seconds() - self._sys0

    def to_dict(self) -> Json:
        return {
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "sys_cpu_s": self.sys_cpu,
            "cpu_total_s": _cpu_seconds(),
            "rss_at_start_mb": self.rss_at_start_mb,
            "peak_rss_mb": peak_rss_mb(),
        }


def emit_child_result(result: Json) -> None:
    """Hand the child's measurements to the parent (one line on stdout)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_profiled(main: Callable[[], Json], profile_to: str | None) -> Json:
    """Run ``main`` (under cProfile when ``profile_to`` is a path) and return its result.

    The timer is the main thread's CPU time, so time spent waiting in
    ``epoll`` does not show and worker threads (file I/O) are left out. The
    top functions by own time go to stderr; the raw stats to ``profile_to``
    for ``python -m pstats``.
    """
    if not profile_to:
        return main()
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.thread_time)
    result = profiler.runcall(main)
    profiler.dump_stats(profile_to)
    stats = pstats.Stats(profiler, stream=sys.stderr)
    print(_by_package(stats), file=sys.stderr)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    return result


def _by_package(stats: Any) -> str:
    """Own time summed per package or module: which layer the CPU goes to."""
    totals: dict[str, float] = {}
    for (filename, _, function), row in stats.stats.items():
        own = row[2]
        if "site-packages/" in filename:
            key = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        elif "/asyncvideo/" in filename:
            key = "asyncvideo/" + filename.split("/asyncvideo/", 1)[1]
        elif filename == "~":
            key = f"builtin: {function.split(' of ')[0]}"
        else:
            key = "stdlib/" + Path(filename).name
        totals[key] = totals.get(key, 0.0) + own
    grand = sum(totals.values()) or 1.0
    lines = [f"own CPU by package (total {grand:.2f} s, profiler overhead included):"]
    for key, seconds in sorted(totals.items(), key=lambda item: -item[1])[:25]:
        lines.append(f"  {seconds / grand:6.1%}  {seconds:7.3f} s  {key}")
    return "\n".join(lines)


# -- the gateway process, from the parent -----------------------------------------------------


@dataclass
class Gateway:
    """A running ``_gateway.py``: its origins and its control endpoint."""

    process: subprocess.Popen[str]
    url: str
    cdn_url: str
    control_url: str
    api_key: str
    _seen_tasks: int = 0

    def _call(self, method: str, url: str, body: Json | None = None) -> Json:
        payload = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(
            url,
            method=method,
            data=payload if method == "POST" else None,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            data: Json = json.load(response)
        return data

    def configure(self, **changes: object) -> Json:
        """Change gateway options between contenders (``POST /_sim/config``)."""
        return self._call("POST", self.url + "/_sim/config", changes)

    def stats(self) -> Json:
        """The gateway's counters (``GET /_sim/stats``)."""
        return self._call("GET", self.url + "/_sim/stats")

    def cpu_seconds(self) -> float:
        """CPU seconds the gateway process has used so far."""
        return float(self._call("GET", self.control_url + "/cpu")["cpu_s"])

    def begin(self) -> None:
        """Before a contender: zero the counters, and replay the same job durations."""
        self._call("POST", self.url + "/_sim/reset")
        self._call("POST", self.control_url + "/rewind")
        self._seen_tasks = int(self._call("GET", self.control_url + "/tasks?since=0")["total"])

    def new_task_ends(self) -> dict[str, float]:
        """``time.monotonic()`` at which each task created since :meth:`begin` ends, by id."""
        data = self._call("GET", f"{self.control_url}/tasks?since={self._seen_tasks}")
        self._seen_tasks = int(data["total"])
        return {str(task_id): float(end) for task_id, end in data["ends_at"].items()}

    def new_run_times(self) -> list[float]:
        """Wall-clock run times of the tasks created since :meth:`begin`, in creation order."""
        data = self._call("GET", f"{self.control_url}/tasks?since={self._seen_tasks}")
        self._seen_tasks = int(data["total"])
        return [float(value) for value in data["run_times"]]


@contextmanager
def gateway_process(options: Sequence[str]) -> Iterator[Gateway]:
    """Start ``_gateway.py`` with ``options``; its first stdout line says where it listens."""
    process = subprocess.Popen(
        [sys.executable, str(GATEWAY_SCRIPT), *options],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the gateway process exited early (code {process.wait()})")
        where = json.loads(line)
        yield Gateway(
            process=process,
            url=where["url"],
            cdn_url=where["cdn_url"],
            control_url=where["control_url"],
            api_key=where["api_key"],
        )
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the gateway stops when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=10)


def run_child(script: Path, args: Sequence[str], *, timeout: float = 1800) -> Json:
    """Run ``python script args`` and return the JSON it emitted; its stderr passes through."""
    completed = subprocess.run(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )
    results = [
        line[len(RESULT_PREFIX) :]
        for line in completed.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    if completed.returncode != 0 or not results:
        raise RuntimeError(
            f"{script.name} {' '.join(args)} failed (exit {completed.returncode}):\n"
            f"{completed.stdout[-2000:]}"
        )
    data: Json = json.loads(results[-1])
    return data


# -- reporting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One table column: the row key, its header and how to format the value."""

    key: str
    header: str
    fmt: str = "{}"


def format_table(rows: Sequence[Json], columns: Sequence[Column]) -> str:
    """A plain-text table with aligned columns (text left, numbers right)."""
    cells = [[column.header for column in columns]]
    for row in rows:
        line = []
        for column in columns:
            value = row.get(column.key)
            line.append("-" if value is None else column.fmt.format(value))
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    numeric = [
        all(isinstance(row.get(column.key), int | float) for row in rows) for column in columns
    ]
    out = []
    for number, line in enumerate(cells):
        parts = [
            cell.rjust(width) if numeric[i] and number else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(parts).rstrip())
        if number == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


@dataclass
class Target:
    """A goal a figure is reported against: ``value <= limit`` (or ``>=``)."""

    name: str
    value: float
    limit: float
    higher_is_better: bool = False
    unit: str = ""
    note: str = ""
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = (
            self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        )

    def line(self) -> str:
        verdict = "PASS" if self.passed else "MISS"
        relation = ">=" if self.higher_is_better else "<="
        share = self.value / self.limit * 100 if self.limit else float("inf")
        unit = f" {self.unit}" if self.unit else ""
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{verdict}  {self.name}: {self.value:.4g}{unit} {relation} {self.limit:.4g}{unit}"
            f"  [{share:.0f}% of the limit]{note}"
        )

    def to_dict(self) -> Json:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "comparison": ">=" if self.higher_is_better else "<=",
            "unit": self.unit,
            "passed": self.passed,
            "note": self.note,
        }


def environment() -> Json:
    """Where the figures come from: they mean little without the machine."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, data: Json) -> Path:
    """Write ``benchmarks/results/<name>.json`` (the folder is git-ignored)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
