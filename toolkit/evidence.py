"""Evidence a user can act on, gathered after the trials: filled in by the probes issue."""

from __future__ import annotations

from typing import Any


def gather(runs: Any, results: Any, options: Any, root: Any, progress: Any) -> dict[str, Any]:
    return {}
