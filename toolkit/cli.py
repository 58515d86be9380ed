"""The ``threadprobe`` command: subcommands only, each delegating to the module that does the job.

Exit codes: 0 when the command completed (a diagnosis that finds crashes still completed),
1 when a gate failed (a regression, ``--fail-on unsafe``), 2 for bad usage or bad input,
which always gets one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from toolkit.errors import UsageError

DEFAULT_BUDGET = 120.0  # trials; with the fingerprint and the evidence, make diagnose takes < 3 min
QUICK_BUDGET = 48.0  # the same for --quick: < 60 s in all


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="threadprobe", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("diagnose", help="run the probes in isolated children and write reports/diagnosis.json")
    d.add_argument("--probe", action="append", default=[], metavar="GLOB", help="probes to run (repeatable)")
    d.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help="load probes from a file")
    d.add_argument("--no-entry-points", action="store_true", help="only the probes of --plugin files")
    d.add_argument("--threads", type=int_list, default=(2, 4), metavar="N,M", help="thread counts (default 2,4)")
    d.add_argument("--processes", type=int_list, default=(2,), metavar="N", help="process counts (default 2)")
    d.add_argument("--trials", type=positive_int, default=3, help="fresh trials per probe x mode (default 3)")
    d.add_argument("--iterations", type=positive_int, default=None, metavar="K",
                   help="tasks per trial (default: the probe's own, else 100)")
    d.add_argument("--budget", type=positive_float, default=None, metavar="SECONDS",
                   help=f"time budget for the trials (default {DEFAULT_BUDGET:g}, with --quick {QUICK_BUDGET:g}); "
                        "extra stress trials stop when it is spent, so the whole diagnosis stays near 3 min (1 min)")
    d.add_argument("--timeout", type=positive_float, default=10.0, metavar="SECONDS",
                   help="no progress for this long is a hang (default 10)")
    d.add_argument("--quick", action="store_true", help="widest modes only, stop a mode at its first failure")
    d.add_argument("--start", choices=("fork", "spawn"), default="fork",
                   help="fork workers from a warm fork server (default) or spawn fresh interpreters")
    d.add_argument("--out", default="reports", metavar="DIR", help="report folder (default reports)")
    d.add_argument("--no-evidence", action="store_true", help="skip reproducers, remedies and the lock audit")
    d.add_argument("--keep", action="store_true", help="keep the trial folders (printed at the end)")
    d.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    d.add_argument("--quiet", action="store_true", help="no progress display")

    sub.add_parser("list", help="every probe, its dependency, and whether it is available").add_argument(
        "--plugin", action="append", default=[], metavar="FILE.py"
    )
    sub.add_parser("fingerprint", help="print the fingerprint of the library builds as JSON")

    r = sub.add_parser("recommend", help="the dask scheduler a workload should use, from the diagnosis")
    r.add_argument("--diagnosis", default=None, metavar="FILE",
                   help="a diagnosis.json (default reports/diagnosis.json; re-diagnosed quickly if its "
                        "fingerprint no longer matches the installed libraries)")
    r.add_argument("--workload", default="wind", help="wind or load (the runner's subcommands)")
    r.add_argument("--input-format", choices=("nc", "pp"), default=None, help="judge only this format's probes")
    r.add_argument("--format", choices=("json", "yaml", "env"), default="json",
                   help="json, a dask config file (yaml), or shell exports (env)")
    r.add_argument("--quiet", action="store_true", help="no progress if a quick diagnosis is needed")
    return parser


def cmd_diagnose(args: argparse.Namespace) -> int:
    from toolkit import report
    from toolkit.diagnose import Options, diagnose
    from toolkit.progress import make_progress

    out = Path(args.out)
    options = Options(
        probes=tuple(args.probe),
        plugins=tuple(str(Path(p).resolve()) for p in args.plugin),
        entry_points=not args.no_entry_points,
        threads=args.threads,
        processes=args.processes,
        trials=args.trials,
        iterations=args.iterations,
        budget=args.budget or (QUICK_BUDGET if args.quick else DEFAULT_BUDGET),
        timeout=args.timeout,
        quick=args.quick,
        start=args.start,
        evidence=not args.no_evidence,
        workdir=args.workdir,
        keep=args.keep,
        out=str(out),
    )
    for plugin in args.plugin:
        if not Path(plugin).is_file():
            raise UsageError(f"plugin file not found: {plugin}")
    diagnosis = diagnose(options, progress=make_progress(args.quiet))
    path = report.write(diagnosis, out)
    if not args.quiet:
        report.console_table(diagnosis)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from toolkit import registry

    table = Table(title="threadprobe probes")
    for col in ("probe", "dependency", "available", "what it does"):
        table.add_column(col)
    for info in registry.discover(args.plugin):
        table.add_row(info.name, info.dependency, "yes" if info.available else f"no: {info.reason}", info.doc)
    Console(width=200).print(table)
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from toolkit import fingerprint

    json.dump(fingerprint.collect(), sys.stdout, indent=1)
    print()
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from toolkit import recommendation
    from toolkit.progress import make_progress

    recommendation.workload(args.workload)  # bad names fail before any work
    rec = recommendation.recommend(args.workload, args.diagnosis, args.input_format,
                                   progress=make_progress(args.quiet))
    if args.format == "json":
        print(json.dumps(rec.to_json(), indent=1))
    elif args.format == "yaml":
        print(recommendation.as_yaml(rec), end="")
    else:
        print(recommendation.as_env(rec), end="")
    if rec.source.startswith("quick"):
        print(f"threadprobe: {rec.source}", file=sys.stderr)
    return 0


COMMANDS: dict[str, Any] = {
    "diagnose": cmd_diagnose,
    "list": cmd_list,
    "fingerprint": cmd_fingerprint,
    "recommend": cmd_recommend,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except UsageError as exc:
        print(f"threadprobe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("threadprobe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
