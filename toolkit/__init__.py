"""threadprobe: measure whether the Iris stack's native libraries are safe and fast under threads.

The public Python API is small: ``Probe`` (write your own probes), ``recommend`` (which dask
scheduler a workload should use) and ``scheduler`` (apply a recommendation to dask). The heavy
modules load on first use, so that worker processes and the pytest plugin start quickly.
"""

from __future__ import annotations

from typing import Any

from toolkit.probe import Probe, digest

__all__ = ["Probe", "digest", "recommend", "scheduler"]


def recommend(*args: Any, **kwargs: Any) -> Any:
    """The scheduler recommendation for a workload; see ``toolkit.recommendation.recommend``."""
    from toolkit.recommendation import recommend as _recommend

    return _recommend(*args, **kwargs)


def scheduler(*args: Any, **kwargs: Any) -> Any:
    """Context manager applying a recommendation to dask; see ``toolkit.recommendation.scheduler``."""
    from toolkit.recommendation import scheduler as _scheduler

    return _scheduler(*args, **kwargs)
