"""The benchmark pages' plots (docs/_ext/benchmarks.py) are drawn once per file and drawing code."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "_ext"))
import benchmarks  # noqa: E402


def test_a_plot_is_drawn_once_per_file_and_redrawn_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls: list[Path] = []

    def draw(path: Path) -> None:
        calls.append(path)
        path.write_bytes(b"png of " + bytes(len(calls)))

    first, second, third = (tmp_path / f"site{k}" / "bench-x.png" for k in range(3))
    benchmarks.drawn(first, b'{"seconds": [1, 2]}', draw)
    benchmarks.drawn(second, b'{"seconds": [1, 2]}', draw)
    assert calls == [first] and second.read_bytes() == first.read_bytes()  # copied, not drawn again
    benchmarks.drawn(third, b'{"seconds": [1, 3]}', draw)
    assert calls == [first, third] and third.read_bytes() != first.read_bytes()


def test_the_drawing_code_keys_the_plot_too(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls: list[Path] = []
    benchmarks.drawn(tmp_path / "a" / "p.png", b"{}", lambda path: calls.append(path) or path.write_bytes(b"1"))
    monkeypatch.setattr(benchmarks, "_drawing_code", lambda: b"other code")
    benchmarks.drawn(tmp_path / "b" / "p.png", b"{}", lambda path: calls.append(path) or path.write_bytes(b"2"))
    assert len(calls) == 2 and (tmp_path / "b" / "p.png").read_bytes() == b"2"
