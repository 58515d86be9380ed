"""threadprobe: measure whether the Iris stack's native libraries are safe and fast under threads.

The public Python API is small: ``Probe`` (write your own probes), ``recommend`` (the safe
schedulers for a workload), and ``scheduler`` (run a dask computation on a choice, or on the
one a pilot of that computation makes, holding whatever locks it needs). The heavy modules load
on first use, so that worker processes and the pytest plugin start quickly.
"""

from __future__ import annotations

from typing import Any

from threadprobe.probe import Probe, digest

__all__ = ["Probe", "digest", "recommend", "scheduler"]


def recommend(*args: Any, **kwargs: Any) -> Any:
    """The choice for a workload without a pilot; see ``threadprobe.scheduling.pipeline.recommend``."""
    # Here, not at the top: every module of the package, a worker's included (under any
    # interpreter, without dask or jinja2), imports this package first; the pipeline brings them.
    from threadprobe.scheduling.pipeline import recommend as _recommend

    return _recommend(*args, **kwargs)


def scheduler(*args: Any, **kwargs: Any) -> Any:
    """Context manager running dask on a choice (or ``"auto"``); see ``threadprobe.scheduling.pipeline.scheduler``."""
    from threadprobe.scheduling.pipeline import scheduler as _scheduler  # as in recommend: keep the package light

    return _scheduler(*args, **kwargs)
