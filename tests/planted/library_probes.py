"""A planted probe whose concurrent work calls two libraries, one safe and one racy: the remedy
search's ground truth (loaded with --plugin, with ``tests/planted/libs`` on PYTHONPATH).

Under threads it is corrupt (the racy fill); a lock around ``planted_innocent`` leaves it corrupt,
a lock around ``planted_racy`` makes it safe and keeps the innocent work parallel, and one global
lock makes it safe and serial.
"""

from __future__ import annotations

import pathlib

from tests.planted.probes import WORK, build
from threadprobe import Probe

LIBS = pathlib.Path(__file__).with_name("libs")


class LibraryRace(Probe):
    """Safe work in one library, then a race in another: unsafe under threads without a lock."""

    name = "planted.library_race"
    dependency = "planted_racy"
    preload = ("planted_innocent", "planted_racy")
    iterations = 100

    def prepare(self, workdir):
        build(workdir)

    def open(self, workdir):
        import planted_innocent
        import planted_racy

        planted_innocent.load(str(workdir / "libdefects.so"))
        planted_racy.load(str(workdir / "libdefects.so"))

    def task(self, ctx, i):
        import planted_innocent
        import planted_racy

        return planted_innocent.checksum(i, WORK * 20), planted_racy.fill(i, WORK * 20)
