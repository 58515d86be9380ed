"""What the distribution installs: one top-level package, threadprobe, with the built-in probes
under it and the entry points (console script, pytest plugin, probes) pointing into it."""

from __future__ import annotations

import configparser
import subprocess
import sys

from tests.conftest import HERE
from threadprobe.report.validate import SCHEMAS

ROOT = HERE.parent


def test_the_wheel_installs_threadprobe_alone(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=300)
    top = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top == {"threadprobe"}
    assert (target / "threadprobe" / "probes" / "netcdf.py").exists()
    schemas = target / "threadprobe" / "records" / "schema"
    assert set(SCHEMAS.values()) <= {p.name for p in schemas.iterdir()}  # every format validate reads
    assert (target / "threadprobe" / "harness" / "threadprobe.supp").exists()
    [info] = target.glob("threadprobe-*.dist-info")
    points = configparser.ConfigParser()
    points.read(info / "entry_points.txt")
    assert points["console_scripts"]["threadprobe"] == "threadprobe.cli:main"
    assert points["pytest11"]["threadprobe"] == "threadprobe.pytest.plugin"
    assert all(v.startswith("threadprobe.probes.") for v in points["threadprobe.probes"].values())
    code = ("import json, sys; import threadprobe, threadprobe.probes.netcdf, threadprobe.pytest.plugin; "
            "print(threadprobe.__file__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(str(target))


#: Imported only where an optional feature needs them, and said so where they are imported.
OPTIONAL = {"mo_pack": "WGDOS-packed PP (not on PyPI)", "xarray": "the optional xarray probe ([test])",
            "iris_sample_data": "the PP probes' sample file ([test]; without it they are unavailable)"}


def third_party_imports(root) -> dict[str, set[str]]:
    """Top-level names imported anywhere under ``root`` that are neither the standard library nor
    threadprobe, each with the files that import it."""
    import ast

    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "threadprobe":
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_library_the_package_imports_is_a_runtime_dependency():
    """Declared where used: what toolkit/ and probes/ import is in [project] dependencies (the
    test tools are not: they are the [test] extra's)."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    def names(reqs): return {re.split(r"[<>=!~\[; ]", r, 1)[0].lower().replace("_", "-") for r in reqs}
    runtime, test = names(project["dependencies"]), names(project["optional-dependencies"]["test"])
    providers = packages_distributions()
    imported = third_party_imports(ROOT / "toolkit") | third_party_imports(ROOT / "probes")
    missing = {top: sorted(where) for top, where in imported.items() if top not in OPTIONAL
               and not names(providers.get(top, [top])) & runtime}
    assert missing == {}
    assert {"pytest-xdist", "hypothesis", "mypy"} <= test and not {"pytest-xdist", "hypothesis", "mypy"} & runtime
