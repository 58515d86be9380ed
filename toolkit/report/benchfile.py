"""Benchmark result files: every ``reports/bench*.json`` says which machine made it, when, and how.

A figure on the documentation site is rendered from such a file, never copied by hand, so the
file must carry what a reader needs to weigh it: the machine (a shared 2-core box moves by up to
14% from one run to the next), the date, and the command that made it. ``write`` stamps those
three beside the benchmark's own data (its raw repetitions); ``read`` gives them back, saying
"not recorded" for a file written before the stamp existed.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadprobe.harness.proc import write_json_atomic

#: The keys ``write`` adds; a benchmark's own data never uses them for anything else.
STAMP_KEYS = ("machine", "date", "command")
NOT_RECORDED = "not recorded in this file"


def machine() -> dict[str, Any]:
    """What decides a timing here: the CPU, how many cores, how much memory, the OS and Python."""
    model = ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        import psutil

        memory: float | None = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:
        memory = None
    return {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "memory_gib": memory, "os": platform.platform(), "python": platform.python_version()}


def command(argv: list[str] | None = None) -> str:
    """The command line that is running as one would type it, and under pytest the test itself."""
    args = list(sys.argv if argv is None else argv)
    first = Path(args[0]) if args else Path("python")
    if first.name == "__main__.py":  # python -m package
        args[:1] = ["python", "-m", first.parent.name]
    elif first.suffix == ".py":
        args[:1] = ["python", str(first)]
    else:  # an entry point on PATH or in a venv's bin: its name
        args[0] = first.name
    text = shlex.join(args)
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    return f"{text}  # {test}" if test else text


def stamp(data: dict[str, Any], argv: list[str] | None = None) -> dict[str, Any]:
    """``data`` with the machine, the date (UTC, ISO 8601) and the command beside it."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**data, "machine": machine(), "date": now, "command": command(argv)}


def write(path: str | Path, data: dict[str, Any], argv: list[str] | None = None) -> Path:
    """Write a benchmark's result, stamped, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, stamp(data, argv))
    return path


@dataclass(frozen=True)
class BenchFile:
    """One benchmark file as read back: its data, and its stamp (or that it has none)."""

    path: Path
    data: dict[str, Any]

    @property
    def machine(self) -> str:
        m = self.data.get("machine")
        if not isinstance(m, dict):
            return NOT_RECORDED
        memory = f", {m['memory_gib']:g} GiB" if m.get("memory_gib") else ""
        return f"{m.get('cpu') or '?'}, {m.get('cores') or '?'} cores{memory}; {m.get('os') or '?'}; " \
               f"Python {m.get('python') or '?'}"

    @property
    def date(self) -> str:
        return str(self.data.get("date") or NOT_RECORDED)

    @property
    def command(self) -> str:
        return str(self.data.get("command") or NOT_RECORDED)

    def body(self) -> dict[str, Any]:
        """The benchmark's own data, without the stamp."""
        return {k: v for k, v in self.data.items() if k not in STAMP_KEYS}


def read(path: str | Path) -> BenchFile:
    """A benchmark file; ``ValueError`` when it is not a JSON object."""
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a benchmark result (top level is not an object)")
    return BenchFile(path, data)
