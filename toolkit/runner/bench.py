"""Benchmark of the runner: the same workload on the same data under every scheduler.

Configurations: synchronous (plain single-threaded Iris), threads 2 and 4, processes 2,
distributed 2x1 and 1x2, and ``auto`` (the recommendation). Each run happens in a fresh
subprocess, so runs share no warm state and a crash (threads on the load workload) is recorded,
not fatal. Configurations are interleaved and their order rotated on every repeat, so a noisy
spell hits them alike; medians of the repeats are reported with the speedup over synchronous.

Every result is checked against the synchronous one. A configuration is *safe* when all its runs
gave that result and the diagnosis does not find the mode unsafe for the workload's probes;
the regret of ``auto`` is its median time over the fastest safe configuration's. The runner's
own overhead is its time minus that of the same dask graph computed directly (``direct``), in
the scheduler ``auto`` chose. Writes ``reports/bench.json`` (``threadprobe.bench/1``) and a plot.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from toolkit.records import BENCH_SCHEMA
from toolkit.runner.schedulers import Choice

CONFIGS: tuple[tuple[str, dict[str, Any] | None], ...] = (
    ("synchronous", {"scheduler": "synchronous"}),
    ("threads 2", {"scheduler": "threads", "threads_per_worker": 2}),
    ("threads 4", {"scheduler": "threads", "threads_per_worker": 4}),
    ("processes 2", {"scheduler": "processes", "n_workers": 2}),
    ("distributed 2x1", {"scheduler": "distributed", "n_workers": 2, "threads_per_worker": 1}),
    ("distributed 1x2", {"scheduler": "distributed", "n_workers": 1, "threads_per_worker": 2}),
    ("auto", None),
)


def _inputs(data: Path, fmt: str) -> dict[str, str]:
    return {"x": str(data / fmt / f"x_wind_*.{fmt}"), "y": str(data / fmt / f"y_wind_*.{fmt}"),
            "files": str(data / fmt / f"*.{fmt}")}


def output_digest(path: Path) -> str:
    import netCDF4

    from toolkit.probe import digest

    with netCDF4.Dataset(path) as ds:
        return digest([ds.variables[name][...] for name in sorted(ds.variables) if ds.variables[name].ndim == 2])


def one(workload: str, choice: Choice, inputs: dict[str, str], direct: bool = False) -> dict[str, Any]:
    """One timed run in this process (the subprocess side). Imports are done before the clock starts."""
    import iris  # noqa: F401  (paid before timing, as a long-running service would have)

    from toolkit.runner import load, wind

    out = Path(tempfile.mkdtemp(prefix="threadprobe-bench-")) / "out.nc"
    started = time.perf_counter()
    if workload == "wind" and not direct:
        result = wind.run(inputs["x"], inputs["y"], out, choice, quiet=True)
        compute_seconds = result.compute_seconds
        answer = output_digest(out)
    elif workload == "wind":
        import dask

        from toolkit.runner.schedulers import activated

        graph = wind.build(inputs["x"], inputs["y"])
        with activated(choice):
            began = time.perf_counter()
            speed, direction = dask.compute(graph.speed_variance.core_data(), graph.direction_circular_variance.core_data())
            compute_seconds = time.perf_counter() - began
        iris.save([graph.speed_variance.copy(data=speed), graph.direction_circular_variance.copy(data=direction)],
                  str(out))
        answer = output_digest(out)
    else:
        result = load.run(inputs["files"], choice, quiet=True)
        compute_seconds = result.seconds
        answer = "|".join(result.summary)
    return {"seconds": time.perf_counter() - started, "compute_seconds": compute_seconds, "digest": answer,
            "scheduler": choice.describe()}


def _run_subprocess(workload: str, choice: Choice, inputs: dict[str, str], direct: bool, timeout: float) -> dict[str, Any]:
    spec = json.dumps({"workload": workload, "choice": dataclasses.asdict(choice), "inputs": inputs, "direct": direct})
    try:
        done = subprocess.run([sys.executable, "-m", "toolkit.runner.bench", spec], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"no result within {timeout:.0f}s"}
    if done.returncode != 0:
        from toolkit.isolation import signal_name

        why = signal_name(done.returncode) or f"exit code {done.returncode}"
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        return {"failed": f"{why}: {tail}" if tail else why}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _choice(spec: dict[str, Any] | None, workload: str, fmt: str, diagnosis: str | None,
            inputs: dict[str, str]) -> Choice:
    from toolkit.runner.schedulers import resolve

    if spec is None:  # exactly what `threadprobe run` does for --scheduler auto
        serial = None
        if workload == "load":
            from toolkit.runner.load import estimate_serial_seconds

            serial = estimate_serial_seconds(inputs["files"])
        return resolve(workload, "auto", diagnosis=diagnosis, fmt=fmt, serial_seconds=serial)
    return Choice(**spec)


def safe_modes(workload: str, fmt: str, diagnosis: str | None) -> dict[str, bool]:
    """Per mode ("threads N" / "processes"), whether the diagnosis found the workload's probes safe."""
    from toolkit import report
    from toolkit.recommendation import DEFAULT_DIAGNOSIS, workload as get

    path = Path(diagnosis) if diagnosis else DEFAULT_DIAGNOSIS
    if not path.exists():
        return {}
    probes = set(get(workload).probes_for(fmt))
    verdicts: dict[str, bool] = {}
    for r in report.read(path).results:
        if r.probe in probes and r.remedy is None and r.mode != "serial":
            key = f"threads {r.workers}" if r.mode == "threads" else "processes"
            verdicts[key] = verdicts.get(key, True) and r.verdict == "safe"
    return verdicts


def is_safe(name: str, choice: Choice, runs: list[dict[str, Any]], reference: str | None, safe: dict[str, bool]) -> bool:
    if not runs or any("failed" in r or r["digest"] != reference for r in runs):
        return False
    if choice.scheduler == "threads":
        return safe.get(f"threads {choice.threads_per_worker}", safe.get("threads 2", True))
    if choice.scheduler in ("processes", "distributed") and choice.threads_per_worker > 1:
        return safe.get("processes", True) and safe.get(f"threads {choice.threads_per_worker}", True)
    if choice.scheduler in ("processes", "distributed"):
        return safe.get("processes", True)
    return True


def bench(workload: str, data: Path, fmt: str, repeats: int = 3, diagnosis: str | None = None,
          timeout: float = 600.0, progress: Any = None) -> dict[str, Any]:
    inputs = _inputs(data, fmt)
    choices = {name: _choice(spec, workload, fmt, diagnosis, inputs) for name, spec in CONFIGS}
    names = [name for name, _ in CONFIGS]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    if workload == "wind":
        names.append("direct")
        choices["direct"] = choices["auto"]
        runs["direct"] = []
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            if progress is not None:
                progress(f"{workload} {fmt}: repeat {rep + 1}/{repeats}, {name} ({choices[name].describe()})")
            runs[name].append(_run_subprocess(workload, choices[name], inputs, name == "direct", timeout))
    reference = next((r["digest"] for r in runs["synchronous"] if "digest" in r), None)
    safe = safe_modes(workload, fmt, diagnosis)
    rows = []
    for name in names:
        ok = [r["seconds"] for r in runs[name] if "seconds" in r]
        rows.append({
            "config": name,
            "scheduler": choices[name].describe(),
            "seconds": [r.get("seconds") for r in runs[name]],
            "compute_seconds": [r.get("compute_seconds") for r in runs[name]],
            "failures": [r["failed"] for r in runs[name] if "failed" in r],
            "median": statistics.median(ok) if ok else None,
            "correct": all(r.get("digest") == reference for r in runs[name]) and bool(ok),
            "safe": is_safe(name, choices[name], runs[name], reference, safe) if name != "direct" else None,
        })
    by = {row["config"]: row for row in rows}
    base = by["synchronous"]["median"]
    for row in rows:
        row["speedup"] = round(base / row["median"], 3) if base and row["median"] else None
    safe_rows = [row for row in rows if row["safe"] and row["median"] and row["config"] not in ("auto", "direct")]
    fastest = min(safe_rows, key=lambda row: row["median"]) if safe_rows else None
    result: dict[str, Any] = {
        "workload": workload, "format": fmt, "repeats": repeats, "inputs": inputs,
        "input_bytes": sum(p.stat().st_size for p in (data / fmt).glob(f"*.{fmt}")),
        "input_files": len(list((data / fmt).glob(f"*.{fmt}"))),
        "configs": rows,
        "auto": {"choice": choices["auto"].describe(), "rationale": list(choices["auto"].rationale),
                 "source": choices["auto"].source},
        "fastest_safe": fastest["config"] if fastest else None,
        "fastest_safe_speedup": fastest["speedup"] if fastest else None,
    }
    if fastest and by["auto"]["median"]:
        result["auto"]["regret"] = round(by["auto"]["median"] / fastest["median"], 3)
        result["auto"]["safe"] = by["auto"]["safe"]
    if "direct" in by and by["direct"]["median"] and by["auto"]["median"]:
        result["runner_overhead"] = round((by["auto"]["median"] - by["direct"]["median"]) / by["auto"]["median"], 4)
    return result


def plot(results: list[dict[str, Any]], path: Path) -> Path:
    """Median time per configuration, one panel per workload x format; safe green, unsafe red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, res in zip(axes[0], results):
        rows = [r for r in res["configs"] if r["median"] is not None]
        names = [r["config"] for r in rows]
        medians = [r["median"] for r in rows]
        spans = [[r["median"] - min(s for s in r["seconds"] if s), max(s for s in r["seconds"] if s) - r["median"]]
                 for r in rows]
        colours = ["#2e7d32" if r["safe"] else "#9e9e9e" if r["safe"] is None else "#c62828" for r in rows]
        ax.barh(names, medians, xerr=list(zip(*spans)), color=colours)
        for k, r in enumerate(rows):
            if r["speedup"]:
                ax.text(r["median"], k, f" x{r['speedup']:.2f}", va="center", fontsize=8)
        failed = [r["config"] for r in res["configs"] if r["median"] is None]
        title = f"{res['workload']} ({res['format']}, {res['input_bytes'] / 2**30:.2f} GiB)"
        if "regret" in res["auto"]:
            title += f"\nauto regret {res['auto']['regret']:.2f}"
        if failed:
            title += f"; failed: {', '.join(failed)}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("median seconds (min-max)")
        ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(results: list[dict[str, Any]], out: Path, workload: str) -> Path:
    """Merge this workload's results into reports/bench.json (other workloads' entries stay)."""
    from toolkit.isolation import write_json_atomic

    path = out / "bench.json"
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != BENCH_SCHEMA:
            data = {}
    except (OSError, ValueError):
        data = {}
    data["schema"] = BENCH_SCHEMA
    data.setdefault("workloads", {})[workload] = {r["format"]: r for r in results}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return path


def _main() -> None:
    spec = json.loads(sys.argv[1])
    result = one(spec["workload"], Choice(**{k: tuple(v) if k in ("adapt", "locks", "rationale") and v else v
                                            for k, v in spec["choice"].items()}),
                 spec["inputs"], spec["direct"])
    print(json.dumps(result))


if __name__ == "__main__":
    _main()
