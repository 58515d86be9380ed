"""threadprobe.diagnosis.races.servers: which servers the pass starts, and how its lanes share them
(a fake fork server stands for valgrind's: the sharing is exact, not timing)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from threadprobe.diagnosis.races import servers

IRIS = ("numpy", "netCDF4", "cf_units", "dask.array", "iris")
COSTS = {"numpy": 0.1, "netCDF4": 0.05, "h5py": 0.05, "cf_units": 0.02, "dask.array": 0.4, "iris": 1.5}


def test_modules_most_probes_share_come_first():
    assert servers.shared_first([("numpy", "h5py"), IRIS, ("numpy", "netCDF4")]) == \
        ["numpy", "netCDF4", "h5py", "cf_units", "dask.array", "iris"]


def test_probes_that_import_little_get_a_server_of_their_own_and_the_heavy_one_has_every_module():
    got = servers.groups([("numpy", "h5py"), IRIS, ("numpy", "netCDF4"), IRIS + ("xarray",)], COSTS)
    heavy = ("numpy", "netCDF4", "cf_units", "dask.array", "iris", "h5py", "xarray")
    assert got == [("numpy", "netCDF4", "h5py"), heavy]


def test_one_server_when_no_probe_is_heavy_or_none_is_light_or_nothing_was_priced():
    light = [("numpy", "h5py"), ("numpy", "netCDF4")]
    assert servers.groups(light, COSTS) == [("numpy", "h5py", "netCDF4")]
    assert servers.groups([IRIS, IRIS], COSTS) == [IRIS]
    assert servers.groups([("numpy",), IRIS], {}) == [("numpy", "netCDF4", "cf_units", "dask.array", "iris")]
    assert servers.groups([(), ()], COSTS) == [()]  # planted probes import nothing: one server


def test_import_costs_are_measured_natively_per_module():
    got = servers.import_costs(sys.executable, ["json", "missing_module_xyz", "plugin.py"])
    assert set(got) == {"json", "missing_module_xyz"} and all(v >= 0 for v in got.values())
    assert servers.import_costs("/bin/true", ["json"]) == {}  # said nothing: not priced


def test_a_module_costs_the_least_of_two_measurements_so_one_cold_import_cannot_make_it_heavy(monkeypatch):
    runs = iter([{"numpy": 0.05, "h5py": 0.60, "iris": 1.0}, {"numpy": 0.06, "h5py": 0.03, "iris": 1.1}])
    monkeypatch.setattr(servers, "import_costs", lambda python, modules: next(runs))
    steady = servers.steady_costs(None, ["numpy", "h5py", "iris"])
    assert steady == {"numpy": 0.05, "h5py": 0.03, "iris": 1.0}
    assert servers.groups([("numpy", "h5py"), ("numpy", "iris")], steady)[0] == ("numpy", "h5py")
    monkeypatch.setattr(servers, "import_costs", lambda python, modules: {})
    assert servers.steady_costs(None, ["numpy"]) == {}  # not priced: one server, as before


class FakeServer:
    """A fork server's two calls: it 'forks' pids in turn and reports exits all together."""

    def __init__(self) -> None:
        self.next = 100
        self.pending: dict[int, tuple[int, float | None]] = {}

    def start(self, spec_path: Path, worker: int, pgid: int) -> int:
        self.next += 1
        return self.next

    def exits(self, wait: float) -> dict[int, tuple[int, float | None]]:
        done, self.pending = self.pending, {}
        return done

    def close(self) -> None:
        pass


class FakeLaunchers:
    def __init__(self, fail: bool = False) -> None:
        self.fake, self.fail = FakeServer(), fail
        self.closed = False

    def get(self, preload, who=""):
        if self.fail:
            from threadprobe.harness.launch import HarnessError
            raise HarnessError("fork server did not start")
        return self.fake

    def close(self) -> None:
        self.closed = True


def started(preload=("numpy",), fail=False) -> servers.Server:
    server = servers.Server(FakeLaunchers(fail), preload, Path("/nowhere"))  # type: ignore[arg-type]
    server.start("helgrind")
    return server


def test_two_lanes_on_one_server_each_hear_only_of_their_own_workers():
    server = started()
    a, b = server.lend(), server.lend()
    pa, pb = a.start(Path("s"), 0, 1), b.start(Path("s"), 0, 2)
    fake = server.launchers.fake  # type: ignore[attr-defined]
    fake.pending = {pa: (0, 1.0), pb: (-11, None)}
    assert b.exits(0.0) == {pb: (-11, None)}  # a's exit, reported in the same read, is kept for a
    assert a.exits(0.0) == {pa: (0, 1.0)}
    assert a.exits(0.0) == {} and b.exits(0.0) == {}


def test_a_server_that_cannot_start_says_why_and_is_still_ready():
    server = started(fail=True)
    assert server.ready.is_set() and "could not start the interpreter" in (server.failed or "")


def test_the_board_runs_light_probes_while_the_heavy_server_imports_then_everything():
    light = servers.Server(FakeLaunchers(), ("numpy", "h5py"), Path("/l"))  # type: ignore[arg-type]
    heavy = servers.Server(FakeLaunchers(), ("numpy", "h5py", "iris"), Path("/h"))  # type: ignore[arg-type]
    board: servers.Board[tuple[str, tuple[str, ...]]] = servers.Board([light, heavy], lambda item: item[1])
    board.put([("iris.load", ("iris",)), ("h5py.read", ("h5py",)), ("h5py.write", ("numpy", "h5py"))])
    light.start("helgrind")
    assert board.take() == (("h5py.read", ("h5py",)), light)  # the Iris probe waits for its server
    heavy.start("helgrind")
    assert board.take() == (("iris.load", ("iris",)), heavy)
    assert board.take() == (("h5py.write", ("numpy", "h5py")), light)  # the lightest server that has it
    assert board.take() is None


def test_a_light_server_added_after_the_heavy_one_is_tried_first():
    heavy = servers.Server(FakeLaunchers(), ("numpy", "h5py", "iris"), Path("/h"))  # type: ignore[arg-type]
    light = servers.Server(FakeLaunchers(), ("numpy", "h5py"), Path("/l"))  # type: ignore[arg-type]
    board: servers.Board[tuple[str, tuple[str, ...]]] = servers.Board([heavy], lambda item: item[1])
    heavy.start("helgrind")
    board.add_first(light)
    light.start("helgrind")
    board.put([("h5py.read", ("h5py",)), ("iris.load", ("iris",))])
    assert board.take() == (("h5py.read", ("h5py",)), light)  # both ready: the light one forks it
    assert board.take() == (("iris.load", ("iris",)), heavy)


def test_a_lane_waits_for_probes_and_ends_when_none_are_left():
    server = started()
    board: servers.Board[str] = servers.Board([server], lambda item: ())
    got: list = []
    lane = threading.Thread(target=lambda: got.extend([board.take(), board.take()]))
    lane.start()
    board.put(["p"])
    lane.join(timeout=10)
    assert got == [("p", server), None]


def test_a_probe_only_a_failed_server_could_run_goes_to_it_so_the_lane_says_why():
    light, heavy = started(("numpy",)), started(("numpy", "iris"), fail=True)
    board: servers.Board[str] = servers.Board([light, heavy], lambda item: ("iris",) if item == "iris" else ())
    board.put(["iris", "plain"])
    assert board.take() == ("iris", heavy) and board.take() == ("plain", light)


def test_past_the_budget_nothing_more_is_taken():
    board: servers.Board[str] = servers.Board([started()], lambda item: ())
    board.put(["a", "b"])
    board.stop()
    assert board.take() is None
