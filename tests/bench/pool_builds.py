"""Benches across builds (``threadprobe bench wind|load --python ...``) read as one.

One bench's ten repetitions cannot settle a tie: two schedulers within 3% of each other, on a
machine where one run against another moves by up to 14%. Each repetition is a side-by-side
comparison of its own (every configuration in fresh processes, in rotating order), so benches of
the same configuration, on the same data and machine, with diagnoses that allow the same
schedulers, can be read together: the medians then rest on more repetitions. ``builds.pool``
refuses benches that differ in any of those.

Writes the pooled bench, stamped with this command, and its plot beside it; prints its table,
which ends with each environment's reading against the issue's targets.

    python tests/bench/pool_builds.py A.json B.json [...] [--environment LABEL ...] --out reports/X.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from threadprobe.records.errors import UsageError
from threadprobe.report import benchfile
from threadprobe.scheduling.runs import builds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benches", nargs="+", type=Path, help="reports/bench-builds-*.json files")
    parser.add_argument("--environment", action="append", default=[],
                        help="keep this environment alone, as the bench names it ('3.11.7 (GIL build)'; repeatable)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        results = [builds.Result.from_json(json.loads(path.read_text())) for path in args.benches]
        pooled = builds.pool(results, args.environment)
    except (OSError, ValueError, UsageError) as exc:
        print(f"pool_builds: {exc}", file=sys.stderr)
        return 2
    benchfile.write(args.out, {**pooled.to_json(), "pooled_from": [str(path) for path in args.benches]})
    builds.plot(pooled, args.out.with_suffix(".png"))
    print("\n".join(builds.table(pooled)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
