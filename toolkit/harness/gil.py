"""The GIL on a free-threaded build: whether it is on, and which extension modules turned it on.

On CPython built with ``--disable-gil`` the GIL starts off, and importing an extension module that
does not declare itself GIL-free turns it back on for the whole process, with a RuntimeWarning
that names the module. ``PYTHON_GIL=0`` keeps it off whatever is imported. This module reads both
facts in the process it runs in (standard library only: a worker under any interpreter imports it).
"""

from __future__ import annotations

import contextlib
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator, Sequence

#: Python's own words when an import turns the GIL back on (CPython 3.13 and 3.14).
REENABLED = re.compile(r"GIL\) has been enabled to load module '([^']+)'")
#: The environment that forces the GIL off on a free-threaded build, read at start-up.
FORCED_OFF = {"PYTHON_GIL": "0"}
#: Every module whose import turned the GIL on in this process, as ``watching`` saw them. A fork
#: server imports the probes' libraries before it forks, so its workers inherit this list: that is
#: how a worker names a module it never imported itself.
REENABLED_BY: list[str] = []


def free_threaded_build() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def enabled() -> bool:
    """Whether the GIL is on now (always, on a GIL build)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return bool(probe()) if probe is not None else True


@contextlib.contextmanager
def watching() -> Iterator[list[str]]:
    """Collects, into the list it yields, the modules whose import turned the GIL on inside the
    block. Other warnings are shown as they would have been."""
    found: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
    finally:  # also when the import fails: a module may have turned the GIL on before it raised
        for warning in caught:
            match = REENABLED.search(str(warning.message))
            if match:
                found.append(match.group(1))
                if match.group(1) not in REENABLED_BY:
                    REENABLED_BY.append(match.group(1))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


#: Imports one module in a fresh interpreter and prints the modules that turned the GIL on.
_ALONE = ("import sys; from threadprobe.harness import gil\n"
          "with gil.watching() as found:\n"
          "    try:\n        __import__(sys.argv[1])\n    except BaseException:\n        pass\n"
          "print(','.join(found))")


def each_alone(modules: Sequence[str]) -> dict[str, list[str]]:
    """Per module, the extension modules whose import turned the GIL on when it is imported alone,
    each in a fresh interpreter (this one's executable), side by side.

    One process can only say which import turned the GIL on *first*: once it is on, later imports
    say nothing. Alone, each dependency names its own (Iris names netCDF4's, which it imports)."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    children = {m: subprocess.Popen([sys.executable, "-c", _ALONE, m], stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, env=env) for m in modules}
    found = {}
    for module, child in children.items():
        out, _ = child.communicate(timeout=300)
        found[module] = [m for m in out.strip().split(",") if m]
    return found
